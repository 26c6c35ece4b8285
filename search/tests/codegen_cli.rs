//! `optarch codegen` prints the golden module of `core/tests/golden/` (pinned there), and
//! reports spec errors with exit status 1.

use std::path::PathBuf;
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn codegen_prints_the_golden_module() {
    for name in ["heavy_ball", "lm_resnet", "densenet"] {
        let out = Command::new(env!("CARGO_BIN_EXE_optarch"))
            .args(["codegen", &format!("specs/{name}.yaml"), "--steps", "3"])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let golden =
            std::fs::read_to_string(root().join(format!("core/tests/golden/{name}.rs"))).unwrap();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), golden, "{name}");
    }
}

/// `--json`: the same code, with the spec, steps and type named.
#[test]
fn codegen_json_carries_the_golden_module() {
    let out = Command::new(env!("CARGO_BIN_EXE_optarch"))
        .args(["codegen", "specs/heavy_ball.yaml", "--steps", "3", "--json"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let golden = std::fs::read_to_string(root().join("core/tests/golden/heavy_ball.rs")).unwrap();
    assert_eq!(v["code"].as_str(), Some(golden.as_str()));
    assert_eq!(v["spec"], "heavy_ball");
    assert_eq!(v["steps"], 3);
    assert_eq!(v["type"], "HeavyBall");
}

#[test]
fn codegen_reports_spec_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_optarch"))
        .args(["codegen", "specs/heavy_ball.yaml", "--set", "bta=0.9"])
        .current_dir(root())
        .output()
        .unwrap();
    // `--set` naming no parameter: bad usage.
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("did you mean `beta`"), "{err}");
}
