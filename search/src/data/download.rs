//! Downloading the official archives: streamed to a temporary file next to the destination,
//! checked against the published md5, then renamed into place (so a file at the final path is
//! always complete and verified). The base URL can point at a mirror.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use md5::{Digest, Md5};

use super::error::{DataError, Result};

/// Environment variable naming a base URL that replaces the official ones (the files are then
/// fetched as `<mirror>/<file name>`).
pub(crate) const MIRROR_ENV: &str = "OPTARCH_DATA_MIRROR";

/// One file to download: its name under the base URL and its published md5 (hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub file: String,
    pub md5: String,
}

impl Remote {
    pub fn new(file: &str, md5: &str) -> Self {
        Remote {
            file: file.to_string(),
            md5: md5.to_ascii_lowercase(),
        }
    }
}

/// The official CIFAR archives (Krizhevsky's page).
pub const CIFAR_BASE: &str = "https://www.cs.toronto.edu/~kriz/";
/// MNIST as torchvision fetches it.
pub const MNIST_BASE: &str = "https://ossci-datasets.s3.amazonaws.com/mnist/";

pub const CIFAR10_ARCHIVE: &str = "cifar-10-binary.tar.gz";
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
pub const CIFAR100_ARCHIVE: &str = "cifar-100-binary.tar.gz";
pub const CIFAR100_MD5: &str = "03b5dce01913d631647c71ecec9e9f8c";
/// The md5 of the four gzipped MNIST files, as torchvision lists them.
pub(crate) const MNIST_MD5: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "d53e105ee54ea40749a09fcbcd1e9432",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "9fb629c4189551a2d022fa330f9573f3",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "ec29112dd5afa0611ce80d1b7f02629c",
    ),
];

/// The base URL to use: the explicit one, else `OPTARCH_DATA_MIRROR`, else the official one;
/// always ending in `/`.
pub fn base_url(explicit: Option<&str>, official: &str) -> String {
    choose_base(
        explicit,
        std::env::var(MIRROR_ENV).ok().as_deref(),
        official,
    )
}

/// [`base_url`] with the value of `OPTARCH_DATA_MIRROR` given (`None` or blank: unset).
pub fn choose_base(explicit: Option<&str>, env: Option<&str>, official: &str) -> String {
    let env = env.filter(|s| !s.trim().is_empty());
    let mut base = explicit.or(env).unwrap_or(official).to_string();
    if !base.ends_with('/') {
        base.push('/');
    }
    base
}

/// The md5 of a file, hex.
pub fn md5_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| DataError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex of `bytes` (checksums, the trial server's paths).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Deletes the temporary file unless the download succeeded.
struct TempGuard(Option<PathBuf>);

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Downloads `url` to `dest`, checking its md5 against `md5_hex`. The bytes go to a hidden
/// temporary file in the same folder, renamed to `dest` only once complete and verified; on
/// any failure nothing is left behind. Prints one line to stderr before starting (a download
/// can take minutes).
pub fn download(url: &str, dest: &Path, md5_hex: &str) -> Result<()> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| DataError::io(&dir, e))?;
    let fname = dest
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "download".into());
    remove_stale_parts(&dir, &fname);
    let tmp = dir.join(format!(".{fname}.part-{}", std::process::id()));
    let mut guard = TempGuard(Some(tmp.clone()));

    eprintln!("optarch: downloading {url} to {}", dest.display());
    let failed = |reason: String| DataError::Download {
        url: url.to_string(),
        reason,
    };
    let loopback = url.starts_with("http://127.0.0.1")
        || url.starts_with("http://localhost")
        || url.starts_with("http://[::1]");
    let mut config = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_per_read(Some(Duration::from_secs(60)));
    if loopback {
        config = config.proxy(None);
    }
    let agent: ureq::Agent = config.build().into();
    let response = agent.get(url).call().map_err(|e| failed(e.to_string()))?;
    let mut body = response.into_body().into_reader();

    let file = File::create(&tmp).map_err(|e| DataError::io(&tmp, e))?;
    let mut out = BufWriter::new(file);
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match body.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(failed(format!("after {total} bytes: {e}"))),
        };
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| DataError::io(&tmp, e))?;
        total += n as u64;
    }
    let file = out
        .into_inner()
        .map_err(|e| DataError::io(&tmp, e.into_error()))?;
    file.sync_all().map_err(|e| DataError::io(&tmp, e))?;
    drop(file);

    let found = hex(&h.finalize());
    let expected = md5_hex.to_ascii_lowercase();
    if found != expected {
        return Err(DataError::Checksum {
            url: url.to_string(),
            expected,
            found,
        });
    }
    std::fs::rename(&tmp, dest).map_err(|e| DataError::io(dest, e))?;
    guard.0 = None;
    Ok(())
}

/// Deletes `.NAME.part-PID` files left by killed downloads: those whose process is gone (known
/// through `/proc`; where there is no `/proc`, nothing is deleted).
fn remove_stale_parts(dir: &Path, fname: &str) {
    let proc_root = Path::new("/proc");
    if !proc_root.join("self").exists() {
        return;
    }
    let prefix = format!(".{fname}.part-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(&prefix) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !proc_root.join(pid).exists() {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Downloads each of `remotes` from `base` into `dir` unless a file of that name is already
/// there. Returns the paths.
pub fn fetch_all(dir: &Path, base: &str, remotes: &[Remote]) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for r in remotes {
        let dest = dir.join(&r.file);
        if !dest.is_file() {
            download(&format!("{base}{}", r.file), &dest, &r.md5)?;
        }
        paths.push(dest);
    }
    Ok(paths)
}
