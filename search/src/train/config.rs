//! [`TrainConfig`]: everything that defines how a network is trained, in one nested type.
//!
//! The same type is the command line of `optarch train` (clap's `Args`, flattened), the `train:`
//! section of a search configuration and a run's `config.json` (serde), so its defaults live in
//! one place: the `Default` impl of each part, which clap's `default_value_t` and serde's
//! `default` both read. Choices are typed ([`Preset`], [`DatasetKind`], [`Precision`],
//! [`Schedule`], [`DeviceChoice`]) and read and write their text form (`cifar-resnet`,
//! `cifar10`, `fp16`, `onecycle:0.15`, `cuda:1`).

use crate::checks::Checks;
use crate::data::{self, Dataset, DatasetKind, LoadOptions, ValSize};
use clap::{ArgAction, Args, ValueEnum};
use optarch_core::device::DeviceChoice;
use optarch_core::exec::{Arch, BlockKind, ExecError};
use optarch_core::spec::Overrides;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Why a configuration cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The architecture does not build (a depth the preset does not have, ...).
    #[error(transparent)]
    Arch(#[from] ExecError),
    /// The data cannot be loaded or split as asked.
    #[error(transparent)]
    Data(#[from] data::DataError),
    /// A value out of its range, or values that do not fit together.
    #[error("{0}")]
    Invalid(String),
}

/// The most epochs a run may have (and a search's `budget.max_epochs`).
pub const MAX_EPOCHS: usize = 100_000;

/// The most blocks (steps of the spec) in one stage.
pub const MAX_STAGE_STEPS: usize = 1_000;

impl TrainConfig {
    /// Checks every value's range, and the values that must fit together, before anything is
    /// loaded or trained: each problem named by its key (in a file) or flag (on the command
    /// line). `search` marks a search configuration's `train:` section, whose epochs the
    /// budget replaces.
    pub fn check(&self, c: &mut Checks, search: bool) {
        let o = &self.optim;
        c.require(
            o.batch_size >= 1,
            &["optim", "batch_size"],
            format!("{} must be at least 1", c.name(&["optim", "batch_size"])),
            "128 is the usual CIFAR batch",
        );
        c.number(
            o.lr,
            &["optim", "lr"],
            o.lr > 0.0,
            "positive",
            "the peak learning rate, e.g. 0.1 for SGD on CIFAR",
        );
        c.number(
            o.momentum,
            &["optim", "momentum"],
            (0.0..1.0).contains(&o.momentum),
            "in [0, 1)",
            "0.9 is usual; 0 is plain SGD",
        );
        c.number(
            o.weight_decay,
            &["optim", "weight_decay"],
            o.weight_decay >= 0.0,
            "at least 0",
            "5e-4 is usual on CIFAR; 0 turns it off",
        );
        c.number(
            o.label_smoothing,
            &["optim", "label_smoothing"],
            (0.0..1.0).contains(&o.label_smoothing),
            "in [0, 1)",
            "0.1 is usual; 0 turns it off",
        );
        if let Some(g) = o.grad_clip {
            c.number(
                g,
                &["optim", "grad_clip"],
                g > 0.0,
                "positive",
                "the largest global gradient norm, e.g. 5; leave it out not to clip",
            );
        }
        if !search {
            c.require(
                (1..=MAX_EPOCHS).contains(&self.schedule.epochs),
                &["schedule", "epochs"],
                format!(
                    "{} is {}; it must be from 1 to {MAX_EPOCHS}",
                    c.name(&["schedule", "epochs"]),
                    self.schedule.epochs
                ),
                "a few epochs for a smoke test, 30 or more to compare structures",
            );
        }
        self.arch.check(c);
        self.data.check(c);
        if let Some(t) = self.run.threads {
            c.require(
                t >= 1,
                &["run", "threads"],
                format!("{} must be at least 1", c.name(&["run", "threads"])),
                "leave it out for libtorch's choice",
            );
        }
        if self.precision.precision == Precision::Fp16 {
            let cuda = self.run.device.resolve().is_ok_and(|d| d.is_cuda());
            c.require(
                cuda,
                &["precision", "precision"],
                format!(
                    "{} fp16 needs a CUDA device, and the device is {}",
                    c.name(&["precision", "precision"]),
                    self.run.device
                ),
                "use fp32 on the CPU, or --device cuda where libtorch sees a GPU",
            );
        }
    }
}

/// Everything that defines how a network is trained (the spec aside: see [`RunSpec`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Args, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    #[command(flatten)]
    pub arch: ArchConfig,
    #[command(flatten)]
    pub data: DataConfig,
    #[command(flatten)]
    pub optim: OptimConfig,
    #[command(flatten)]
    pub schedule: ScheduleConfig,
    #[command(flatten)]
    pub precision: PrecisionConfig,
    #[command(flatten)]
    pub run: RunConfig,
}

