//! Shared helpers for the optarch examples.
