//! The exit codes the README promises, end to end, one table: 0 success, 1 an invalid spec or
//! search configuration (or a failed check), 2 bad usage, 3 other failures (files that cannot
//! be read, data, devices).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

#[test]
fn every_documented_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs");
    let hb = specs.join("heavy_ball.yaml").display().to_string();
    let invalid = tmp.path().join("invalid.yaml");
    std::fs::write(&invalid, "name: x\nstate: [z]\nupdate:\n  z: z + y\n").unwrap();
    let invalid = invalid.display().to_string();
    let bad_config = tmp.path().join("bad-search.yaml");
    std::fs::write(
        &bad_config,
        "name: x\nbudget: {max_epochs: 0, trials: 1}\ncandidates: []\n",
    )
    .unwrap();
    let bad_config = bad_config.display().to_string();
    let missing = tmp.path().join("missing.yaml").display().to_string();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["check", &hb], 0, "a valid spec"),
        (&["--help"], 0, "help"),
        (&["check", &invalid], 1, "an invalid spec"),
        (&["rate", &invalid], 1, "an invalid spec, another command"),
        (
            &["search", &bad_config, "--check"],
            1,
            "an invalid search configuration",
        ),
        (&["frobnicate"], 2, "an unknown command"),
        (
            &["rate", &hb, "--set", "foo=1"],
            2,
            "--set naming no parameter",
        ),
        (&["rate", &hb, "--set", "beta"], 2, "--set without a value"),
        (
            &["train", "--spec", &hb, "--depth", "7"],
            2,
            "a depth the preset does not have",
        ),
        (&["--device", "cuda:x", "env"], 2, "a malformed device"),
        (
            &["search", "--retry-failed", &bad_config],
            2,
            "--retry-failed without --resume",
        ),
        (&["check", &missing], 3, "a spec file that is not there"),
        (
            &["graph", &missing],
            3,
            "a spec file that is not there, another command",
        ),
        (
            &["search", &missing, "--check"],
            3,
            "a configuration file that is not there",
        ),
        (&["report", &missing], 3, "no search there"),
    ];
    let mut wrong = Vec::new();
    for (args, want, what) in cases {
        let o = Command::new(env!("CARGO_BIN_EXE_optarch"))
            .args(*args)
            .output()
            .unwrap();
        let got = o.status.code().unwrap_or(-1);
        if got != *want {
            wrong.push(format!(
                "{what} (optarch {}): exit {got}, want {want}\n  {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr)
                    .lines()
                    .next()
                    .unwrap_or("")
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