/// A macro-architecture preset (see `docs/EXECUTOR.md`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// He et al.'s CIFAR ResNet, depth 6n+2.
    #[default]
    CifarResnet,
    /// DenseNet-BC on CIFAR, depth 6n+4 (growth 12, compression 0.5).
    CifarDensenet,
    /// torchvision's ImageNet ResNets, depth 18, 34, 50, 101 or 152.
    Imagenet,
}

impl Preset {
    /// The preset's architecture at `depth` for `classes` classes.
    pub fn arch(self, depth: usize, classes: i64) -> Result<Arch, ExecError> {
        match self {
            Preset::CifarResnet => Arch::cifar_resnet(depth, classes),
            Preset::CifarDensenet => Arch::cifar_densenet(depth, 12, 0.5, classes),
            Preset::Imagenet => Arch::imagenet(depth, classes),
        }
    }
}

impl std::fmt::Display for Preset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Preset::CifarResnet => "cifar-resnet",
            Preset::CifarDensenet => "cifar-densenet",
            Preset::Imagenet => "imagenet",
        })
    }
}

/// The learned block `B` of every step (see `docs/EXECUTOR.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ValueEnum, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BlockChoice {
    /// conv-BN-ReLU-conv-BN (He et al.), post-activation.
    Basic,
    /// 1×1-3×3-1×1 with expansion 4, post-activation.
    Bottleneck,
    /// BN-ReLU-conv-BN-ReLU-conv (He et al., 2016b), pre-activation.
    Preact,
    /// DenseNet-BC's layer (growth 12, bottleneck 4): for concatenating specs.
    Dense,
}

impl BlockChoice {
    /// The block, with the executor's default widths ([`BlockKind::parse`]).
    pub fn kind(self) -> Result<BlockKind, ExecError> {
        BlockKind::parse(match self {
            BlockChoice::Basic => "basic",
            BlockChoice::Bottleneck => "bottleneck",
            BlockChoice::Preact => "preact",
            BlockChoice::Dense => "dense",
        })
    }
}

/// The macro-architecture every step of the spec is unrolled in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Args, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ArchConfig {
    /// Macro-architecture preset.
    #[arg(long, value_enum, default_value_t = ArchConfig::default().preset)]
    pub preset: Preset,
    /// Depth of the preset.
    #[arg(long, default_value_t = ArchConfig::default().depth)]
    pub depth: usize,
    /// Stage widths, e.g. 32,64,128 (one per stage); for dense blocks the growth rate, the same
    /// for every stage (e.g. 15,15,15).
    #[arg(long, value_delimiter = ',', value_name = "W,W,W")]
    pub widths: Option<Vec<i64>>,
    /// Steps (blocks) per stage, e.g. 3,3,3.
    #[arg(long, value_delimiter = ',', value_name = "N,N,N")]
    pub stage_steps: Option<Vec<usize>>,
    /// The block of every step, replacing the preset's (pre-activation blocks drop the ReLU
    /// after the additions and add a BN-ReLU before the head).
    #[arg(long, value_enum)]
    pub block: Option<BlockChoice>,
    /// A whole architecture from a YAML file, replacing --preset and --depth (see
    /// docs/EXECUTOR.md).
    #[arg(long = "arch", value_name = "FILE", value_parser = read_arch)]
    pub custom: Option<Arch>,
}

impl Default for ArchConfig {
    fn default() -> Self {
        ArchConfig {
            preset: Preset::CifarResnet,
            depth: 20,
            widths: None,
            stage_steps: None,
            block: None,
            custom: None,
        }
    }
}

