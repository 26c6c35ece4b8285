//! How a network computes: the precision of its arithmetic and the memory layout of its
//! feature maps. The one place that decides both, for the executor's networks.
//!
//! * **fp32** (exact): everything in single precision, as the reference.
//! * **bf16** (mixed): every convolution reads its input and a per-forward bfloat16 copy of its
//!   fp32 weight (so gradients reach the fp32 master weights, which the optimiser updates and
//!   checkpoints store); activations stay in bfloat16 through batch norm (its parameters and
//!   running statistics in fp32), ReLU, the weighted combinations (their learnable
//!   coefficients are fp32 scalars, which do not promote a bf16 tensor) and concatenations;
//!   the classifier's input is cast back to fp32, so the linear layer, the softmax and the loss
//!   are fp32. Casting each convolution's output back to fp32 instead would cost half as much
//!   again (measured in PyTorch: 320 ms against 215 ms a ResNet-20 step).
//! * **channels_last**: NCHW-shaped tensors with NHWC strides for the input and every 4-d
//!   weight (`permute(0,2,3,1).contiguous().permute(0,3,1,2)`); oneDNN's convolutions then
//!   keep that layout through the network.
//!
//! Networks of your own (`#[derive(Unroll)]` stages with your blocks) compute the same way
//! when their convolutions are [`crate::exec::Conv`]s called with a `Compute`, their input goes
//! through [`Compute::input`] and their classifier's input through [`Compute::head`]; the
//! generated recurrence itself (additions and scalar coefficients) keeps whatever precision
//! the blocks return. `examples/src/lib.rs` shows a complete one.
//!
//! tch 0.24 has neither CPU autocast nor memory formats; the explicit casts above measure the
//! same as PyTorch's autocast with channels_last (docs/BENCHMARKS.md).

use tch::{Kind, Tensor};

/// The precision and layout of a network's arithmetic.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Compute {
    /// Convolutions and activations in bfloat16 (mixed precision); fp32 when false.
    pub bf16: bool,
    /// NHWC strides for inputs and 4-d weights.
    pub channels_last: bool,
}

impl Compute {
    /// Single precision, contiguous: exact.
    pub const FP32: Compute = Compute {
        bf16: false,
        channels_last: false,
    };

    /// The fastest setting on `device` for a training step of `step_pixels` (batch × height ×
    /// width): bf16 with channels_last where [`crate::device::prefers_bf16`] says so (a CPU
    /// with bfloat16 instructions; a CUDA device for large enough steps), else fp32.
    pub fn fastest(device: tch::Device, step_pixels: i64) -> Compute {
        match crate::device::prefers_bf16(device, step_pixels) {
            true => Compute {
                bf16: true,
                channels_last: true,
            },
            false => Compute::FP32,
        }
    }

    /// `t` with NHWC strides (4-d tensors only) when channels_last is on.
    pub fn layout(&self, t: Tensor) -> Tensor {
        if self.channels_last && t.dim() == 4 {
            t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
        } else {
            t
        }
    }

    fn cast(&self, t: &Tensor) -> Tensor {
        if self.bf16 && t.kind() != Kind::BFloat16 {
            t.to_kind(Kind::BFloat16)
        } else {
            t.shallow_clone()
        }
    }

    /// The network's input, in the compute precision and layout.
    pub fn input(&self, x: &Tensor) -> Tensor {
        self.layout(self.cast(x))
    }

    /// The weight a convolution uses in this forward pass: a cast (and relaid) copy of the
    /// fp32 master, through which gradients reach it.
    pub fn weight(&self, w: &Tensor) -> Tensor {
        self.layout(self.cast(w))
    }

    /// The classifier's input: back in fp32.
    pub fn head(&self, x: &Tensor) -> Tensor {
        if self.bf16 {
            x.to_kind(Kind::Float)
        } else {
            x.shallow_clone()
        }
    }
}

impl std::str::FromStr for Compute {
    type Err = String;

    /// `fp32`, `fp32+cl`, `bf16` or `bf16+cl` (`+cl`: channels_last), as the benchmarks
    /// name them.
    fn from_str(s: &str) -> Result<Compute, String> {
        let (p, channels_last) = match s.strip_suffix("+cl") {
            Some(p) => (p, true),
            None => (s, false),
        };
        let bf16 = match p {
            "fp32" => false,
            "bf16" => true,
            _ => {
                return Err(format!(
                    "unknown compute `{s}`: expected fp32, fp32+cl, bf16 or bf16+cl"
                ))
            }
        };
        Ok(Compute {
            bf16,
            channels_last,
        })
    }
}

impl std::fmt::Display for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = if self.bf16 { "bf16" } else { "fp32" };
        if self.channels_last {
            write!(f, "{p}, channels_last")
        } else {
            write!(f, "{p}")
        }
    }
}
