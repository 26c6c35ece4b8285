//! The macro-architecture (stem, stages, transitions, head), its presets, and [`Network`].
//!
//! Inside each stage the spec is unrolled for that stage's number of steps and run by a
//! [`Plan`]. At a stage change the history restarts: the transition output is `z[0]` of the new
//! stage. With residual shortcuts ([`Shortcut::ZeroPad`], [`Shortcut::Projection`]) the blocks
//! that read `z[0]` directly read the raw stage input instead and downsample it themselves
//! (stride), exactly as the first block of a ResNet stage does, while every other use of `z[0]`
//! (the identity path, `z[-1] = z[0]`, ...) sees the transition output. With
//! [`Shortcut::Dense`] the transition (BN-ReLU-1×1 conv-2×2 average pool) is a layer of its own
//! between stages, as in DenseNet.
//!
//! Post-activation (basic and bottleneck blocks): the ReLU that follows the addition in He et
//! al.'s ResNet is applied to every new value of the output state (`z[1]`, `z[2]`, ... of the
//! spec's `output`), whatever node holds it. For gradient descent `z[k+1] = relu(z[k] +
//! B_k(z[k]))`, which is ResNet exactly; for heavy ball and Nesterov the same rule puts it after
//! the whole update. Pre-activation blocks (preact, dense) get no ReLU after additions and a
//! final BN-ReLU in the head.

use super::blocks::{conv_counted, module_path, Block, BlockKind, Conv};
use super::compute::Compute;
use super::plan::{Kernels, Op, OpKind, Plan};
use super::{sanitize, ExecError};
use crate::plan::block_name;
use crate::spec::{Overrides, Spec};
use crate::topology::Topology;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The stem: a convolution, optionally BN-ReLU and a 3×3 stride-2 max-pool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stem {
    pub width: i64,
    pub kernel: i64,
    pub stride: i64,
    pub bn_relu: bool,
    pub max_pool: bool,
}

/// One stage: the spec unrolled for `steps` steps at `width` (blocks' width; ignored by dense
/// blocks, whose width is the growth rate), entered with `stride`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub width: i64,
    pub stride: i64,
    pub steps: usize,
}

/// How the stage input is brought to the new stage's shape (the history restarts from it).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Shortcut {
    /// He et al.'s option A: stride subsampling and zero-padded channels, no parameters.
    ZeroPad,
    /// Option B: 1×1 convolution with stride, then BN.
    Projection,
    /// DenseNet transition: BN-ReLU-1×1 conv to `compression·C` channels, 2×2 average pool.
    Dense { compression: f64 },
}

/// What happens to the spec's history at a stage change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum History {
    /// The spec is unrolled afresh in every stage; the transition output is `z[0]`.
    Restart,
    /// The spec is unrolled once over all stages; every value read across a stage change goes
    /// through the transitions of the stages it crosses (one per value, with its own
    /// parameters for learned shortcuts), so momentum keeps its history.
    Project,
}

/// A macro-architecture. It reads from and writes to YAML or JSON (see [`Arch::from_yaml`]),
/// so a run's configuration can override any width, depth or count of a preset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    pub in_channels: i64,
    pub classes: i64,
    pub stem: Stem,
    pub stages: Vec<Stage>,
    pub block: BlockKind,
    pub shortcut: Shortcut,
    /// ReLU on each new value of the output state (post-activation ResNets).
    pub post_activation: bool,
    /// Restart the history at each stage change, or project it.
    pub history: History,
}