/// `--arch FILE`: the architecture a YAML file describes.
fn read_arch(path: &str) -> Result<Arch, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the architecture config {path}: {e}"))?;
    Arch::from_yaml(&text).map_err(|e| format!("{path}: {e}"))
}

impl ArchConfig {
    /// Checks the preset's depth and the stage widths and step counts against its stages.
    pub(crate) fn check(&self, c: &mut Checks) {
        let base = match &self.custom {
            Some(a) => Ok(a.clone()),
            None => self.preset.arch(self.depth, 10),
        };
        let dense = match self.block {
            Some(b) => b == BlockChoice::Dense,
            None => base
                .as_ref()
                .is_ok_and(|a| matches!(a.block, BlockKind::Dense { .. })),
        };
        let stages = match base {
            Ok(a) if a.stages.iter().any(|s| s.steps > MAX_STAGE_STEPS) => {
                c.require(
                    false,
                    &["arch", "depth"],
                    format!(
                        "{} {} gives more than {MAX_STAGE_STEPS} blocks in a stage",
                        c.name(&["arch", "depth"]),
                        self.depth
                    ),
                    "CIFAR ResNets go to depth 1202 (200 blocks a stage)",
                );
                return;
            }
            Ok(a) => a.stages.len(),
            Err(e) => {
                c.require(
                    false,
                    &["arch", "depth"],
                    format!("{} {} does not fit {}: {e}", c.name(&["arch", "depth"]), self.depth, self.preset),
                    "cifar-resnet takes 6n+2 (20, 32, 44, 56, 110), cifar-densenet 6n+4 (40, 100), \
                     imagenet 18, 34, 50, 101 or 152",
                );
                return;
            }
        };
        if let Some(w) = &self.widths {
            c.require(
                !dense || w.iter().all(|x| *x == w[0]),
                &["arch", "widths"],
                format!(
                    "{} is {w:?}; a dense architecture's widths are its growth rate, one for \
                     every stage",
                    c.name(&["arch", "widths"])
                ),
                "e.g. 12,12,12 (DenseNet-BC's k = 12)",
            );
            c.require(
                w.len() == stages && w.iter().all(|x| (1..=65_536).contains(x)),
                &["arch", "widths"],
                format!(
                    "{} is {w:?}; {} needs {stages} widths (one per stage), each from 1 to 65536",
                    c.name(&["arch", "widths"]),
                    self.preset
                ),
                "e.g. 16,32,64 for a CIFAR ResNet",
            );
        }
        if let Some(k) = &self.stage_steps {
            c.require(
                k.len() == stages && k.iter().all(|x| (1..=MAX_STAGE_STEPS).contains(x)),
                &["arch", "stage_steps"],
                format!(
                    "{} is {k:?}; {} needs {stages} step counts (one per stage), each from 1 to \
                     {MAX_STAGE_STEPS}",
                    c.name(&["arch", "stage_steps"]),
                    self.preset
                ),
                "e.g. 3,3,3 (ResNet-20's)",
            );
        }
    }

    /// The architecture this names: the custom one, else the preset at `depth`, with stage
    /// widths and step counts overridden, for `classes` classes and `in_channels` channels.
    pub fn build(&self, classes: i64, in_channels: i64) -> Result<Arch, SetupError> {
        let mut arch = match &self.custom {
            Some(a) => a.clone(),
            None => self.preset.arch(self.depth, classes)?,
        };
        arch.classes = classes;
        arch.in_channels = in_channels;
        if let Some(b) = self.block {
            arch.block = b.kind()?;
            arch.post_activation = !arch.block.pre_activation();
        }
        let n = arch.stages.len();
        if let Some(w) = &self.widths {
            if w.len() != n || w.iter().any(|x| *x < 1) {
                return Err(SetupError::Invalid(format!(
                    "--widths needs {n} positive widths (one per stage), got {w:?}"
                )));
            }
            // A stem as wide as the first stage (CIFAR ResNets) stays so.
            if arch
                .stages
                .first()
                .is_some_and(|s| s.width == arch.stem.width)
            {
                arch.stem.width = w[0];
            }
            for (st, w) in arch.stages.iter_mut().zip(w) {
                st.width = *w;
            }
            // A dense stage's width is its growth rate, one for the whole network (the
            // block's), with DenseNet's stem of twice that.
            if let BlockKind::Dense { growth, .. } = &mut arch.block {
                if w.iter().any(|x| *x != w[0]) {
                    return Err(SetupError::Invalid(format!(
                        "--widths of a dense architecture are its growth rate, one for every \
                         stage (e.g. 12,12,12); got {w:?}"
                    )));
                }
                *growth = w[0];
                arch.stem.width = 2 * w[0];
            }
        }
        if let Some(k) = &self.stage_steps {
            if k.len() != n || k.contains(&0) {
                return Err(SetupError::Invalid(format!(
                    "--stage-steps needs {n} positive step counts (one per stage), got {k:?}"
                )));
            }
            for (st, k) in arch.stages.iter_mut().zip(k) {
                st.steps = *k;
            }
        }
        Ok(arch)
    }

