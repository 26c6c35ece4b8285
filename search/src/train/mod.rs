//! The trainer: SGD with Nesterov momentum, learning-rate schedules, label smoothing, gradient
//! clipping, evaluation on validation and test every epoch, and a run directory that lets an
//! interrupted run continue exactly.
//!
//! A run directory holds `config.json`, `metrics.jsonl` (one line per epoch), `state.json`
//! (progress and status), `last.safetensors` / `last.optim.safetensors` (weights and momentum
//! buffers after the last finished epoch), `best.safetensors` (best validation accuracy),
//! `topology.svg` and, at the end, `summary.json`.

mod sgd;

pub use sgd::Sgd;

use crate::data::{
    self, Augment, Dataset, DatasetKind, LoadOptions, Loader, Normalization, ValSize,
};
use optarch_core::exec::{parameter_count, Arch, Network};
use optarch_core::spec::{self, Overrides, Spec};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn, Device, Kind, Reduction, Tensor};

/// Why training failed (as opposed to diverged, which is a result).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Spec(#[from] optarch_core::error::SpecError),
    #[error("{0}")]
    Exec(#[from] optarch_core::exec::ExecError),
    #[error("{0}")]
    Data(#[from] data::DataError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(String),
}

type R<T> = Result<T, TrainError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Learning-rate schedule over the whole run (per iteration).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
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
        match name {
            "cosine" => Ok(Schedule::Cosine),
            "onecycle" | "one-cycle" => {
                let w = nums(arg)?.first().copied().unwrap_or(0.15);
                if !(0.0..1.0).contains(&w) {
                    return Err("the warm-up fraction must lie in [0, 1)".into());
                }
                Ok(Schedule::OneCycle { warmup: w })
            }
            "multistep" => {
                let m = nums(arg)?;
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

/// Everything that defines a training run (saved as `config.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// The spec file it was read from.
    pub spec_path: PathBuf,
    /// The spec text itself, so the run does not depend on the file staying the same.
    pub spec_text: String,
    pub overrides: Overrides,
    pub preset: String,
    pub depth: usize,
    /// A whole architecture (from a YAML config) replacing `preset` and `depth`.
    #[serde(default)]
    pub arch: Option<Arch>,
    /// Stage widths replacing the preset's (one per stage).
    #[serde(default)]
    pub widths: Option<Vec<i64>>,
    /// Steps per stage replacing the preset's (one per stage).
    #[serde(default)]
    pub stage_steps: Option<Vec<usize>>,
    pub dataset: String,
    pub data_path: Option<PathBuf>,
    pub download: bool,
    /// Use only the first (seeded, shuffled) `train_subset` training images.
    pub train_subset: Option<usize>,
    /// Images of the training part held out for validation.
    pub val: usize,
    /// Use only the first `test_subset` test images.
    pub test_subset: Option<usize>,
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub no_decay_bn_bias: bool,
    pub schedule: Schedule,
    pub label_smoothing: f64,
    pub grad_clip: Option<f64>,
    pub augment: bool,
    /// `fp16` mixed precision with dynamic loss scaling (CUDA only), or none.
    pub amp: Option<String>,
    pub seed: u64,
    pub device: String,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            spec_path: PathBuf::from("specs/gradient_descent.yaml"),
            spec_text: String::new(),
            overrides: Overrides::new(),
            preset: "cifar-resnet".into(),
            depth: 20,
            arch: None,
            widths: None,
            stage_steps: None,
            dataset: "cifar10".into(),
            data_path: None,
            download: true,
            train_subset: None,
            val: 5000,
            test_subset: None,
            epochs: 5,
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            no_decay_bn_bias: true,
            schedule: Schedule::OneCycle { warmup: 0.15 },
            label_smoothing: 0.0,
            grad_clip: None,
            augment: true,
            amp: None,
            seed: 0,
            device: "auto".into(),
        }
    }
}

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    pub test_loss: f64,
    pub test_acc: f64,
    pub images_per_sec: f64,
    pub epoch_seconds: f64,
}

/// How a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Done,
    Diverged,
}

/// `state.json`: where a run is, so that `--resume` continues it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    pub status: Status,
    /// Epochs finished (and checkpointed).
    pub epochs_done: usize,
    pub best_acc: Option<f64>,
    pub best_epoch: Option<usize>,
    pub loss_scale: f64,
    pub wall_seconds: f64,
}

