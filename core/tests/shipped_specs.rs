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