    /// Blocks in the first stage: the step count a spec is unrolled to for its topology hash,
    /// its theory and its picture (the architecture's own, `stage_steps` first).
    pub(crate) fn first_stage_steps(&self) -> Result<usize, SetupError> {
        Ok(self
            .build(10, 3)?
            .stages
            .first()
            .map_or(1, |s| s.steps)
            .max(1))
    }
}

/// The data set, its split and its augmentation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Args, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// The data set.
    #[arg(long, value_enum, default_value_t = DataConfig::default().dataset)]
    pub dataset: DatasetKind,
    /// Where the data is (archive, folder or data root); default $OPTARCH_DATA, else a
    /// download into ~/.cache/optarch/data.
    #[arg(long = "data", value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Download the official archive when the data is not found (`--no-download`: never).
    #[arg(long = "no-download", action = ArgAction::SetFalse)]
    pub download: bool,
    /// Train on a seeded subset of this many training images.
    #[arg(long, value_name = "N")]
    pub train_subset: Option<usize>,
    /// Hold out this many training images for validation.
    #[arg(long, default_value_t = DataConfig::default().val)]
    pub val: usize,
    /// Test on the first N test images only.
    #[arg(long, value_name = "N")]
    pub test_subset: Option<usize>,
    /// Random crops and flips on 32×32 images (`--no-augment`: none).
    #[arg(long = "no-augment", action = ArgAction::SetFalse)]
    pub augment: bool,
    /// Evaluate the test set after every epoch (`--no-test`: never; a search evaluates it only
    /// for its final trials, whose test accuracy it reports and never uses to decide).
    #[arg(long = "no-test", action = ArgAction::SetFalse)]
    pub test: bool,
    /// Evaluate the test set after every epoch (`--test-at-end`: after the last epoch only, as
    /// a search's final trials do, whose reported test accuracy is the last epoch's).
    #[arg(long = "test-at-end", action = ArgAction::SetFalse)]
    pub test_every_epoch: bool,
}

impl DataConfig {
    fn options(&self) -> LoadOptions {
        LoadOptions {
            path: self.path.clone(),
            download: self.download,
            mirror: None,
        }
    }

    /// Where the data is: `path`, else found through `$OPTARCH_DATA`, else downloaded (unless
    /// `download` is off).
    pub fn locate(&self) -> Result<PathBuf, SetupError> {
        Ok(data::locate(self.dataset, &self.options())?)
    }

    /// What a run records of the parts [`DataConfig::load`] gave (`data.json`).
    pub fn record(
        &self,
        train: &Dataset,
        val: Option<&Dataset>,
        test: &Dataset,
    ) -> Result<super::DataRecord, SetupError> {
        let norm = train.channel_stats();
        Ok(super::DataRecord {
            dataset: self.dataset.to_string(),
            path: match &self.path {
                Some(p) => p.clone(),
                None => self.locate()?,
            },
            shape: train.shape,
            classes: train.classes,
            train: train.len(),
            val: val.map_or(0, |v| v.len()),
            test: test.len(),
            mean: norm.mean,
            std: norm.std,
        })
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: DatasetKind::Cifar10,
            path: None,
            download: true,
            train_subset: None,
            val: 5000,
            test_subset: None,
            augment: true,
            test: true,
            test_every_epoch: true,
        }
    }
}