/// `summary.json`, printed at the end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub status: Status,
    pub spec: String,
    pub preset: String,
    pub depth: usize,
    pub parameters: i64,
    pub multiply_adds: i64,
    pub epochs: usize,
    pub best_acc: Option<f64>,
    pub best_epoch: Option<usize>,
    pub final_test_acc: Option<f64>,
    pub wall_seconds: f64,
    pub device: String,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "status            {:?}", self.status)?;
        writeln!(
            f,
            "network           {} on {} depth {}",
            self.spec, self.preset, self.depth
        )?;
        writeln!(f, "parameters        {}", self.parameters)?;
        writeln!(f, "multiply-adds     {} per image", self.multiply_adds)?;
        if let (Some(a), Some(e)) = (self.best_acc, self.best_epoch) {
            writeln!(f, "best accuracy     {:.2} % (epoch {})", 100.0 * a, e + 1)?;
        }
        if let Some(a) = self.final_test_acc {
            writeln!(f, "final test acc.   {:.2} %", 100.0 * a)?;
        }
        write!(
            f,
            "wall time         {:.1} s on {}",
            self.wall_seconds, self.device
        )
    }
}

/// Progress reports: a bar on a terminal, plain lines otherwise.
pub trait Progress {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize);
    fn batch(&mut self, loss: f64);
    /// Called after an epoch is checkpointed; returning `false` stops the run there (it stays
    /// resumable), as an interrupt would.
    fn epoch_end(&mut self, m: &EpochMetrics) -> bool;
}

/// Prints one line per epoch on standard error (results go to standard output).
pub struct Lines;

impl Progress for Lines {
    fn epoch_start(&mut self, _: usize, _: usize, _: usize) {}
    fn batch(&mut self, _: f64) {}
    fn epoch_end(&mut self, m: &EpochMetrics) -> bool {
        eprintln!("{}", epoch_line(m));
        true
    }
}

/// The plain-text line of an epoch.
pub fn epoch_line(m: &EpochMetrics) -> String {
    let val = match (m.val_loss, m.val_acc) {
        (Some(l), Some(a)) => format!(" val {l:.3}/{:.2}%", 100.0 * a),
        _ => String::new(),
    };
    format!(
        "epoch {:>3}  lr {:.4}  train {:.3}/{:.2}%{val}  test {:.3}/{:.2}%  {:.0} img/s  {:.1} s",
        m.epoch + 1,
        m.lr,
        m.train_loss,
        100.0 * m.train_acc,
        m.test_loss,
        100.0 * m.test_acc,
        m.images_per_sec,
        m.epoch_seconds
    )
}