impl Arch {
    /// He et al.'s CIFAR ResNet: depth `6n + 2`, 3 stages of 16/32/64 channels with `n` steps,
    /// a 3×3 stem of 16 channels with BN-ReLU, basic blocks, option-A shortcuts.
    pub fn cifar_resnet(depth: usize, classes: i64) -> Result<Arch, ExecError> {
        if depth < 8 || !(depth - 2).is_multiple_of(6) {
            return Err(ExecError::config(format!(
                "cifar-resnet needs depth 6n+2 (20, 32, 44, 56, 110, ...), not {depth}"
            )));
        }
        let n = (depth - 2) / 6;
        Ok(Arch {
            in_channels: 3,
            classes,
            stem: Stem {
                width: 16,
                kernel: 3,
                stride: 1,
                bn_relu: true,
                max_pool: false,
            },
            stages: [(16, 1), (32, 2), (64, 2)]
                .iter()
                .map(|&(width, stride)| Stage {
                    width,
                    stride,
                    steps: n,
                })
                .collect(),
            block: BlockKind::Basic,
            shortcut: Shortcut::ZeroPad,
            post_activation: true,
            history: History::Restart,
        })
    }

    /// DenseNet-BC on CIFAR (Huang et al.): depth `L = 6n + 4` (n dense layers per stage),
    /// growth `k`, a 3×3 stem of `2k` channels, transitions with `compression`; for the
    /// `densenet` spec (concatenation) this is DenseNet-BC exactly.
    pub fn cifar_densenet(
        depth: usize,
        growth: i64,
        compression: f64,
        classes: i64,
    ) -> Result<Arch, ExecError> {
        if depth < 10 || !(depth - 4).is_multiple_of(6) {
            return Err(ExecError::config(format!(
                "cifar-densenet (BC) needs depth 6n+4 (40, 100, 190, ...), not {depth}"
            )));
        }
        if !(compression > 0.0 && compression <= 1.0) {
            return Err(ExecError::config("the compression must be in (0, 1]"));
        }
        let n = (depth - 4) / 6;
        Ok(Arch {
            in_channels: 3,
            classes,
            stem: Stem {
                width: 2 * growth,
                kernel: 3,
                stride: 1,
                bn_relu: false,
                max_pool: false,
            },
            stages: [1, 2, 2]
                .iter()
                .map(|&stride| Stage {
                    width: growth,
                    stride,
                    steps: n,
                })
                .collect(),
            block: BlockKind::Dense {
                growth,
                bottleneck: 4,
            },
            shortcut: Shortcut::Dense { compression },
            post_activation: false,
            history: History::Restart,
        })
    }

    /// ImageNet ResNets (torchvision layout): 7×7 stride-2 stem with max-pool, 4 stages of
    /// 64/128/256/512, basic blocks for depth 18/34 and bottlenecks for 50/101/152, projection
    /// shortcuts (option B).
    pub fn imagenet(depth: usize, classes: i64) -> Result<Arch, ExecError> {
        let (block, counts) = match depth {
            18 => (BlockKind::Basic, [2, 2, 2, 2]),
            34 => (BlockKind::Basic, [3, 4, 6, 3]),
            50 => (BlockKind::Bottleneck { expansion: 4 }, [3, 4, 6, 3]),
            101 => (BlockKind::Bottleneck { expansion: 4 }, [3, 4, 23, 3]),
            152 => (BlockKind::Bottleneck { expansion: 4 }, [3, 8, 36, 3]),
            _ => {
                return Err(ExecError::config(format!(
                    "imagenet depth must be 18, 34, 50, 101 or 152, not {depth}"
                )))
            }
        };
        Ok(Arch {
            in_channels: 3,
            classes,
            stem: Stem {
                width: 64,
                kernel: 7,
                stride: 2,
                bn_relu: true,
                max_pool: true,
            },
            stages: [64, 128, 256, 512]
                .iter()
                .zip(counts)
                .enumerate()
                .map(|(i, (&width, steps))| Stage {
                    width,
                    stride: if i == 0 { 1 } else { 2 },
                    steps,
                })
                .collect(),
            block,
            shortcut: Shortcut::Projection,
            post_activation: true,
            history: History::Restart,
        })
    }