impl DataConfig {
    /// Checks the subsets and the validation split against the data set's sizes.
    fn check(&self, c: &mut Checks) {
        let k = self.dataset;
        let available = k.train_images();
        if let Some(n) = self.train_subset {
            c.require(
                (1..=available).contains(&n),
                &["data", "train_subset"],
                format!(
                    "{} is {n}; {} has {available} training images",
                    c.name(&["data", "train_subset"]),
                    k.name()
                ),
                "leave it out to train on them all",
            );
        }
        let train = self.train_subset.unwrap_or(available).min(available);
        c.require(
            self.val < train,
            &["data", "val"],
            format!(
                "{} is {}, but only {train} training images are there to split",
                c.name(&["data", "val"]),
                self.val
            ),
            "keep most images for training, e.g. 5000 of 50000",
        );
        if let Some(n) = self.test_subset {
            c.require(
                (1..=k.test_images()).contains(&n),
                &["data", "test_subset"],
                format!(
                    "{} is {n}; {} has {} test images",
                    c.name(&["data", "test_subset"]),
                    k.name(),
                    k.test_images()
                ),
                "leave it out to test on them all",
            );
        }
    }

    /// Loads the data: (train, validation, test). The training subset and the validation split
    /// are drawn with `seed`.
    pub fn load(&self, seed: u64) -> Result<(Dataset, Option<Dataset>, Dataset), SetupError> {
        let sets = data::load(self.dataset, &self.options())?;
        let mut train = sets.train;
        if let Some(n) = self.train_subset {
            // A seeded subset: the validation part of a split of everything but n images.
            let rest = train.len().saturating_sub(n);
            if rest > 0 {
                train = train.split(ValSize::Count(n), seed ^ 0x5eed)?.val;
            }
        }
        let (train, val) = if self.val > 0 {
            let s = train.split(ValSize::Count(self.val), seed)?;
            (s.train, Some(s.val))
        } else {
            (train, None)
        };
        let test = match self.test_subset {
            Some(n) => sets.test.take(n),
            None => sets.test,
        };
        Ok((train, val, test))
    }
}

/// SGD and the loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Args, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct OptimConfig {
    #[arg(long, default_value_t = OptimConfig::default().batch_size)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, allow_negative_numbers = true, default_value_t = OptimConfig::default().lr)]
    pub lr: f64,
    #[arg(long, allow_negative_numbers = true, default_value_t = OptimConfig::default().momentum)]
    pub momentum: f64,
    /// Nesterov momentum (`--no-nesterov`: plain momentum).
    #[arg(long = "no-nesterov", action = ArgAction::SetFalse)]
    pub nesterov: bool,
    #[arg(long, allow_negative_numbers = true, default_value_t = OptimConfig::default().weight_decay)]
    pub weight_decay: f64,
    /// Also decay BatchNorm parameters, biases and coefficients.
    #[arg(long)]
    pub decay_bn_bias: bool,
    #[arg(long, allow_negative_numbers = true, default_value_t = OptimConfig::default().label_smoothing)]
    pub label_smoothing: f64,
    /// Clip the global gradient norm to this value.
    #[arg(long, allow_negative_numbers = true)]
    pub grad_clip: Option<f64>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            decay_bn_bias: false,
            label_smoothing: 0.0,
            grad_clip: None,
        }
    }
}

/// How long to train and how the learning rate moves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Args, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleConfig {
    /// Epochs (in a search: replaced by the budget's `max_epochs`).
    #[arg(long, default_value_t = ScheduleConfig::default().epochs)]
    pub epochs: usize,
    /// cosine, onecycle[:warmup], multistep[:m1,m2] (milestones as fractions of the run).
    #[arg(long = "schedule", value_name = "SCHEDULE", default_value_t = ScheduleConfig::default().kind)]
    pub kind: Schedule,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            epochs: 5,
            kind: Schedule::OneCycle { warmup: 0.15 },
        }
    }
}

/// Arithmetic precision of the forward and backward passes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// The fastest on the device: bf16 on a CPU with AMX or AVX-512-BF16, and on a CUDA
    /// device that computes in bf16 for steps of at least 2^18 pixels (batch × height ×
    /// width; smaller steps are faster in fp32 there), fp32 elsewhere (a run records what it
    /// chose).
    #[default]
    Auto,
    /// Single precision throughout (exact, reproducible).
    Fp32,
    /// Mixed precision: convolutions and activations in bfloat16; batch-norm parameters, the
    /// classifier, the loss, the optimiser and the master weights in fp32.
    Bf16,
    /// Mixed precision with fp16 autocast and dynamic loss scaling (CUDA only).
    Fp16,
}

