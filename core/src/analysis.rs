//! Analyses of unrolled topologies.