    /// Reads an architecture from YAML (the form [`serde_yaml::to_string`] writes).
    pub fn from_yaml(text: &str) -> Result<Arch, ExecError> {
        serde_yaml::from_str(text)
            .map_err(|e| ExecError::config(format!("invalid architecture: {e}")))
    }

    /// A preset by name: `cifar-resnet` (depth 6n+2), `cifar-densenet` (DenseNet-BC, depth
    /// 6n+4, k = 12, compression 0.5) or `imagenet` (depth 18/34/50/101/152).
    pub fn preset(name: &str, depth: usize, classes: i64) -> Result<Arch, ExecError> {
        match name {
            "cifar-resnet" => Arch::cifar_resnet(depth, classes),
            "cifar-densenet" => Arch::cifar_densenet(depth, 12, 0.5, classes),
            "imagenet" => Arch::imagenet(depth, classes),
            other => Err(ExecError::config(format!(
                "unknown preset `{other}`: expected cifar-resnet, cifar-densenet or imagenet"
            ))),
        }
    }
}

/// A built stage transition; `path` is its VarStore path (`s1.shortcut`), the module path of
/// the PyTorch export.
#[derive(Debug)]
pub(crate) enum Transition {
    ZeroPad {
        stride: i64,
        lo: i64,
        hi: i64,
        path: String,
    },
    Projection {
        conv: Conv,
        bn: nn::BatchNorm,
        path: String,
    },
    Dense {
        bn: nn::BatchNorm,
        conv: Conv,
        stride: i64,
        path: String,
    },
}

impl Transition {
    fn forward_t(
        &self,
        x: &Tensor,
        train: bool,
        compute: Compute,
        macs: Option<&AtomicI64>,
    ) -> Tensor {
        match self {
            Transition::ZeroPad { stride, lo, hi, .. } => {
                let s = if *stride > 1 {
                    x.slice(2, 0, None, *stride).slice(3, 0, None, *stride)
                } else {
                    x.shallow_clone()
                };
                if *lo == 0 && *hi == 0 {
                    s
                } else {
                    s.constant_pad_nd([0, 0, 0, 0, *lo, *hi])
                }
            }
            Transition::Projection { conv, bn, .. } => {
                conv_counted(x, conv, compute, macs).apply_t(bn, train)
            }
            Transition::Dense {
                bn, conv, stride, ..
            } => {
                let y = conv_counted(&x.apply_t(bn, train).relu(), conv, compute, macs);
                if *stride > 1 {
                    y.avg_pool2d(
                        [*stride, *stride],
                        [*stride, *stride],
                        [0, 0],
                        false,
                        true,
                        None,
                    )
                } else {
                    y
                }
            }
        }
    }
}

/// One stage of a built network.
#[derive(Debug)]
pub struct StageNet {
    /// The stage's unrolled spec (with [`History::Project`], the whole network's).
    pub topology: Topology,
    /// The compiled plan of the stage's unrolled spec.
    pub plan: Plan,
    pub(crate) blocks: Vec<Block>,
    pub(crate) transition: Option<Transition>,
    /// Per operation: the block reads the raw stage input (and downsamples).
    pub(crate) raw: Vec<bool>,
    /// Per operation: apply the post-addition ReLU.
    pub(crate) post: Vec<bool>,
    params: Vec<Tensor>,
    /// Per operation: the transitions a [`OpKind::Map`] applies (history projection).
    pub(crate) maps: Vec<Vec<Transition>>,
    /// VarStore names of the learnable scalars, indexed like the topology's learnables.
    pub learnable_names: Vec<String>,
    /// Output channels.
    pub out_channels: i64,
    /// Multiply-adds counted while `counting` (see [`Network::multiply_adds`]).
    macs: AtomicI64,
    counting: AtomicBool,
    compute: Compute,
}

impl StageNet {
    fn counter(&self) -> Option<&AtomicI64> {
        self.counting.load(Ordering::Relaxed).then_some(&self.macs)
    }
}

