//! Derive macros for optarch.
//!
//! Not built yet: the derive on model structs arrives with the derive-macro issue. This crate
//! already reaches `optarch-core` with default features off, so it never links libtorch.

/// Re-exported so downstream code can check the crate pairing; the derive itself is not built yet.
#[doc(hidden)]
pub use optarch_core as _core_check_do_not_use;
