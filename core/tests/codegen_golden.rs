//! Golden tests of `optarch codegen`: the pretty-printed module of every shipped spec at 3
//! steps is pinned in `tests/golden/<spec>.rs` (refresh with `UPDATE_GOLDEN=1`). The same files
//! are compiled and run in `examples/tests/golden_compiles.rs`, and `optarch codegen` itself is
//! checked against one of them in `search/tests/codegen_cli.rs`.

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use optarch_core::codegen;
use std::path::Path;

const SPECS: &[&str] = &[
    "densenet",
    "gradient_descent",
    "gradient_descent_objective",
    "heavy_ball",
    "lm_resnet",
    "momentum_resnet",
    "nesterov",
    "nesterov_theta",
    "polyak_ema",
];

fn generate(name: &str, steps: usize, shared: bool) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join(format!("specs/{name}.yaml"))).unwrap();
    let spec = optarch_core::spec::load_str(&format!("specs/{name}.yaml"), &text).unwrap();
    codegen::source(&spec, steps, &Default::default(), None, shared).unwrap()
}

#[test]
fn every_shipped_spec_matches_its_golden_file() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut stale = Vec::new();
    for name in SPECS {
        let code = generate(name, 3, false);
        let path = dir.join(format!("{name}.rs"));
        if update {
            std::fs::write(&path, &code).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(code.as_str()) {
            stale.push(name.to_string());
            eprintln!("--- {name}: generated\n{code}");
        }
    }
    assert!(
        stale.is_empty(),
        "golden files differ: {stale:?} (UPDATE_GOLDEN=1 rewrites them)"
    );
}

/// The generated code runs in the plan's order: each average takes in its new iterate as soon
/// as it exists and the old average is dropped before the next block runs.
#[test]
fn generated_code_follows_the_plans_memory_order() {
    let code = generate("polyak_ema", 3, false);
    let at = |s: &str| code.find(s).unwrap();
    assert!(at("let m1 =") < at("let b1 ="), "{code}");
    assert!(at("::core::mem::drop(m1);") < at("let b2 ="), "{code}");
    assert!(at("let m2 =") < at("let b2 ="), "{code}");
}

#[test]
fn generated_code_is_straight_line_and_folded() {
    let hb = generate("heavy_ball", 3, false);
    // β = 0.5 folded: (1 + β) z - β z₋ + B(z), no multiplication by 1, values dropped.
    assert!(hb.contains("let z2 = &z1 * 1.5 + &b1 - xs * 0.5;"), "{hb}");
    assert!(hb.contains("::core::mem::drop(z1);"), "{hb}");
    assert!(!hb.contains("* 1.0"), "{hb}");
    assert!(!hb.contains(" in 0.."), "{hb}"); // no loops
    let gdo = generate("gradient_descent_objective", 3, false);
    // Objective reading at h = 1: z - (z - B(z)) = B(z), a plain chain.
    assert!(!gdo.contains("let z"), "{gdo}");
    let shared = generate("heavy_ball", 3, true);
    assert!(shared.contains("pub blocks: B,"), "{shared}");
    let lm = generate("lm_resnet", 3, false);
    assert!(
        lm.contains("pub coef: ::optarch_core::__private::tch::Tensor"),
        "{lm}"
    );
}

#[test]
fn errors_are_spec_errors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let text = std::fs::read_to_string(root.join("specs/heavy_ball.yaml")).unwrap();
    let spec = optarch_core::spec::load_str("specs/heavy_ball.yaml", &text).unwrap();
    let e = codegen::source(&spec, 0, &Default::default(), None, false).unwrap_err();
    assert!(e.to_string().contains("number of steps"), "{e}");
    let e = codegen::source(&spec, 3, &Default::default(), Some("not a name"), false).unwrap_err();
    assert!(e.to_string().contains("not a Rust type name"), "{e}");
    let mut o = optarch_core::spec::Overrides::new();
    o.insert("bta".into(), 0.9);
    let e = codegen::source(&spec, 3, &o, None, false).unwrap_err();
    assert!(e.to_string().contains("did you mean `beta`"), "{e}");
}