impl Kernels for StageNet {
    fn block(&self, index: usize, _op: usize, x: &Tensor, train: bool) -> Tensor {
        match self.blocks.get(index) {
            Some(b) => b.forward_counted(x, train, self.compute, self.counter()),
            None => x.shallow_clone(), // unreachable: one block per block operation
        }
    }
    fn post(&self, op: usize, t: Tensor) -> Tensor {
        if self.post.get(op).copied().unwrap_or(false) {
            t.relu()
        } else {
            t
        }
    }
    fn reads_raw(&self, op: usize) -> bool {
        self.raw.get(op).copied().unwrap_or(false)
    }
    fn map(&self, _key: usize, op: usize, x: &Tensor, train: bool) -> Tensor {
        match self.maps.get(op) {
            Some(chain) => chain.iter().fold(x.shallow_clone(), |h, t| {
                t.forward_t(&h, train, self.compute, self.counter())
            }),
            None => x.shallow_clone(),
        }
    }
}

/// A network: stem, stages running their plans, head (global average pool + linear).
#[derive(Debug)]
pub struct Network {
    pub(crate) stem_conv: Conv,
    pub(crate) stem_bn: Option<nn::BatchNorm>,
    pub(crate) max_pool: bool,
    pub stages: Vec<StageNet>,
    pub(crate) head_bn: Option<nn::BatchNorm>,
    pub(crate) fc: nn::Linear,
    compute: Compute,
    /// The VarStore path it was built under (empty for the root).
    pub(crate) root: String,
}

/// The state a spec outputs (`z` for `output: z`), read off the node feeding the output.
fn output_state(plan: &Plan) -> Option<String> {
    let o = *plan.ops.get(plan.output)?.operands.first()?;
    let name = plan.ops.get(o)?.names.first()?;
    name.split('[').next().map(str::to_string)
}

impl Network {
    /// Builds `spec` (with parameter `overrides`) on `arch`, registering every variable under
    /// `p`: `stem/{conv,bn}`, `s{i}/b{k}/...` (block of step k; `b{k}_{slot}` for a second
    /// gradient evaluation in a step), `s{i}/shortcut/...`, `s{i}/coef/{name}` (learnable
    /// scalars), `head/{bn,fc}`.
    pub fn new(
        p: &nn::Path,
        spec: &Spec,
        overrides: &Overrides,
        arch: &Arch,
    ) -> Result<Network, ExecError> {
        if arch.stages.is_empty() {
            return Err(ExecError::config(
                "an architecture needs at least one stage",
            ));
        }
        let st = &arch.stem;
        let sp = p / "stem";
        let stem_conv = Conv::new(
            &(&sp / "conv"),
            arch.in_channels,
            st.width,
            st.kernel,
            st.stride,
            nn::ConvConfig::default().ws_init,
        );
        let stem_bn = st
            .bn_relu
            .then(|| nn::batch_norm2d(&sp / "bn", st.width, Default::default()));
        let mut c = st.width;
        let mut stages = Vec::with_capacity(arch.stages.len());
        if arch.history == History::Project {
            let net = Self::projected(p, spec, overrides, arch, c)?;
            c = net.out_channels;
            stages.push(net);
        }
        // Stages with the same step count share one unrolled topology.
        let mut unrolled: Vec<(usize, Topology)> = Vec::new();
        for (s, stage) in arch
            .stages
            .iter()
            .enumerate()
            .filter(|_| arch.history == History::Restart)
        {
            let topo = match unrolled.iter().find(|(k, _)| *k == stage.steps) {
                Some((_, t)) => t.clone(),
                None => {
                    let t = crate::topology::unroll(spec, stage.steps, overrides)?;
                    unrolled.push((stage.steps, t.clone()));
                    t
                }
            };
            let net = Self::stage(&(p / format!("s{s}")), topo, arch, stage, c, s == 0)?;
            c = net.out_channels;
            stages.push(net);
        }
        let head = p / "head";
        let head_bn = arch
            .block
            .pre_activation()
            .then(|| nn::batch_norm2d(&head / "bn", c, Default::default()));
        let fc = nn::linear(&head / "fc", c, arch.classes, Default::default());
        Ok(Network {
            stem_conv,
            stem_bn,
            max_pool: st.max_pool,
            stages,
            head_bn,
            fc,
            compute: Compute::FP32,
            root: module_path(p),
        })
    }

