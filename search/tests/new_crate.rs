//! `optarch new`: a crate of your own, made outside the workspace, builds and runs with
//! `cargo run` and no environment variables set; its program finds libtorch through its
//! runpath and keeps libtorch_cuda.so (CUDA would otherwise vanish silently on a GPU machine).
//! It builds into the workspace's target directory, so libtorch's C++ bindings are not
//! compiled twice (a few minutes on 2 cores all the same).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

#[test]
fn a_new_crate_builds_and_runs_with_no_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hb");
    let o = Command::new(env!("CARGO_BIN_EXE_optarch"))
        .args(["new", "hb-net", "--path"])
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("cargo run"));
    for f in [
        "Cargo.toml",
        "build.rs",
        ".cargo/config.toml",
        "src/main.rs",
        "specs/heavy_ball.yaml",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    // A second time into the same folder: refused, nothing overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_optarch"))
        .args(["new", "hb-net", "--path"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    let bad = Command::new(env!("CARGO_BIN_EXE_optarch"))
        .args(["new", "9 lives"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));

    // cargo run as a user would: no libtorch variables, no venv on PATH.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let path: String = std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .filter(|p| !p.contains("torch-2.11.0") && !p.contains(".venv"))
        .collect::<Vec<_>>()
        .join(":");
    let run = Command::new("cargo")
        .args(["run", "--quiet"])
        .current_dir(&dir)
        .env_clear()
        .env("PATH", &path)
        .env("HOME", std::env::var("HOME").unwrap_or_default())
        .env("CARGO_TARGET_DIR", &target)
        .envs(std::env::var("CARGO_HOME").ok().map(|h| ("CARGO_HOME", h)))
        .envs(
            std::env::var("RUSTUP_HOME")
                .ok()
                .map(|h| ("RUSTUP_HOME", h)),
        )
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(out.contains("step 4: loss"), "{out}");
    assert!(out.contains("trained on"), "{out}");

    // The program: libtorch through its runpath, libtorch_cuda kept.
    let exe = target.join("debug/hb-net");
    let elf = Command::new("readelf")
        .arg("-d")
        .arg(&exe)
        .output()
        .unwrap();
    let elf = String::from_utf8_lossy(&elf.stdout);
    assert!(
        elf.lines()
            .any(|l| (l.contains("(RUNPATH)") || l.contains("(RPATH)")) && l.contains("torch/lib")),
        "no runpath to libtorch:\n{elf}"
    );
    assert!(
        elf.contains("[libtorch_cuda.so]"),
        "libtorch_cuda.so is not NEEDED:\n{elf}"
    );
    // And it runs by itself, without cargo.
    let direct = Command::new(&exe).env_clear().output().unwrap();
    assert!(
        direct.status.success(),
        "{}",
        String::from_utf8_lossy(&direct.stderr)
    );
}
