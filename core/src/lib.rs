//! optarch-core: optimization algorithms as neural-network structures.
//!
//! One path from spec to tensors: a YAML [`spec`] is validated into a typed
//! [`spec::Spec`] (its semantics in [`spec::eval`]), unrolled into a [`topology::Topology`] (a petgraph DAG of input,
//! blocks, weighted combinations, concatenations and output), analysed ([`analysis`]), studied
//! on quadratics ([`theory`]) and drawn ([`render`]).
//!
//! ```
//! let spec = optarch_core::spec::load_str(
//!     "inline.yaml",
//!     "name: gd\ngradient: residual\nstate: [z]\nstep:\n  z[k+1]: z[k] - grad(z[k])\noutput: z\n",
//! )?;
//! let topo = optarch_core::topology::unroll(&spec, 3, &Default::default())?;
//! assert_eq!(topo.block_count(), 3);
//! # Ok::<(), optarch_core::error::SpecError>(())
//! ```

pub mod analysis;
pub mod codegen;
pub mod coef;
pub mod error;
pub mod expr;
pub mod linear;
pub mod malloc;
pub mod plan;
#[cfg(feature = "render")]
pub mod render;
pub mod spec;
#[cfg(feature = "theory")]
pub mod theory;
pub mod topology;
pub mod unrolled;

pub use unrolled::Unrolled;

#[cfg(feature = "torch")]
pub mod device;
#[cfg(feature = "torch")]
pub mod exec;

/// libtorch's Rust bindings, the version optarch is built with: `use optarch_core::tch;` in a
/// crate of your own, so its tensors and optarch's are one type.
#[cfg(feature = "torch")]
pub use tch;

/// Re-exports for generated code (the derive macro, `optarch codegen`): generated code names
/// tch as `::optarch_core::__private::tch`, so a user crate needs no `tch` dependency under a
/// fixed name. Not a public API.
#[cfg(feature = "torch")]
#[doc(hidden)]
pub mod __private {
    pub use tch;
}