    /// Sets the precision and layout of the arithmetic (fp32 and contiguous when built).
    pub fn set_compute(&mut self, compute: Compute) {
        self.compute = compute;
        for s in &mut self.stages {
            s.compute = compute;
        }
    }

    /// The precision and layout of the arithmetic.
    pub fn compute(&self) -> Compute {
        self.compute
    }

    fn stage(
        p: &nn::Path,
        topo: Topology,
        arch: &Arch,
        stage: &Stage,
        c_in: i64,
        first: bool,
    ) -> Result<StageNet, ExecError> {
        let plan = Plan::compile(&topo)?;
        let (transition, entry_c, raw_blocks) = match arch.shortcut {
            Shortcut::Dense { .. } if first && stage.stride == 1 => (None, c_in, false),
            Shortcut::Dense { .. } => {
                let (t, c) = transition(&(p / "transition"), arch, stage, c_in)?;
                (t, c, false)
            }
            Shortcut::ZeroPad | Shortcut::Projection => {
                let (t, c) = transition(&(p / "shortcut"), arch, stage, c_in)?;
                let raw = t.is_some();
                (t, c, raw)
            }
        };
        let input = plan.input();
        let mut raw = vec![false; plan.ops.len()];
        let mut blocks = Vec::with_capacity(plan.blocks);
        let ch = infer_channels(&plan, |i, op, operand_c| {
            Ok(match &op.kind {
                OpKind::Input => Some(entry_c),
                OpKind::Block { name, .. } => {
                    let reads_input = op.operands.first().copied() == input;
                    raw[i] = raw_blocks && reads_input;
                    let (cin, stride) = if raw[i] {
                        (c_in, stage.stride)
                    } else {
                        (operand_c(0), 1)
                    };
                    let b = Block::new(&(p / name.as_str()), arch.block, cin, stage.width, stride)?;
                    let out = b.out_channels;
                    blocks.push(b);
                    Some(out)
                }
                _ => None,
            })
        })?;
        let post = post_flags(&plan, arch);
        let (params, learnable_names) = coefficients(p, &topo);
        Ok(StageNet {
            topology: topo,
            out_channels: ch[plan.output],
            plan,
            blocks,
            transition,
            raw,
            post,
            params,
            maps: Vec::new(),
            learnable_names,
            macs: AtomicI64::new(0),
            counting: AtomicBool::new(false),
            compute: Compute::FP32,
        })
    }

