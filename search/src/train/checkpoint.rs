//! The files of a run directory, and how they are written so that a kill at any moment leaves
//! a run that resumes exactly.
//!
//! * Every finished epoch writes a **checkpoint set**, `ckpt/eNNNN/` (the weights and the
//!   optimiser's momentum buffers): built under a temporary name, each file and the folder
//!   synced, then renamed into place.
//! * Then `state.json` is replaced (written beside, synced, renamed, the folder synced). It names
//!   the epoch's set and the best epoch's set, with an md5 of each of their files: the state
//!   file is the commit point. A kill before it leaves the previous state, which names the
//!   previous set, still on disk: earlier sets are removed only once the new state is durable.
//! * `metrics.jsonl` gets the epoch's line before the state; on resume it is cut back to the
//!   epochs the state counts (atomically).
//! * `last.safetensors` and `best.safetensors` at the top are hard links to the sets' weights,
//!   for people and tools; resuming reads the sets the state names, after checking their sums.
//!
//! Every write, sync and rename is a numbered fault point ([`point`]): the crash tests kill the
//! process, interrupt it or make the write fail with a full disk at each of them in turn.

use super::record::{EpochMetrics, RunState};
use md5::{Digest, Md5};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

/// `config.json`: the spec and the training configuration ([`super::RunConfigFile`]).
pub(crate) const CONFIG: &str = "config.json";
/// `state.json`: progress, status and the checkpoint sets ([`super::RunState`]).
pub(crate) const STATE: &str = "state.json";
/// The data the run trains on ([`super::DataRecord`]), written when it starts.
pub(crate) const DATA: &str = "data.json";
/// `metrics.jsonl`: one [`EpochMetrics`] per finished epoch.
pub(crate) const METRICS: &str = "metrics.jsonl";
/// The weights after the last finished epoch (a link to its set's).
pub(crate) const LAST: &str = "last.safetensors";
/// The weights of the epoch with the best score (a link to its set's).
pub(crate) const BEST: &str = "best.safetensors";
/// `summary.json`, written at the end ([`super::Summary`]).
pub(crate) const SUMMARY: &str = "summary.json";
/// The topology of the first stage, drawn.
pub(crate) const TOPOLOGY: &str = "topology.svg";
/// The folder of the checkpoint sets.
const SETS: &str = "ckpt";
/// A set's weights.
pub(crate) const WEIGHTS: &str = "weights.safetensors";
/// A set's momentum buffers.
pub(crate) const OPTIM: &str = "optim.safetensors";

/// Why a file of a run directory cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{}: {source}", .path.display())]
    Torch {
        path: PathBuf,
        source: tch::TchError,
    },
    /// A file the state names is not what was written.
    #[error(
        "{}: its checksum is not the one state.json recorded: the checkpoint is damaged; start \
         the run again",
        .0.display()
    )]
    Damaged(PathBuf),
}

type R<T> = Result<T, CheckpointError>;

/// An I/O error about `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn json(path: &Path) -> impl FnOnce(serde_json::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Json {
        path: path.to_path_buf(),
        source,
    }
}

/// The faults the crash tests inject, read once from the environment: at the fault point
/// numbered `OPTARCH_CRASH_AT` the process sends itself `OPTARCH_CRASH_SIGNAL` (`KILL`, the
/// default, or `INT`); at `OPTARCH_ENOSPC_AT` the write fails as on a full disk. With
/// `OPTARCH_IO_TRACE` set every point is printed on stderr (`io point N: what`).
struct Faults {
    crash_at: Option<usize>,
    interrupt: bool,
    enospc_at: Option<usize>,
    trace: bool,
}

fn faults() -> &'static Faults {
    static F: OnceLock<Faults> = OnceLock::new();
    F.get_or_init(|| {
        let num = |k: &str| std::env::var(k).ok().and_then(|v| v.trim().parse().ok());
        Faults {
            crash_at: num("OPTARCH_CRASH_AT"),
            interrupt: std::env::var("OPTARCH_CRASH_SIGNAL").is_ok_and(|v| v == "INT"),
            enospc_at: num("OPTARCH_ENOSPC_AT"),
            trace: std::env::var_os("OPTARCH_IO_TRACE").is_some(),
        }
    })
}

/// A fault point: the next write, sync or rename of `path` (`what` it is).
pub(crate) fn point(what: &str, path: &Path) -> R<()> {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    let f = faults();
    if f.trace {
        eprintln!("io point {n}: {what} {}", path.display());
    }
    if f.crash_at == Some(n) {
        let sig = if f.interrupt {
            nix::sys::signal::Signal::SIGINT
        } else {
            nix::sys::signal::Signal::SIGKILL
        };
        let _ = nix::sys::signal::raise(sig);
    }
    if f.enospc_at == Some(n) {
        return Err(CheckpointError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::from_raw_os_error(libc::ENOSPC),
        });
    }
    Ok(())
}

/// Syncs a file or a folder to disk.
pub(crate) fn sync(path: &Path) -> R<()> {
    point("sync", path)?;
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io(path))
}

/// Renames `from` to `to` and syncs the folder that holds them.
fn rename(from: &Path, to: &Path) -> R<()> {
    point("rename", to)?;
    std::fs::rename(from, to).map_err(io(to))?;
    match to.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync(p),
        _ => sync(Path::new(".")),
    }
}

