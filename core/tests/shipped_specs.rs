//! Every shipped spec loads, unrolls and folds as its formula says.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optarch_core::spec::{self, Overrides};
use optarch_core::topology::unroll;
use std::path::PathBuf;

fn specs_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../specs")
}

#[test]
fn every_shipped_spec_loads_and_unrolls() {
    let mut n = 0;
    for entry in std::fs::read_dir(specs_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let s = spec::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert!(!s.summary.is_empty(), "{} has no summary", path.display());
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with('#'),
            "{} has no formula comment",
            path.display()
        );
        for steps in [1, 2, 5, 20] {
            let t = unroll(&s, steps, &Overrides::new()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(t.block_count(), steps, "{} at {steps} steps", s.name);
        }
        n += 1;
    }
    assert!(n >= 8, "only {n} specs found");
}

/// `grad(x)` of a value already differentiated is the block computed then (Adams–Bashforth
/// reads earlier gradients: one block per step); a new evaluation point is a new block (the
/// midpoint rule: two per step).
#[test]
fn a_gradient_of_the_same_value_is_one_block() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/methods");
    for (path, per_step) in [
        (specs_dir().join("adams_bashforth3.yaml"), 1),
        (fixtures.join("midpoint.yaml"), 2),
        (specs_dir().join("qhm.yaml"), 1),
    ] {
        let name = path.display();
        let s = spec::load(&path).unwrap();
        for steps in [1, 2, 3, 8, 20] {
            let t = unroll(&s, steps, &Overrides::new()).unwrap();
            assert_eq!(t.block_count(), per_step * steps, "{name} at {steps} steps");
        }
    }
    // Within one step too: the same point twice is one block, whatever the spelling.
    let twice = "name: t\ngradient: residual\nstate: [z]\nstep:\n  z[k+1]: z[k] - 0.5 * grad(z[k]) - 0.5 * grad(z[k])\noutput: z\n";
    let t = unroll(
        &spec::load_str("t.yaml", twice).unwrap(),
        4,
        &Overrides::new(),
    )
    .unwrap();
    assert_eq!(t.block_count(), 4);
    let comb = "name: c\ngradient: residual\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k] + 0.5 * (z[k] - z[k-1])) - grad(z[k] + 0.5 * (z[k] - z[k-1]))\noutput: z\n";
    let t = unroll(
        &spec::load_str("c.yaml", comb).unwrap(),
        4,
        &Overrides::new(),
    )
    .unwrap();
    assert_eq!(t.block_count(), 4);
}

/// Unrolling stops with a clear error once the topology passes its edge bound, long before its
/// memory grows past a gigabyte.
#[test]
fn topologies_past_the_edge_bound_are_refused() {
    let dense = spec::load(specs_dir().join("densenet.yaml")).unwrap();
    assert!(unroll(&dense, 1000, &Overrides::new()).is_ok());
    let e = unroll(&dense, 1100, &Overrides::new()).unwrap_err();
    assert!(e.message.contains("edges"), "{e}");
    assert!(e.hint.clone().unwrap_or_default().contains("fewer"));
}

/// The shipped triple momentum method converges at its designed rate: with ρ = 1 − 1/√κ its
/// asymptotic rate on quadratics with condition number κ is ρ (Van Scoy, Freeman, Lynch 2018),
/// through the spec's own schedules for α, β and γ. QHM with ν = 0 is gradient descent's rate.
#[test]
fn triple_momentum_and_qhm_have_their_rates() {
    use optarch_core::theory::{rate, RateOptions};
    let tmm = spec::load(specs_dir().join("triple_momentum.yaml")).unwrap();
    for kappa in [4.0f64, 100.0, 10_000.0] {
        let rho = 1.0 - 1.0 / kappa.sqrt();
        let opts = RateOptions {
            kappa,
            steps: 10,
            ..RateOptions::default()
        };
        let o: Overrides = [("rho".to_string(), rho)].into();
        let got = rate(&tmm, &opts, &o).unwrap().rate.asymptotic.unwrap();
        assert!((got - rho).abs() < 1e-6, "κ {kappa}: {got} vs {rho}");
    }
    let qhm = spec::load(specs_dir().join("qhm.yaml")).unwrap();
    let opts = RateOptions {
        kappa: 100.0,
        steps: 10,
        ..RateOptions::default()
    };
    let o: Overrides = [("nu".to_string(), 0.0)].into();
    let got = rate(&qhm, &opts, &o).unwrap().rate.asymptotic.unwrap();
    assert!(
        (got - 0.99).abs() < 1e-9,
        "QHM ν = 0 is gradient descent: {got}"
    );
}
