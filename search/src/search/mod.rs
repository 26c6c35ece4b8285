//! Architecture search: candidates from specs and generated recurrences, successive halving /
//! ASHA over epochs, a crash-safe SQLite store and parallel trial processes.
//!
//! The modules, each importing only from the ones before it:
//! [`config`], [`ids`], [`candidate`] → [`pool`] (the candidates of a configuration) →
//! [`store`] (the SQLite file) → [`rank`] (what is better than what) → [`strategy`], [`asha`]
//! (which trial next) → [`trial`] (the trial process) → [`executor`] (where trial processes
//! run) → [`driver`] (the event loop).
//!
//! See `docs/SEARCH.md` for the configuration and what a search directory holds, and
//! `docs/ARCHITECTURE.md` for the path of one spec from YAML to the report.

pub(crate) mod asha;
pub mod candidate;
pub mod config;
pub mod driver;
pub mod executor;
pub mod ids;
pub(crate) mod pool;
pub(crate) mod rank;
pub mod store;
pub(crate) mod strategy;
pub mod trial;
