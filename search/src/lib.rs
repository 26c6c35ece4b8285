//! optarch-search: data sets, the trainer, and the architecture search.

pub mod data;
pub mod search;
pub mod train;