/// On, off, or chosen for the device.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Switch {
    #[default]
    Auto,
    On,
    Off,
}

/// Precision and memory layout (see `optarch_core::exec::compute`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Args, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PrecisionConfig {
    /// auto (bf16 where it is faster: a CPU with bfloat16 instructions, a CUDA GPU for steps
    /// of 2^18 pixels or more; else fp32), fp32 (exact), bf16 (mixed), or fp16 (mixed with loss
    /// scaling, CUDA only).
    #[arg(long, value_enum, alias = "amp", default_value_t = Precision::default())]
    pub precision: Precision,
    /// Feature maps and weights with NHWC strides: auto (on with bf16 or fp16), on or off;
    /// `--channels-last` alone is on.
    #[arg(
        long = "channels-last",
        value_enum,
        num_args = 0..=1,
        default_value_t = Switch::Auto,
        default_missing_value = "on"
    )]
    pub channels_last: Switch,
}

impl PrecisionConfig {
    /// Replaces `auto` by the faster setting on `device` for a training step of `step_pixels`
    /// (batch × height × width; [`optarch_core::device::prefers_bf16`]), so that a run records
    /// (and a resume repeats) a definite choice.
    pub fn resolve(&mut self, device: tch::Device, step_pixels: i64) {
        if self.precision == Precision::Auto {
            self.precision = match optarch_core::device::prefers_bf16(device, step_pixels) {
                true => Precision::Bf16,
                false => Precision::Fp32,
            };
        }
        if self.channels_last == Switch::Auto {
            self.channels_last = match self.precision {
                Precision::Bf16 | Precision::Fp16 => Switch::On,
                Precision::Fp32 | Precision::Auto => Switch::Off,
            };
        }
    }

    /// The executor's setting (after [`PrecisionConfig::resolve`]; fp16 is autocast's).
    pub fn compute(&self) -> optarch_core::exec::Compute {
        optarch_core::exec::Compute {
            bf16: self.precision == Precision::Bf16,
            channels_last: self.channels_last == Switch::On,
        }
    }
}

/// Where and how reproducibly a run goes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, Args, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// The seed of the initialisation, the data order, the split and the augmentation (in a
    /// search: of the strategy and the search trials; finalists use seed + 1, seed + 2, ...).
    #[arg(long, default_value_t = RunConfig::default().seed)]
    pub seed: u64,
    /// The device (`optarch --device`; in a search: where trials go).
    #[arg(skip)]
    pub device: DeviceChoice,
    /// Intra-op threads of libtorch (`optarch --threads`; in a search: per trial process,
    /// default the cores shared out among the slots).
    #[arg(skip)]
    pub threads: Option<usize>,
}

/// Learning-rate schedule over the whole run (per iteration). Reads and writes as text:
/// `cosine`, `onecycle:0.15`, `multistep:0.5,0.75`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub enum Schedule {
    /// Multiply by `gamma` at each milestone (fractions of the run, e.g. 0.5 and 0.75).
    Multistep { milestones: Vec<f64>, gamma: f64 },
    /// Cosine decay to zero.
    Cosine,
    /// Linear warm-up over `warmup` (fraction of the run) to the peak, then linear decay to 0.
    OneCycle { warmup: f64 },
}

