//! Fuzz target `load`: arbitrary text through the whole spec pipeline.
//!
//! `spec::load_str` must turn every input into either a `Spec` or a `SpecError`; the error's
//! `Display` (which prints the source line and a caret) must not panic either. When a spec
//! loads, it is unrolled for 1..=4 steps, each topology analysed, and its quadratic rate
//! computed on a small grid. Errors from any stage are fine; panics, stack overflows,
//! timeouts and runaway memory are bugs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use optarch_core::{analysis, spec, theory, topology};

fuzz_target!(|data: &[u8]| {
    // Only valid UTF-8 is meaningful to the loader (it takes `&str`); lossy conversion would
    // make many inputs collapse onto the same U+FFFD text, so invalid bytes are skipped.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let spec = match spec::load_str("fuzz.yaml", text) {
        Ok(spec) => spec,
        Err(err) => {
            std::hint::black_box(err.to_string());
            return;
        }
    };
    let overrides = spec::Overrides::default();
    for steps in 1..=4 {
        match topology::unroll(&spec, steps, &overrides) {
            Ok(topo) => match analysis::analyse(&topo) {
                Ok(a) => {
                    std::hint::black_box(a.to_string());
                }
                Err(err) => {
                    std::hint::black_box(err.to_string());
                }
            },
            Err(err) => {
                std::hint::black_box(err.to_string());
            }
        }
    }
    let opts = theory::RateOptions { kappa: 10.0, steps: 3, grid: 5 };
    match theory::rate(&spec, &opts, &overrides) {
        Ok(report) => {
            std::hint::black_box(report);
        }
        Err(err) => {
            std::hint::black_box(err.to_string());
        }
    }
});
