//! Derive macros for optarch.
//!
//! Not built yet: the derive on model structs arrives with the derive-macro issue. This crate
//! already reaches `optarch-core` with default features off, so it never links libtorch.

// The generator will live in optarch-core (feature `torch` off); this keeps the dependency wired.
use optarch_core as _;