impl Schedule {
    /// The learning-rate factor at `progress` ∈ [0, 1].
    pub fn factor(&self, progress: f64) -> f64 {
        let p = progress.clamp(0.0, 1.0);
        match self {
            Schedule::Multistep { milestones, gamma } => {
                gamma.powi(milestones.iter().filter(|m| p >= **m).count() as i32)
            }
            Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * p).cos()),
            Schedule::OneCycle { warmup } => {
                if *warmup > 0.0 && p < *warmup {
                    p / warmup
                } else {
                    ((1.0 - p) / (1.0 - warmup).max(1e-12)).clamp(0.0, 1.0)
                }
            }
        }
    }

    /// Parses `cosine`, `onecycle`, `onecycle:0.2`, `multistep`, `multistep:0.5,0.75`.
    pub fn parse(s: &str) -> Result<Schedule, String> {
        let (name, arg) = s.split_once(':').unwrap_or((s, ""));
        let nums = |a: &str| -> Result<Vec<f64>, String> {
            a.split(',')
                .filter(|x| !x.trim().is_empty())
                .map(|x| {
                    x.trim()
                        .parse::<f64>()
                        .map_err(|_| format!("`{x}` is not a number"))
                })
                .collect()
        };
        match name.trim() {
            "cosine" if arg.trim().is_empty() => Ok(Schedule::Cosine),
            "cosine" => Err(format!(
                "cosine takes no argument (`{s}`): it decays from the peak to 0 over the run"
            )),
            "onecycle" | "one-cycle" => {
                let w = nums(arg)?.first().copied().unwrap_or(0.15);
                if !(0.0..1.0).contains(&w) {
                    return Err("the warm-up fraction must lie in [0, 1)".into());
                }
                Ok(Schedule::OneCycle { warmup: w })
            }
            "multistep" => {
                let m = nums(arg)?;
                if m.iter().any(|x| !(*x > 0.0 && *x < 1.0)) || m.windows(2).any(|w| w[0] >= w[1])
                {
                    return Err(
                        "multistep milestones are fractions of the run, each in (0, 1), in \
                         increasing order (e.g. multistep:0.5,0.75)"
                            .into(),
                    );
                }
                Ok(Schedule::Multistep {
                    milestones: if m.is_empty() { vec![0.5, 0.75] } else { m },
                    gamma: 0.1,
                })
            }
            other => Err(format!(
                "unknown schedule `{other}`: expected cosine, onecycle[:warmup], multistep[:m1,m2,...]"
            )),
        }
    }
}

impl std::str::FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Schedule::parse(s)
    }
}

impl TryFrom<String> for Schedule {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Schedule::parse(&s)
    }
}

impl From<Schedule> for String {
    fn from(s: Schedule) -> String {
        s.to_string()
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Schedule::Cosine => f.write_str("cosine"),
            Schedule::OneCycle { warmup } => write!(f, "onecycle:{warmup}"),
            Schedule::Multistep { milestones, .. } => {
                let m: Vec<String> = milestones.iter().map(f64::to_string).collect();
                write!(f, "multistep:{}", m.join(","))
            }
        }
    }
}

/// The spec a run trains: its file, its text (so the run does not depend on the file staying
/// the same) and the parameter values that replace its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunSpec {
    /// The file it was read from (a name in messages).
    pub path: PathBuf,
    pub text: String,
    #[serde(default)]
    pub overrides: Overrides,
}

impl RunSpec {
    /// The spec, validated from its text.
    pub fn load(&self) -> Result<optarch_core::spec::Spec, optarch_core::error::SpecError> {
        optarch_core::spec::load_str(&self.path.display().to_string(), &self.text)
    }
}