    /// The forward pass; `trace` collects, per stage, the live feature-map units after each
    /// operation of its plan.
    pub fn try_forward_t(
        &self,
        x: &Tensor,
        train: bool,
        mut trace: Option<&mut Vec<Vec<usize>>>,
    ) -> Result<Tensor, ExecError> {
        let c = self.compute;
        let mut h = self.stem_conv.forward(&c.input(x), c);
        if let Some(bn) = &self.stem_bn {
            h = h.apply_t(bn, train).relu();
        }
        if self.max_pool {
            h = h.max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false);
        }
        for stage in &self.stages {
            let (entry, raw) = match &stage.transition {
                None => (h, None),
                Some(t) => (t.forward_t(&h, train, c, stage.counter()), Some(h)),
            };
            let mut steps = Vec::new();
            h = stage.plan.run(
                entry,
                raw,
                &stage.params,
                stage,
                train,
                trace.is_some().then_some(&mut steps),
            )?;
            if let Some(t) = trace.as_deref_mut() {
                t.push(steps);
            }
        }
        if let Some(bn) = &self.head_bn {
            h = h.apply_t(bn, train).relu();
        }
        let pooled = h.adaptive_avg_pool2d([1, 1]).flatten(1, -1);
        Ok(c.head(&pooled).apply(&self.fc))
    }

    /// Multiply-adds per image of the convolutions and the linear layer (BN, ReLU, pooling and
    /// the additions of the plan are not counted), for an input of `channels × height × width`.
    /// Runs one eval-mode forward pass on a zero image, without gradients.
    pub fn multiply_adds(&self, channels: i64, height: i64, width: i64) -> Result<i64, ExecError> {
        let stem = AtomicI64::new(0);
        for s in &self.stages {
            s.macs.store(0, Ordering::Relaxed);
            s.counting.store(true, Ordering::Relaxed);
        }
        let device = self.fc.ws.device();
        let x = Tensor::zeros([1, channels, height, width], (tch::Kind::Float, device));
        let result = tch::no_grad(|| {
            let _ = conv_counted(&x, &self.stem_conv, Compute::FP32, Some(&stem));
            self.try_forward_t(&x, false, None)
        });
        for s in &self.stages {
            s.counting.store(false, Ordering::Relaxed);
        }
        let _ = result?;
        let fc = self.fc.ws.numel() as i64;
        Ok(stem.load(Ordering::Relaxed)
            + fc
            + self
                .stages
                .iter()
                .map(|s| s.macs.load(Ordering::Relaxed))
                .sum::<i64>())
    }

    /// VarStore names of all learnable coefficient scalars.
    pub fn learnable_names(&self) -> Vec<String> {
        self.stages
            .iter()
            .flat_map(|s| s.learnable_names.iter().cloned())
            .collect()
    }
}

impl ModuleT for Network {
    #[allow(clippy::panic)] // only on a broken plan invariant (a bug), which compile() rules out
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self.try_forward_t(x, train, None) {
            Ok(t) => t,
            Err(e) => panic!("optarch executor: {e}"),
        }
    }
}

/// The channel width of every operation of `plan`, in order. `build` decides the operations
/// that make layers (the input, blocks and, where it likes, maps), given the widths of an
/// operation's operands by position (0 where absent), and answers `None` for the rest:
/// combinations (whose operands must agree), concatenations (which sum them) and the output
/// and maps (which pass their first operand through).
fn infer_channels(
    plan: &Plan,
    mut build: impl FnMut(usize, &Op, &dyn Fn(usize) -> i64) -> Result<Option<i64>, ExecError>,
) -> Result<Vec<i64>, ExecError> {
    let mut ch = vec![0i64; plan.ops.len()];
    for (i, op) in plan.ops.iter().enumerate() {
        let operand_c = |k: usize| op.operands.get(k).map(|&o| ch[o]).unwrap_or(0);
        if let Some(c) = build(i, op, &operand_c)? {
            ch[i] = c;
            continue;
        }
        ch[i] = match &op.kind {
            OpKind::Combine(_) => {
                let c0 = operand_c(0);
                if let Some(k) = (1..op.operands.len()).find(|&k| operand_c(k) != c0) {
                    return Err(ExecError::config(format!(
                        "`{}` adds maps of {c0} and {} channels: use blocks whose output \
                         width matches the state (e.g. basic blocks for sums, dense blocks \
                         for concatenations)",
                        op.names
                            .first()
                            .map(String::as_str)
                            .unwrap_or("a combination"),
                        operand_c(k)
                    )));
                }
                c0
            }
            OpKind::Concat => (0..op.operands.len()).map(operand_c).sum(),
            _ => operand_c(0),
        };
    }
    Ok(ch)
}