/// The architecture a config names: its `arch`, else the preset at `depth`, with stage widths
/// and step counts overridden, for `classes` classes and `in_channels` input channels.
pub fn architecture(cfg: &TrainConfig, classes: i64, in_channels: i64) -> R<Arch> {
    let mut arch = match &cfg.arch {
        Some(a) => a.clone(),
        None => Arch::preset(&cfg.preset, cfg.depth, classes)?,
    };
    arch.classes = classes;
    arch.in_channels = in_channels;
    let n = arch.stages.len();
    if let Some(w) = &cfg.widths {
        if w.len() != n || w.iter().any(|x| *x < 1) {
            return Err(TrainError::Config(format!(
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
    }
    if let Some(k) = &cfg.stage_steps {
        if k.len() != n || k.contains(&0) {
            return Err(TrainError::Config(format!(
                "--stage-steps needs {n} positive step counts (one per stage), got {k:?}"
            )));
        }
        for (st, k) in arch.stages.iter_mut().zip(k) {
            st.steps = *k;
        }
    }
    Ok(arch)
}

/// Loads the data a config names: (train, validation, test).
pub fn load_data(cfg: &TrainConfig) -> R<(Dataset, Option<Dataset>, Dataset)> {
    let kind: DatasetKind = cfg.dataset.parse()?;
    let opts = LoadOptions {
        path: cfg.data_path.clone(),
        download: cfg.download,
        mirror: None,
    };
    let sets = data::load(kind, &opts)?;
    let mut train = sets.train;
    if let Some(n) = cfg.train_subset {
        // A seeded subset: the validation part of a split of everything but n images.
        let rest = train.len().saturating_sub(n);
        if rest > 0 {
            train = train.split(ValSize::Count(n), cfg.seed ^ 0x5eed)?.val;
        }
    }
    let (train, val) = if cfg.val > 0 {
        let s = train.split(ValSize::Count(cfg.val), cfg.seed)?;
        (s.train, Some(s.val))
    } else {
        (train, None)
    };
    let test = match cfg.test_subset {
        Some(n) => sets.test.take(n),
        None => sets.test,
    };
    Ok((train, val, test))
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> R<()> {
    let tmp = path.with_extension("json.tmp");
    let text =
        serde_json::to_string_pretty(value).map_err(|e| TrainError::Config(e.to_string()))?;
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> R<T> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))
}

/// Evaluates on a data set: (mean loss, accuracy).
fn evaluate(net: &Network, loader: &Loader) -> R<(f64, f64)> {
    let (mut loss, mut correct, mut n) = (0.0, 0.0, 0.0);
    tch::no_grad(|| -> R<()> {
        for b in loader.epoch(0) {
            let b = b?;
            let logits = net.try_forward_t(&b.images, false, None)?;
            let bs = b.labels.size()[0] as f64;
            loss += logits.cross_entropy_for_logits(&b.labels).double_value(&[]) * bs;
            correct += logits.accuracy_for_logits(&b.labels).double_value(&[]) * bs;
            n += bs;
        }
        Ok(())
    })?;
    Ok((loss / n.max(1.0), correct / n.max(1.0)))
}

/// A run's network, as [`build`] makes it.
pub struct Built {
    pub spec: Spec,
    pub vs: nn::VarStore,
    pub net: Network,
    pub arch: Arch,
}

/// The network a config describes for data shaped like `train` (its classes and channels),
/// initialised from the config's seed: the run's own network, or, with a checkpoint loaded into
/// `vs`, the trained one (export).
pub fn build(cfg: &TrainConfig, train: &Dataset, device: Device) -> R<Built> {
    let spec: Spec = spec::load_str(&cfg.spec_path.display().to_string(), &cfg.spec_text)?;
    let classes =
        i64::try_from(train.classes).map_err(|_| TrainError::Config("too many classes".into()))?;
    let arch = architecture(cfg, classes, train.shape[0] as i64)?;
    tch::manual_seed(cfg.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = Network::new(&vs.root(), &spec, &cfg.overrides, &arch)?;
    Ok(Built {
        spec,
        vs,
        net,
        arch,
    })
}

/// A prepared run: network, optimiser, loaders.
struct Run {
    cfg: TrainConfig,
    /// The spec, loaded once from the config's text.
    spec: Spec,
    dir: PathBuf,
    device: Device,
    vs: nn::VarStore,
    net: Network,
    arch: Arch,
    /// Image shape (C, H, W) as i64.
    shape: [i64; 3],
    opt: Sgd,
    train: Loader,
    val: Option<Loader>,
    test: Loader,
    state: RunState,
}

fn prepare(cfg: TrainConfig, dir: &Path) -> R<Run> {
    let device = optarch_core::device::parse_device(&cfg.device)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    if cfg.amp.as_deref().is_some_and(|a| a != "fp16") {
        return Err(TrainError::Config(format!(
            "--amp {} is not supported: use fp16 (bf16 is not built yet)",
            cfg.amp.as_deref().unwrap_or_default()
        )));
    }
    if cfg.amp.is_some() && !device.is_cuda() {
        return Err(TrainError::Config(
            "--amp needs a CUDA device (--device cuda)".into(),
        ));
    }
    if cfg.epochs == 0 || cfg.batch_size == 0 {
        return Err(TrainError::Config(
            "epochs and batch size must be at least 1".into(),
        ));
    }
    let (train, val, test) = load_data(&cfg)?;
    let norm: Normalization = train.channel_stats();
    let Built {
        spec,
        vs,
        net,
        arch,
    } = build(&cfg, &train, device)?;
    let opt = Sgd::new(
        &vs,
        cfg.momentum,
        cfg.nesterov,
        cfg.weight_decay,
        cfg.no_decay_bn_bias,
    );
    let mut train_loader = Loader::new(&train, cfg.batch_size, device)?
        .shuffled(cfg.seed)
        .normalized(norm.clone());
    if cfg.augment && train.shape[1] == 32 {
        train_loader = train_loader.augmented(Augment::default());
    }
    let eval_bs = cfg.batch_size.max(256);
    let val = match val {
        Some(v) => Some(Loader::new(&v, eval_bs, device)?.normalized(norm.clone())),
        None => None,
    };
    let test = Loader::new(&test, eval_bs, device)?.normalized(norm);
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let state = RunState {
        status: Status::Running,
        epochs_done: 0,
        best_acc: None,
        best_epoch: None,
        loss_scale: 65536.0,
        wall_seconds: 0.0,
    };
    let shape = train.shape.map(|d| d as i64);
    Ok(Run {
        cfg,
        spec,
        dir: dir.to_path_buf(),
        device,
        vs,
        net,
        arch,
        shape,
        opt,
        train: train_loader,
        val,
        test,
        state,
    })
}

/// Starts a new run in `dir` (which must not hold one already).
pub fn train(cfg: TrainConfig, dir: &Path, progress: &mut dyn Progress) -> R<Summary> {
    if dir.join("state.json").exists() {
        return Err(TrainError::Config(format!(
            "{} already holds a run: continue it with --resume {}, or pick another --out",
            dir.display(),
            dir.display()
        )));
    }
    let mut run = prepare(cfg, dir)?;
    write_json_atomic(&run.dir.join("config.json"), &run.cfg)?;
    let steps = run.arch.stages.first().map(|s| s.steps).unwrap_or(1).max(1);
    if let Ok(t) = optarch_core::topology::unroll(&run.spec, steps, &run.cfg.overrides) {
        let svg = optarch_core::render::to_svg(&t);
        let p = run.dir.join("topology.svg");
        std::fs::write(&p, svg).map_err(io(&p))?;
    }
    let _ = std::fs::remove_file(run.dir.join("metrics.jsonl"));
    write_json_atomic(&run.dir.join("state.json"), &run.state)?;
    run_epochs(&mut run, progress)
}

/// Continues the run in `dir` from its last finished epoch.
pub fn resume(dir: &Path, progress: &mut dyn Progress) -> R<Summary> {
    let cfg: TrainConfig = read_json(&dir.join("config.json"))?;
    let state: RunState = read_json(&dir.join("state.json"))?;
    let mut run = prepare(cfg, dir)?;
    if state.epochs_done > 0 {
        run.vs.load(dir.join("last.safetensors"))?;
        run.opt.load(&dir.join("last.optim.safetensors"))?;
    }
    // Keep only the metrics of finished epochs (a killed run may have written nothing more,
    // but never trust a partial line).
    let mpath = dir.join("metrics.jsonl");
    if let Ok(text) = std::fs::read_to_string(&mpath) {
        let kept: Vec<&str> = text
            .lines()
            .filter(|l| {
                serde_json::from_str::<EpochMetrics>(l).is_ok_and(|m| m.epoch < state.epochs_done)
            })
            .collect();
        let mut out = kept.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        std::fs::write(&mpath, out).map_err(io(&mpath))?;
    }
    run.state = state;
    if run.state.status != Status::Running {
        return summary(&run);
    }
    run_epochs(&mut run, progress)
}

fn summary(run: &Run) -> R<Summary> {
    let last: Option<EpochMetrics> = std::fs::read_to_string(run.dir.join("metrics.jsonl"))
        .ok()
        .and_then(|t| t.lines().last().and_then(|l| serde_json::from_str(l).ok()));
    let s = Summary {
        status: run.state.status,
        spec: run.spec.name.clone(),
        preset: run.cfg.preset.clone(),
        depth: run.cfg.depth,
        parameters: parameter_count(&run.vs),
        multiply_adds: run
            .net
            .multiply_adds(run.shape[0], run.shape[1], run.shape[2])?,
        epochs: run.state.epochs_done,
        best_acc: run.state.best_acc,
        best_epoch: run.state.best_epoch,
        final_test_acc: last.map(|m| m.test_acc),
        wall_seconds: run.state.wall_seconds,
        device: format!("{:?}", run.device),
    };
    write_json_atomic(&run.dir.join("summary.json"), &s)?;
    Ok(s)
}

fn run_epochs(run: &mut Run, progress: &mut dyn Progress) -> R<Summary> {
    let batches = run.train.batches_per_epoch();
    let total = (run.cfg.epochs * batches).max(1) as f64;
    let amp = run.cfg.amp.is_some();
    for epoch in run.state.epochs_done..run.cfg.epochs {
        let started = Instant::now();
        progress.epoch_start(epoch, run.cfg.epochs, batches);
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0.0, 0.0);
        let mut lr = run.cfg.lr;
        let mut diverged = false;
        for b in run.train.epoch(epoch as u64) {
            let b = b?;
            let it = epoch * batches + b.index;
            lr = run.cfg.lr * run.cfg.schedule.factor(it as f64 / total);
            let logits = tch::autocast(amp, || run.net.try_forward_t(&b.images, true, None))?;
            let loss = logits.to_kind(Kind::Float).cross_entropy_loss::<Tensor>(
                &b.labels,
                None,
                Reduction::Mean,
                -100,
                run.cfg.label_smoothing,
            );
            let lv = loss.double_value(&[]);
            if !lv.is_finite() {
                diverged = true;
                break;
            }
            run.opt.zero_grad();
            if amp {
                (&loss * run.state.loss_scale).backward();
                if !run.opt.grads_finite() {
                    run.state.loss_scale = (run.state.loss_scale / 2.0).max(1.0);
                    continue;
                }
                run.opt.scale_grads(1.0 / run.state.loss_scale);
            } else {
                loss.backward();
            }
            if let Some(c) = run.cfg.grad_clip {
                let n = run.opt.grad_norm();
                if n > c {
                    run.opt.scale_grads(c / n);
                }
            }
            run.opt.step(lr);
            let bs = b.labels.size()[0] as f64;
            loss_sum += lv * bs;
            correct += logits.accuracy_for_logits(&b.labels).double_value(&[]) * bs;
            seen += bs;
            progress.batch(lv);
        }
        let train_secs = started.elapsed().as_secs_f64();
        if diverged {
            run.state.status = Status::Diverged;
            run.state.wall_seconds += started.elapsed().as_secs_f64();
            write_json_atomic(&run.dir.join("state.json"), &run.state)?;
            return summary(run);
        }
        let (val_loss, val_acc) = match &run.val {
            Some(v) => {
                let (l, a) = evaluate(&run.net, v)?;
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        let (test_loss, test_acc) = evaluate(&run.net, &run.test)?;
        let m = EpochMetrics {
            epoch,
            lr,
            train_loss: loss_sum / seen.max(1.0),
            train_acc: correct / seen.max(1.0),
            val_loss,
            val_acc,
            test_loss,
            test_acc,
            images_per_sec: seen / train_secs.max(1e-9),
            epoch_seconds: started.elapsed().as_secs_f64(),
        };
        // Checkpoint first, then record: a kill between the two loses no finished epoch.
        let score = val_acc.unwrap_or(test_acc);
        run.vs.save(run.dir.join("last.safetensors"))?;
        run.opt.save(&run.dir.join("last.optim.safetensors"))?;
        if run.state.best_acc.is_none_or(|b| score > b) {
            run.state.best_acc = Some(score);
            run.state.best_epoch = Some(epoch);
            run.vs.save(run.dir.join("best.safetensors"))?;
        }
        let mpath = run.dir.join("metrics.jsonl");
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&mpath)
            .map_err(io(&mpath))?;
        let line = serde_json::to_string(&m).map_err(|e| TrainError::Config(e.to_string()))?;
        writeln!(f, "{line}").map_err(io(&mpath))?;
        run.state.epochs_done = epoch + 1;
        run.state.wall_seconds += m.epoch_seconds;
        if run.state.epochs_done == run.cfg.epochs {
            run.state.status = Status::Done;
        }
        write_json_atomic(&run.dir.join("state.json"), &run.state)?;
        if !progress.epoch_end(&m) && run.state.status == Status::Running {
            return summary(run);
        }
    }
    run.state.status = Status::Done;
    write_json_atomic(&run.dir.join("state.json"), &run.state)?;
    summary(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_overrides_apply_and_are_checked() {
        let cfg = TrainConfig {
            widths: Some(vec![8, 16, 32]),
            stage_steps: Some(vec![1, 2, 1]),
            ..TrainConfig::default()
        };
        let a = architecture(&cfg, 100, 1).unwrap();
        assert_eq!(
            a.stages
                .iter()
                .map(|s| (s.width, s.steps))
                .collect::<Vec<_>>(),
            [(8, 1), (16, 2), (32, 1)]
        );
        assert_eq!((a.classes, a.in_channels, a.stem.width), (100, 1, 8));
        let bad = TrainConfig {
            widths: Some(vec![8, 16]),
            ..TrainConfig::default()
        };
        assert!(architecture(&bad, 10, 3).is_err());
        let yaml = Arch::cifar_resnet(32, 10).unwrap();
        let cfg = TrainConfig {
            arch: Some(yaml.clone()),
            ..TrainConfig::default()
        };
        assert_eq!(architecture(&cfg, 10, 3).unwrap(), yaml);
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
    }
}