/// A run's `config.json`: the spec and how it is trained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfigFile {
    pub spec: RunSpec,
    pub train: TrainConfig,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        train: TrainConfig,
    }

    /// clap's defaults and serde's defaults are the same values: the `Default` impls.
    #[test]
    fn one_set_of_defaults() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.train, TrainConfig::default());
        let yaml: TrainConfig = serde_yaml::from_str("{}").unwrap();
        assert_eq!(yaml, TrainConfig::default());
        let cli = Cli::try_parse_from([
            "x",
            "--no-augment",
            "--no-nesterov",
            "--decay-bn-bias",
            "--precision",
            "fp16",
            "--schedule",
            "multistep:0.3",
            "--dataset",
            "cifar100-coarse",
            "--preset",
            "cifar-densenet",
        ])
        .unwrap();
        let t = cli.train;
        assert!(!t.data.augment && !t.optim.nesterov && t.optim.decay_bn_bias);
        assert_eq!(t.precision.precision, Precision::Fp16);
        assert_eq!(t.schedule.kind.to_string(), "multistep:0.3");
        assert_eq!(t.data.dataset.to_string(), "cifar100-coarse");
        assert_eq!(t.arch.preset, Preset::CifarDensenet);
    }

    #[test]
    fn choices_round_trip_through_their_text() {
        let t = TrainConfig {
            schedule: ScheduleConfig {
                epochs: 3,
                kind: Schedule::Cosine,
            },
            ..TrainConfig::default()
        };
        let json = serde_json::to_string(&t).unwrap();
        assert!(json.contains("\"kind\":\"cosine\""), "{json}");
        assert!(json.contains("\"dataset\":\"cifar10\""), "{json}");
        assert!(json.contains("\"preset\":\"cifar-resnet\""), "{json}");
        assert!(json.contains("\"device\":\"auto\""), "{json}");
        assert_eq!(serde_json::from_str::<TrainConfig>(&json).unwrap(), t);
        let e = serde_yaml::from_str::<TrainConfig>("optim: {lr: 0.1, colour: red}")
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `colour`"), "{e}");
    }

    /// A dense architecture's widths are its growth rate: DenseNet-BC L = 40 at `widths:
    /// [15, 15, 15]` is the preset at k = 15 (272,980 parameters, pinned in core's
    /// tests/exec.rs), and unequal widths are refused.
    #[test]
    fn dense_widths_set_the_growth_rate() {
        let cfg = ArchConfig {
            preset: Preset::CifarDensenet,
            depth: 40,
            widths: Some(vec![15, 15, 15]),
            ..ArchConfig::default()
        };
        assert_eq!(
            cfg.build(10, 3).unwrap(),
            Arch::cifar_densenet(40, 15, 0.5, 10).unwrap()
        );
        let bad = ArchConfig {
            widths: Some(vec![12, 15, 12]),
            ..cfg
        };
        assert!(bad
            .build(10, 3)
            .unwrap_err()
            .to_string()
            .contains("growth rate"));
    }

    #[test]
    fn architecture_overrides_apply_and_are_checked() {
        let cfg = ArchConfig {
            widths: Some(vec![8, 16, 32]),
            stage_steps: Some(vec![1, 2, 1]),
            ..ArchConfig::default()
        };
        let a = cfg.build(100, 1).unwrap();
        assert_eq!(
            a.stages
                .iter()
                .map(|s| (s.width, s.steps))
                .collect::<Vec<_>>(),
            [(8, 1), (16, 2), (32, 1)]
        );
        assert_eq!((a.classes, a.in_channels, a.stem.width), (100, 1, 8));
        assert_eq!(cfg.first_stage_steps().unwrap(), 1);
        assert_eq!(ArchConfig::default().first_stage_steps().unwrap(), 3);
        let bad = ArchConfig {
            widths: Some(vec![8, 16]),
            ..ArchConfig::default()
        };
        assert!(bad.build(10, 3).is_err());
        let pre = ArchConfig {
            block: Some(BlockChoice::Preact),
            ..ArchConfig::default()
        };
        let a = pre.build(10, 3).unwrap();
        assert_eq!((a.block, a.post_activation), (BlockKind::Preact, false));
        let yaml = Arch::cifar_resnet(32, 10).unwrap();
        let cfg = ArchConfig {
            custom: Some(yaml.clone()),
            ..ArchConfig::default()
        };
        assert_eq!(cfg.build(10, 3).unwrap(), yaml);
    }

    #[test]
    fn schedules_have_the_right_shape() {
        let c = Schedule::Cosine;
        assert_eq!(c.factor(0.0), 1.0);
        assert!(c.factor(1.0).abs() < 1e-12);
        let o = Schedule::parse("onecycle:0.2").unwrap();
        assert!((o.factor(0.1) - 0.5).abs() < 1e-12);
        assert_eq!(o.factor(0.2), 1.0);
        assert!((o.factor(0.6) - 0.5).abs() < 1e-12);
        let m = Schedule::parse("multistep:0.5,0.75").unwrap();
        assert_eq!(m.factor(0.4), 1.0);
        assert!((m.factor(0.6) - 0.1).abs() < 1e-12);
        assert!((m.factor(0.8) - 0.01).abs() < 1e-12);
        assert!(Schedule::parse("linear").is_err());
        assert!(Schedule::parse("onecycle:1.5").is_err());
        assert!(Schedule::parse("cosine:0.5").is_err());
        for bad in [
            "multistep:0.5,0.2",
            "multistep:0.3,0.3",
            "multistep:1.5",
            "multistep:nan",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
        for s in ["cosine", "onecycle:0.15", "multistep:0.5,0.75"] {
            assert_eq!(Schedule::parse(s).unwrap().to_string(), s);
        }
    }
}