/// The learnable coefficients of a topology, as scalar variables under `p / "coef"`, with
/// their full variable names.
fn coefficients(p: &nn::Path, topo: &Topology) -> (Vec<Tensor>, Vec<String>) {
    let cp = p / "coef";
    topo.learnables
        .iter()
        .map(|l| {
            let name = sanitize(&l.name);
            (cp.var(&name, &[], nn::Init::Const(l.init)), cp.path(&name))
        })
        .unzip()
}

/// The post-addition ReLU flags of a plan (see the module docs).
fn post_flags(plan: &Plan, arch: &Arch) -> Vec<bool> {
    let state = output_state(plan);
    plan.ops
        .iter()
        .map(|op| {
            arch.post_activation
                && !matches!(op.kind, OpKind::Input | OpKind::Output | OpKind::Map(_))
                && state.as_ref().is_some_and(|s| {
                    op.names
                        .iter()
                        .any(|n| n.split('[').next() == Some(s.as_str()))
                })
        })
        .collect()
}

/// The stage of each operation of a projected plan, shifted by one (0 is the stem): the input
/// is the stem's, the output the last stage's, an operation of step `k` the stage that step
/// falls in, a map (see [`OpKind::Map`]) its target stage, and an operation computed outside
/// any step (a concatenation of the history, a value of `init`) the latest stage among its
/// operands (at least the first), so that it never reads a value of a later stage unmapped.
fn stages_of(plan: &Plan, starts: &[usize], last: usize) -> Vec<usize> {
    let mut st: Vec<usize> = Vec::with_capacity(plan.ops.len());
    for op in &plan.ops {
        let s = match (&op.kind, op.step) {
            (OpKind::Input, _) => 0,
            (OpKind::Output, _) => last + 1,
            (OpKind::Map(key), _) => key % (last + 2),
            (_, Some(k)) => starts.iter().rposition(|&s0| s0 <= k).unwrap_or(0) + 1,
            (_, None) => op
                .operands
                .iter()
                .filter_map(|&o| st.get(o).copied())
                .max()
                .unwrap_or(1)
                .max(1),
        };
        st.push(s);
    }
    st
}

/// The transition of `arch.shortcut` into a stage of `stage`, for a value of `c` channels, or
/// `None` where the shapes already agree; with its output channels.
fn transition(
    p: &nn::Path,
    arch: &Arch,
    stage: &Stage,
    c: i64,
) -> Result<(Option<Transition>, i64), ExecError> {
    let out = arch.block.out_channels(stage.width);
    Ok(match arch.shortcut {
        Shortcut::Dense { compression } => {
            let c_out = (((c as f64) * compression).floor() as i64).max(1);
            let bn = nn::batch_norm2d(p / "bn", c, Default::default());
            let conv = Conv::new(
                &(p / "conv"),
                c,
                c_out,
                1,
                1,
                nn::ConvConfig::default().ws_init,
            );
            let t = Transition::Dense {
                bn,
                conv,
                stride: stage.stride,
                path: module_path(p),
            };
            (Some(t), c_out)
        }
        _ if stage.stride == 1 && c == out => (None, c),
        Shortcut::ZeroPad => {
            if out < c {
                return Err(ExecError::config(format!(
                    "a zero-padding shortcut cannot reduce {c} channels to {out}"
                )));
            }
            let lo = (out - c) / 2;
            let t = Transition::ZeroPad {
                stride: stage.stride,
                lo,
                hi: out - c - lo,
                path: module_path(p),
            };
            (Some(t), out)
        }
        Shortcut::Projection => {
            let init = nn::ConvConfig::default().ws_init;
            let conv = Conv::new(&(p / "conv"), c, out, 1, stage.stride, init);
            let bn = nn::batch_norm2d(p / "bn", out, Default::default());
            let path = module_path(p);
            (Some(Transition::Projection { conv, bn, path }), out)
        }
    })
}

