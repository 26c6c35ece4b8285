//! The learned blocks `B` of a step.
//!
//! | kind | layers | output channels |
//! |---|---|---|
//! | `basic` | conv3×3(stride)-BN-ReLU-conv3×3-BN (He et al. 2016) | `width` |
//! | `bottleneck` | conv1×1-BN-ReLU-conv3×3(stride)-BN-ReLU-conv1×1-BN | `4·width` |
//! | `preact` | BN-ReLU-conv3×3(stride)-BN-ReLU-conv3×3 (He et al., identity mappings) | `width` |
//! | `dense` | BN-ReLU-conv1×1(4k)-BN-ReLU-conv3×3(k) (DenseNet-BC) | `k` (growth rate) |
//!
//! Convolutions have no bias (a BN follows or the block is summed into BN'd paths). The ReLU
//! after a residual addition is not part of the block: post-activation architectures apply it
//! to the combined state (see [`crate::exec::arch`]).

use super::compute::Compute;
use super::ExecError;
use schemars::JsonSchema;
use std::sync::atomic::{AtomicI64, Ordering};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// Which block a network uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BlockKind {
    Basic,
    /// `expansion`: output channels per unit of width (4 in He et al.).
    Bottleneck {
        expansion: i64,
    },
    Preact,
    /// `growth`: channels each block adds (k); the 1×1 bottleneck has `bottleneck·k` channels
    /// (4 in DenseNet-BC).
    Dense {
        growth: i64,
        bottleneck: i64,
    },
}

impl BlockKind {
    /// Parses `basic`, `bottleneck`, `preact` or `dense` (growth 12).
    pub fn parse(s: &str) -> Result<BlockKind, ExecError> {
        Ok(match s {
            "basic" => BlockKind::Basic,
            "bottleneck" => BlockKind::Bottleneck { expansion: 4 },
            "preact" | "pre-activation" => BlockKind::Preact,
            "dense" => BlockKind::Dense {
                growth: 12,
                bottleneck: 4,
            },
            other => {
                return Err(ExecError::config(format!(
                    "unknown block `{other}`: expected basic, bottleneck, preact or dense"
                )))
            }
        })
    }

    /// Output channels of a block of this kind in a stage of width `width`.
    pub fn out_channels(&self, width: i64) -> i64 {
        match self {
            BlockKind::Basic | BlockKind::Preact => width,
            BlockKind::Bottleneck { expansion } => width * expansion,
            BlockKind::Dense { growth, .. } => *growth,
        }
    }

    /// True for blocks that start with BN-ReLU (the network then needs a final BN-ReLU and no
    /// ReLU after additions).
    pub fn pre_activation(&self) -> bool {
        matches!(self, BlockKind::Preact | BlockKind::Dense { .. })
    }
}

/// A convolution without bias, run in a [`Compute`]'s precision and layout.
#[derive(Debug)]
pub struct Conv {
    /// The fp32 master weight.
    pub conv: nn::Conv2D,
    pub(crate) stride: i64,
    padding: i64,
    /// Its VarStore path (`s0.b1.conv1`): the module path of the PyTorch export.
    pub(crate) path: String,
}

impl Conv {
    /// A `k×k` convolution from `i` to `o` channels, padded to keep the size at stride 1.
    pub fn new(p: &nn::Path, i: i64, o: i64, k: i64, stride: i64, ws_init: nn::Init) -> Conv {
        let cfg = nn::ConvConfig {
            stride,
            padding: k / 2,
            bias: false,
            ws_init,
            ..Default::default()
        };
        Conv {
            conv: nn::conv2d(p, i, o, k, cfg),
            stride,
            padding: k / 2,
            path: module_path(p),
        }
    }

    /// `conv(x)` with the weight cast and laid out as `compute` says.
    pub fn forward(&self, x: &Tensor, compute: Compute) -> Tensor {
        x.conv2d(
            &compute.weight(&self.conv.ws),
            None::<&Tensor>,
            [self.stride, self.stride],
            [self.padding, self.padding],
            [1, 1],
            1,
        )
    }

    /// `(out, in, kernel)` of its weight.
    pub(crate) fn shape(&self) -> (i64, i64, i64) {
        match self.conv.ws.size().as_slice() {
            [o, i, k, ..] => (*o, *i, *k),
            _ => (0, 0, 0),
        }
    }

    /// Its weight's number of scalars.
    pub fn numel(&self) -> usize {
        self.conv.ws.numel()
    }
}

/// A built block.
#[derive(Debug)]
pub struct Block {
    pub(crate) kind: BlockKind,
    convs: Vec<Conv>,
    bns: Vec<nn::BatchNorm>,
    /// Output channels.
    pub out_channels: i64,
    /// Input channels, width and stride, as built.
    pub(crate) c_in: i64,
    pub(crate) width: i64,
    pub(crate) stride: i64,
    /// Its VarStore path (`s0.b1`).
    pub(crate) path: String,
}

