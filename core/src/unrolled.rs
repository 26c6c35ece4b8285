//! [`Unrolled`]: what a network generated from a spec knows about itself.
//!
//! `#[derive(optarch_macros::Unroll)]` (and the module `optarch codegen` prints) implements it
//! for the user's struct, the way burn's derive implements burn-core's `Module`: the derive
//! emits the constants, this trait supplies the rest. Generic code over derived networks names
//! the trait:
//!
//! ```
//! use optarch_core::Unrolled;
//!
//! /// One line about any derived network.
//! fn describe<N: Unrolled>() -> Result<String, optarch_core::error::SpecError> {
//!     let topo = N::topology()?;
//!     Ok(format!("{}: {} steps, {} blocks, {} edges", topo.name, N::STEPS, N::BLOCKS,
//!         topo.graph.edge_count()))
//! }
//! # struct Gd;
//! # impl Unrolled for Gd {
//! #     const STEPS: usize = 2;
//! #     const BLOCKS: usize = 2;
//! #     const LEARNABLES: usize = 0;
//! #     const SPEC_FILE: &'static str = "gd.yaml";
//! #     const SPEC_YAML: &'static str =
//! #         "name: gd\nstate: [z]\nstep:\n  z[k+1]: z[k] - grad(z[k])\noutput: z\n";
//! #     const SPEC_HASH: u64 = 0;
//! #     fn overrides() -> optarch_core::spec::Overrides { Default::default() }
//! # }
//! assert!(describe::<Gd>()?.starts_with("gd: 2 steps, 2 blocks"));
//! # Ok::<(), optarch_core::error::SpecError>(())
//! ```

use crate::error::SpecError;
use crate::plan::Plan;
use crate::spec::{Overrides, Spec};
use crate::topology::Topology;

/// A network generated from a spec unrolled for a fixed number of steps.
pub trait Unrolled {
    /// The number of steps the spec is unrolled for.
    const STEPS: usize;
    /// The number of learned blocks (block operations of the plan).
    const BLOCKS: usize;
    /// The number of learnable coefficient scalars.
    const LEARNABLES: usize;
    /// The spec file as named in the attribute (or the inline label).
    const SPEC_FILE: &'static str;
    /// The spec text the code was generated from.
    const SPEC_YAML: &'static str;
    /// FNV-1a (64 bits) of [`Self::SPEC_YAML`] ([`crate::codegen::spec_hash`]).
    const SPEC_HASH: u64;

    /// The parameter overrides the network was generated with.
    fn overrides() -> Overrides;

    /// The spec, validated again from [`Self::SPEC_YAML`].
    fn spec() -> Result<Spec, SpecError> {
        crate::spec::load_str(Self::SPEC_FILE, Self::SPEC_YAML)
    }

    /// The unrolled topology the forward pass was generated from.
    fn topology() -> Result<Topology, SpecError> {
        crate::topology::unroll(&Self::spec()?, Self::STEPS, &Self::overrides())
    }

    /// The execution plan the forward pass follows, operation by operation.
    fn plan() -> Result<Plan, SpecError> {
        Plan::compile(&Self::topology()?)
    }
}
