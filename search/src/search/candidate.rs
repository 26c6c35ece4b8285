//! [`Candidate`]: one network structure of a search, the one type from the pool builder to
//! the store, the strategies, the trials and the report.

use crate::train::ArchConfig;
use optarch_core::spec::Overrides;
use serde::{Deserialize, Serialize};

/// One candidate network structure: a spec with its parameter values, and what the pool knows
/// of it before any training.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub name: String,
    /// `spec:<file>` or `generated`.
    pub origin: String,
    /// Candidates of one family are neighbours for evolution's mutations.
    pub family: String,
    /// The spec's text (a generated spec's whole YAML).
    pub spec_yaml: String,
    /// Its parameter values (replacing the spec's own).
    pub overrides: Overrides,
    /// Coordinates for evolution's mutation distance (grid values, coefficients).
    pub features: Vec<f64>,
    /// md5 of the canonical form of its unrolled topology
    /// ([`optarch_core::topology::Topology::canonical`]): equal for candidates that compute
    /// the same thing, which are trained once.
    pub topo_hash: String,
    /// md5 of its spec text and parameter values.
    pub spec_hash: String,
    /// Worst-case contraction on quadratics (spec theory), when defined.
    pub contraction: Option<f64>,
    /// Asymptotic rate, when defined.
    pub asymptotic: Option<f64>,
    /// A named reference (`finalists.references`): trained with the finalists' seeds, the
    /// winner is compared with it on the test set.
    #[serde(default)]
    pub reference: bool,
    /// Its own macro-architecture (its configuration entry's `arch:`), replacing the search's
    /// `train.arch`; part of its topology hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<ArchConfig>,
}