impl Network {
    /// [`History::Project`]: the spec unrolled once over all stages, with the values read
    /// across stage changes mapped through the transitions of the stages they cross.
    fn projected(
        p: &nn::Path,
        spec: &Spec,
        overrides: &Overrides,
        arch: &Arch,
        c_stem: i64,
    ) -> Result<StageNet, ExecError> {
        if arch.stages.iter().any(|s| s.steps == 0) {
            return Err(ExecError::config("every stage needs at least one step"));
        }
        let mut starts = Vec::with_capacity(arch.stages.len());
        let mut total = 0;
        for s in &arch.stages {
            starts.push(total);
            total += s.steps;
        }
        let topo = crate::topology::unroll(spec, total, overrides)?;
        let base = Plan::compile(&topo)?;
        let last = arch.stages.len() - 1;
        // Stage numbers shifted by one: 0 is the stem, so the first stage's transition (when
        // the stem's shape differs) is handled like any other.
        let st = stages_of(&base, &starts, last);
        let residual = !matches!(arch.shortcut, Shortcut::Dense { .. });
        let reads_raw = |i: usize, o: usize| {
            residual && matches!(base.ops[i].kind, OpKind::Block { .. }) && st[o] + 1 == st[i]
        };
        let plan = base.insert_maps(|i, _k, o| {
            (st[o] < st[i] && !reads_raw(i, o)).then_some(st[o] * (last + 2) + st[i])
        });
        let new_st = stages_of(&plan, &starts, last);
        let n = plan.ops.len();
        let mut raw = vec![false; n];
        let mut maps: Vec<Vec<Transition>> = (0..n).map(|_| Vec::new()).collect();
        let mut blocks = Vec::with_capacity(plan.blocks);
        let mut proj_names = std::collections::HashSet::new();
        let ch = infer_channels(&plan, |i, op, operand_c| {
            let s = new_st[i];
            Ok(match &op.kind {
                OpKind::Input => Some(c_stem),
                OpKind::Map(key) => {
                    let from = key / (last + 2);
                    let label = op
                        .operands
                        .first()
                        .and_then(|&o| plan.ops[o].names.first())
                        .map(|n| sanitize(n))
                        .unwrap_or_else(|| format!("v{i}"));
                    let mut c = operand_c(0);
                    for t in from + 1..=s {
                        // A value mapped into several stages has a chain per target stage:
                        // the second one through a stage is named after its target (tch would
                        // otherwise rename its variables `…__N`, out of reach of the export).
                        let mut name = format!("proj_{label}");
                        if !proj_names.insert(format!("s{}.{name}", t - 1)) {
                            name = format!("proj_{label}_to_s{}", s - 1);
                            proj_names.insert(format!("s{}.{name}", t - 1));
                        }
                        let tp = p / format!("s{}", t - 1) / name;
                        let (tr, c_out) = transition(&tp, arch, &arch.stages[t - 1], c)?;
                        maps[i].extend(tr);
                        c = c_out;
                    }
                    Some(c)
                }
                OpKind::Block { step, slot, .. } => {
                    let stage = &arch.stages[s - 1];
                    let o = op.operands.first().copied().unwrap_or(0);
                    raw[i] = residual && new_st[o] + 1 == s;
                    let stride = if raw[i] { stage.stride } else { 1 };
                    let local = step.saturating_sub(starts[s - 1]);
                    let bp = p / format!("s{}", s - 1) / block_name(local, *slot);
                    let b = Block::new(&bp, arch.block, operand_c(0), stage.width, stride)?;
                    let out = b.out_channels;
                    blocks.push(b);
                    Some(out)
                }
                _ => None,
            })
        })?;
        let (params, learnable_names) = coefficients(p, &topo);
        Ok(StageNet {
            topology: topo,
            out_channels: ch[plan.output],
            post: post_flags(&plan, arch),
            plan,
            blocks,
            transition: None,
            raw,
            params,
            maps,
            learnable_names,
            macs: AtomicI64::new(0),
            counting: AtomicBool::new(false),
            compute: Compute::FP32,
        })
    }
}
