//! The `optarch` executable links libtorch the way build/link_libtorch.rs promises: CUDA support
//! (libtorch_cuda.so) is not dropped by `--as-needed`, and libtorch is found through the rpath,
//! with no `LD_LIBRARY_PATH`.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_optarch");

/// The libtorch lib directory the build linked against (set by search/build.rs).
const LIBTORCH_LIB: Option<&str> = option_env!("OPTARCH_LIBTORCH_LIB");

/// `readelf -d` of the binary, or `None` (with a loud message) when readelf is not installed.
fn dynamic_section() -> Option<String> {
    match Command::new("readelf").arg("-d").arg(BIN).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "readelf -d {BIN} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) => {
            eprintln!(
                "!!! SKIPPED: cannot run readelf ({e}); install binutils to check how {BIN} \
                 links libtorch"
            );
            None
        }
    }
}

#[test]
fn libtorch_cuda_is_needed() {
    let lib = LIBTORCH_LIB.expect("search/build.rs sets OPTARCH_LIBTORCH_LIB");
    if !Path::new(lib).join("libtorch_cuda.so").is_file() {
        eprintln!("!!! SKIPPED: {lib} has no libtorch_cuda.so (CPU-only libtorch)");
        return;
    }
    let Some(dynamic) = dynamic_section() else {
        return;
    };
    assert!(
        dynamic.contains("Shared library: [libtorch_cuda.so]"),
        "libtorch_cuda.so is not NEEDED by {BIN}, so CUDA would silently be unavailable:\n\
         {dynamic}"
    );
    for needed in ["libtorch_cpu.so", "libc10.so"] {
        assert!(
            dynamic.contains(&format!("Shared library: [{needed}]")),
            "{needed} is not NEEDED:\n{dynamic}"
        );
    }
}

#[test]
fn rpath_points_at_libtorch() {
    let lib = LIBTORCH_LIB.expect("search/build.rs sets OPTARCH_LIBTORCH_LIB");
    let Some(dynamic) = dynamic_section() else {
        return;
    };
    let rpath = dynamic
        .lines()
        .find(|l| l.contains("(RPATH)") || l.contains("(RUNPATH)"))
        .unwrap_or_else(|| panic!("no RPATH or RUNPATH in {BIN}:\n{dynamic}"));
    assert!(rpath.contains(lib), "{lib} is not in the rpath: {rpath}");
}

#[test]
fn runs_without_ld_library_path() {
    let mut child = Command::new(BIN)
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn optarch");
    let mut pipe = child.stderr.take().expect("stderr pipe");
    let reader = std::thread::spawn(move || {
        let mut stderr = String::new();
        let _ = pipe.read_to_string(&mut stderr);
        stderr
    });
    // No arguments should print usage and stop at once; never hang the test suite.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for optarch") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{BIN} with no arguments was still running after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = reader.join().expect("stderr reader");
    // The dynamic loader reports a missing library on stderr and exits with 127.
    assert!(
        !stderr.contains("error while loading shared libraries") && status.code() != Some(127),
        "{BIN} cannot start without LD_LIBRARY_PATH ({status}):\n{stderr}"
    );
}