/// The VarStore path of `p`'s variables' parent, dot-separated (as tch names variables).
pub(crate) fn module_path(p: &nn::Path) -> String {
    p.components().collect::<Vec<_>>().join(".")
}

fn conv(p: &nn::Path, name: &str, i: i64, o: i64, k: i64, stride: i64) -> Conv {
    let init = nn::Init::Kaiming {
        dist: nn::init::NormalOrUniform::Normal,
        fan: nn::init::FanInOut::FanOut,
        non_linearity: nn::init::NonLinearity::ReLU,
    };
    Conv::new(&(p / name), i, o, k, stride, init)
}

fn bn(p: &nn::Path, name: &str, c: i64) -> nn::BatchNorm {
    nn::batch_norm2d(p / name, c, Default::default())
}

impl Block {
    /// A block reading `c_in` channels, in a stage of width `width`, with `stride`.
    pub fn new(
        p: &nn::Path,
        kind: BlockKind,
        c_in: i64,
        width: i64,
        stride: i64,
    ) -> Result<Block, ExecError> {
        if c_in <= 0 || width <= 0 || stride <= 0 {
            return Err(ExecError::config(format!(
                "a block needs positive channels and stride (got {c_in} in, width {width}, stride {stride})"
            )));
        }
        let (convs, bns) = match kind {
            BlockKind::Basic => (
                vec![
                    conv(p, "conv1", c_in, width, 3, stride),
                    conv(p, "conv2", width, width, 3, 1),
                ],
                vec![bn(p, "bn1", width), bn(p, "bn2", width)],
            ),
            BlockKind::Bottleneck { expansion } => (
                vec![
                    conv(p, "conv1", c_in, width, 1, 1),
                    conv(p, "conv2", width, width, 3, stride),
                    conv(p, "conv3", width, width * expansion, 1, 1),
                ],
                vec![
                    bn(p, "bn1", width),
                    bn(p, "bn2", width),
                    bn(p, "bn3", width * expansion),
                ],
            ),
            BlockKind::Preact => (
                vec![
                    conv(p, "conv1", c_in, width, 3, stride),
                    conv(p, "conv2", width, width, 3, 1),
                ],
                vec![bn(p, "bn1", c_in), bn(p, "bn2", width)],
            ),
            BlockKind::Dense { growth, bottleneck } => {
                if stride != 1 {
                    return Err(ExecError::config(
                        "dense blocks do not downsample: use the dense transition between stages",
                    ));
                }
                let mid = growth * bottleneck;
                (
                    vec![
                        conv(p, "conv1", c_in, mid, 1, 1),
                        conv(p, "conv2", mid, growth, 3, 1),
                    ],
                    vec![bn(p, "bn1", c_in), bn(p, "bn2", mid)],
                )
            }
        };
        Ok(Block {
            kind,
            convs,
            bns,
            out_channels: kind.out_channels(width),
            c_in,
            width,
            stride,
            path: module_path(p),
        })
    }
}

/// `conv(x)`, adding its multiply-adds per image to `macs` when counting.
pub(crate) fn conv_counted(
    x: &Tensor,
    conv: &Conv,
    compute: Compute,
    macs: Option<&AtomicI64>,
) -> Tensor {
    let y = conv.forward(x, compute);
    if let Some(m) = macs {
        let size = y.size();
        let pixels: i64 = size.iter().skip(2).product();
        m.fetch_add(conv.numel() as i64 * pixels, Ordering::Relaxed);
    }
    y
}

impl Block {
    /// The forward pass in `compute`'s precision and layout, adding the multiply-adds per
    /// image of its convolutions to `macs`.
    pub fn forward_counted(
        &self,
        x: &Tensor,
        train: bool,
        compute: Compute,
        macs: Option<&AtomicI64>,
    ) -> Tensor {
        let (c, b) = (&self.convs, &self.bns);
        let cv = |x: &Tensor, i: usize| conv_counted(x, &c[i], compute, macs);
        match self.kind {
            BlockKind::Basic => {
                let h = cv(x, 0).apply_t(&b[0], train).relu();
                cv(&h, 1).apply_t(&b[1], train)
            }
            BlockKind::Bottleneck { .. } => {
                let h = cv(x, 0).apply_t(&b[0], train).relu();
                let h = cv(&h, 1).apply_t(&b[1], train).relu();
                cv(&h, 2).apply_t(&b[2], train)
            }
            BlockKind::Preact | BlockKind::Dense { .. } => {
                let h = x.apply_t(&b[0], train).relu();
                let h = cv(&h, 0).apply_t(&b[1], train).relu();
                cv(&h, 1)
            }
        }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.forward_counted(x, train, Compute::FP32, None)
    }
}
