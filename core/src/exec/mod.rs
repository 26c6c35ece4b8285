//! The libtorch executor: an unrolled [`Topology`](crate::topology::Topology) plus a
//! macro-architecture becomes a trainable [`tch::nn::ModuleT`].
//!
//! * [`plan`]: the topology compiled once into an execution [`Plan`] (topological order, each
//!   node's ordered operands with their coefficients, consumer counts); running it frees every
//!   intermediate tensor as soon as its last consumer has run.
//! * [`blocks`]: the learned blocks `B` (basic, bottleneck, pre-activation, dense).
//! * [`compute`]: the precision (fp32, bf16) and memory layout (channels_last) of the
//!   arithmetic.
//! * `python`: [`Network::python`], the network written out as a PyTorch `nn.Module`.
//! * [`arch`]: stems, stages, stage transitions, heads and the presets (`cifar-resnet`,
//!   `cifar-densenet`, `imagenet`), and [`Network`], the module itself.
//!
//! See `docs/EXECUTOR.md` for the conventions (where the post-addition ReLU goes, which ResNet
//! shortcut option is matched, the measured parameter counts).
//!
//! ```no_run
//! use optarch_core::exec::{Arch, Network};
//! use tch::nn::ModuleT;
//! let spec = optarch_core::spec::load("specs/gradient_descent.yaml")?;
//! let vs = tch::nn::VarStore::new(tch::Device::Cpu);
//! let net = Network::new(&vs.root(), &spec, &Default::default(), &Arch::cifar_resnet(20, 10)?)?;
//! let logits = net.forward_t(&tch::Tensor::zeros([2, 3, 32, 32], tch::kind::FLOAT_CPU), false);
//! assert_eq!(logits.size(), [2, 10]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod arch;
pub mod blocks;
pub mod compute;
pub mod plan;
mod python;
pub mod reference;

pub use arch::{Arch, History, Network, Shortcut, Stage, Stem};
pub use blocks::{Block, BlockKind, Conv};
pub use compute::Compute;
pub use plan::{Kernels, Op, OpKind, Plan, Scale};

use crate::error::SpecError;

/// Why a network cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The spec does not unroll.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The architecture and the spec do not fit together (widths, strides, counts).
    #[error("{0}")]
    Config(String),
}

impl ExecError {
    pub(crate) fn config(msg: impl Into<String>) -> Self {
        ExecError::Config(msg.into())
    }
}

/// A VarStore path component: letters, digits and `_` only (tch panics on `.`).
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "_".into()
    } else {
        s
    }
}

/// The number of trainable scalars in a VarStore (BN running statistics are not counted).
pub fn parameter_count(vs: &tch::nn::VarStore) -> i64 {
    vs.trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum()
}
