//! optarch-search: data sets, the trainer, the architecture search, its reports and export.
//!
//! The modules are layers, each importing only from the ones before it:
//! [`checks`] → [`data`] → [`train`] → [`search`] → [`report`], [`export`]. The `optarch` program is the
//! binary's own module tree (`src/bin/optarch/`). See `docs/ARCHITECTURE.md`.

#![warn(unreachable_pub)]

pub mod checks;
pub mod data;
pub mod export;
pub mod report;
pub mod search;
pub mod train;
