//! Architecture search: candidates from specs and generated recurrences, successive halving /
//! ASHA over epochs, a crash-safe SQLite store, parallel trial processes, reports and export.
//!
//! See `docs/SEARCH.md` for the configuration and what a search directory holds.

pub mod asha;
pub mod candidates;
pub mod config;
pub mod driver;
pub mod executor;
pub mod export;
pub mod forkserver;
pub mod report;
pub mod store;
pub mod strategy;
pub mod trial;