/// Writes `bytes` to `path` durably and atomically: beside it, synced, renamed, the folder
/// synced.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> R<()> {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_os_string());
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(&name);
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    point("write", &tmp)?;
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    sync(&tmp)?;
    rename(&tmp, path)
}

/// Writes `value` as pretty JSON to `path`, durably and atomically.
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> R<()> {
    let text = serde_json::to_string_pretty(value).map_err(json(path))?;
    write_atomic(path, text.as_bytes())
}

/// Reads the JSON file `path`.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> R<T> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(json(path))
}

/// The files of one finished epoch, as `state.json` names them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSet {
    /// The folder, relative to the run directory (`ckpt/e0003`).
    pub dir: String,
    /// Each file's name and the md5 of its bytes.
    pub files: BTreeMap<String, String>,
}

impl CheckpointSet {
    /// The path of file `name` of the set in run directory `run`, after checking its sum.
    pub(crate) fn verified(&self, run: &Path, name: &str) -> R<PathBuf> {
        let path = run.join(&self.dir).join(name);
        let want = self
            .files
            .get(name)
            .ok_or_else(|| CheckpointError::Damaged(path.clone()))?;
        if md5_of(&path)? != *want {
            return Err(CheckpointError::Damaged(path));
        }
        Ok(path)
    }
}

fn md5_of(path: &Path) -> R<String> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    Ok(crate::data::hex(&Md5::digest(&bytes)))
}

/// A file of a checkpoint set and how to write it.
pub(crate) type Writer<'a> = (&'a str, &'a dyn Fn(&Path) -> Result<(), tch::TchError>);

/// Writes the checkpoint set of epoch `epoch` in run directory `run`: each file by its writer,
/// under a temporary folder, synced, then renamed into place. Returns the set with the sums of
/// its files.
pub(crate) fn write_set(run: &Path, epoch: usize, writers: &[Writer<'_>]) -> R<CheckpointSet> {
    let sets = run.join(SETS);
    let name = format!("e{epoch:04}");
    let tmp = sets.join(format!(".{name}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
    }
    point("create", &tmp)?;
    std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
    let mut files = BTreeMap::new();
    for (file, write) in writers {
        let path = tmp.join(file);
        point("write", &path)?;
        write(&path).map_err(|source| CheckpointError::Torch {
            path: path.clone(),
            source,
        })?;
        sync(&path)?;
        files.insert(file.to_string(), md5_of(&path)?);
    }
    sync(&tmp)?;
    let dir = sets.join(&name);
    if dir.exists() {
        // A set of this epoch from an attempt that never reached its state: replaced.
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    rename(&tmp, &dir)?;
    Ok(CheckpointSet {
        dir: format!("{SETS}/{name}"),
        files,
    })
}

/// Commits `state` (which names the new sets) in `run`, then removes the sets it no longer
/// names and points the top-level links at its last and best weights.
pub(crate) fn commit(run: &Path, state: &RunState) -> R<()> {
    write_json(&run.join(STATE), state)?;
    tidy(run, state)
}

/// What follows a commit, and is redone on resume in case a fault cut it short: removes the
/// sets `state` does not name and points the top-level links at its last and best weights.
pub(crate) fn tidy(run: &Path, state: &RunState) -> R<()> {
    let keep: Vec<&str> = [&state.checkpoint, &state.best]
        .into_iter()
        .flatten()
        .map(|s| s.dir.as_str())
        .collect();
    let sets = run.join(SETS);
    if let Ok(entries) = std::fs::read_dir(&sets) {
        for e in entries.flatten() {
            let rel = format!("{SETS}/{}", e.file_name().to_string_lossy());
            if !keep.contains(&rel.as_str()) && !rel.ends_with(".tmp") {
                let p = e.path();
                point("remove", &p)?;
                std::fs::remove_dir_all(&p).map_err(io(&p))?;
            }
        }
    }
    for (link, set) in [(LAST, &state.checkpoint), (BEST, &state.best)] {
        if let Some(set) = set {
            let target = run.join(&set.dir).join(WEIGHTS);
            let path = run.join(link);
            let tmp = run.join(format!(".{link}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            point("link", &tmp)?;
            std::fs::hard_link(&target, &tmp).map_err(io(&tmp))?;
            rename(&tmp, &path)?;
        }
    }
    Ok(())
}

/// The finished epochs recorded in `dir`, in order; a line that does not parse (cut short by a
/// kill) is left out.
pub(crate) fn read_metrics(dir: &Path) -> Vec<EpochMetrics> {
    std::fs::read_to_string(dir.join(METRICS))
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Appends a finished epoch to `dir`'s metrics, synced.
pub(crate) fn append_metrics(dir: &Path, m: &EpochMetrics) -> R<()> {
    let path = dir.join(METRICS);
    let line = serde_json::to_string(m).map_err(json(&path))?;
    point("append", &path)?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    writeln!(f, "{line}").map_err(io(&path))?;
    point("sync", &path)?;
    f.sync_all().map_err(io(&path))
}

/// Keeps only the metrics of the first `epochs` epochs (those the state counts), atomically.
pub(crate) fn trim_metrics(dir: &Path, epochs: usize) -> R<()> {
    let path = dir.join(METRICS);
    if !path.exists() {
        return Ok(());
    }
    let mut out = String::new();
    for m in read_metrics(dir).iter().filter(|m| m.epoch < epochs) {
        out.push_str(&serde_json::to_string(m).map_err(json(&path))?);
        out.push('\n');
    }
    write_atomic(&path, out.as_bytes())
}
