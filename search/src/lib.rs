//! optarch-search: data sets, trainer and search (in progress).

pub mod data;
pub mod train;
