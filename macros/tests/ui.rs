//! Diagnostics of `#[derive(Unroll)]`, pinned by trybuild `.stderr` snapshots (the toolchain
//! is pinned in rust-toolchain.toml so they stay stable), and programs that must compile and
//! run. Refresh the snapshots with `TRYBUILD=overwrite`.
//!
//! trybuild builds the programs in its own project, which has no build script recording
//! libtorch's directory as an rpath (build/link_libtorch.rs), so the pass programs find
//! libtorch through `LD_LIBRARY_PATH`: `$LIBTORCH/lib`, else the `torch` package of the
//! Python on `PATH` (scripts/env.sh), as torch-sys itself finds it.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn libtorch_lib() -> Option<String> {
    if let Some(dir) = std::env::var_os("LIBTORCH") {
        return Some(format!("{}/lib", dir.to_string_lossy()));
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))",
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn diagnostics() {
    if let Some(lib) = libtorch_lib() {
        let old = std::env::var("LD_LIBRARY_PATH").unwrap_or_default();
        std::env::set_var("LD_LIBRARY_PATH", format!("{lib}:{old}"));
    }
    // trybuild's project has no profile of its own: without debug info its copy of tch and
    // torch-sys compiles faster (torch-sys's C++ in 123 s instead of 154 s on 2 cores) and
    // takes less disk. The diagnostics do not depend on it.
    if std::env::var_os("CARGO_PROFILE_DEV_DEBUG").is_none() {
        std::env::set_var("CARGO_PROFILE_DEV_DEBUG", "false");
    }
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/pass/*.rs");
}
