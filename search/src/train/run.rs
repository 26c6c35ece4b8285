//! The training loop: [`train`] starts a run in a directory, [`resume`] continues it from its
//! last finished epoch, bit for bit on the CPU.

use super::checkpoint::{self, CheckpointError};
use super::config::{Precision, RunConfigFile, SetupError};
use super::network::{build, Built};
use super::progress::Progress;
use super::record::{DataRecord, EpochMetrics, RunState, Status, Summary};
use super::sgd::Sgd;
use crate::data::{self, Augment, Loader, Normalization};
use optarch_core::exec::{parameter_count, Network};
use optarch_core::spec::Spec;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tch::{nn, Device, Kind, Reduction, Tensor};

/// Why training failed (as opposed to diverged, which is a result).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Spec(#[from] optarch_core::error::SpecError),
    #[error(transparent)]
    Exec(#[from] optarch_core::exec::ExecError),
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error(transparent)]
    Config(#[from] SetupError),
    #[error(transparent)]
    Device(#[from] optarch_core::device::DeviceError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// The directory holds a run already.
    #[error(
        "{} already holds a run: continue it with --resume {}, or pick another --out",
        .0.display(),
        .0.display()
    )]
    Exists(PathBuf),
    /// `--resume` of a directory that holds no committed run.
    #[error(
        "{} holds no run to resume (no state.json: it never finished starting); start it \
         again without --resume",
        .0.display()
    )]
    NotStarted(PathBuf),
    /// A setting this run cannot use.
    #[error("{0}")]
    Invalid(String),
}

type R<T> = Result<T, TrainError>;

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

/// A prepared run: network, optimiser, loaders.
struct Run {
    cfg: RunConfigFile,
    /// The spec, loaded once from the configuration's text.
    spec: Spec,
    dir: PathBuf,
    device: Device,
    vs: nn::VarStore,
    net: Network,
    /// Image shape (C, H, W) as i64.
    shape: [i64; 3],
    opt: Sgd,
    train: Loader,
    val: Option<Loader>,
    /// `None` where the run does not evaluate the test set (`data.test: false`).
    test: Option<Loader>,
    state: RunState,
    data: DataRecord,
    /// Whether the training images are cropped and flipped.
    augmented: bool,
}

fn prepare(mut cfg: RunConfigFile, dir: &Path) -> R<Run> {
    let device = cfg.train.run.device.resolve()?;
    // The thread count the run was started with: a resumed run computes bit for bit the same.
    if let Some(n) = cfg.train.run.threads {
        tch::set_num_threads(i32::try_from(n).unwrap_or(i32::MAX));
    }
    if cfg.train.precision.precision == Precision::Fp16 && !device.is_cuda() {
        return Err(TrainError::Invalid(
            "--precision fp16 needs a CUDA device (--device cuda)".into(),
        ));
    }
    if cfg.train.schedule.epochs == 0 || cfg.train.optim.batch_size == 0 {
        return Err(TrainError::Invalid(
            "epochs and batch size must be at least 1".into(),
        ));
    }
    let (train, val, test) = cfg.train.data.load(cfg.train.run.seed)?;
    // `auto` becomes what is faster on this device for this step's size.
    let step_pixels = cfg
        .train
        .optim
        .batch_size
        .saturating_mul(train.shape[1])
        .saturating_mul(train.shape[2]);
    let step_pixels = i64::try_from(step_pixels).unwrap_or(i64::MAX);
    cfg.train.precision.resolve(device, step_pixels);
    let t = &cfg.train;
    let data = t.data.record(&train, val.as_ref(), &test)?;
    let norm = Normalization {
        mean: data.mean.clone(),
        std: data.std.clone(),
    };
    let Built {
        spec, vs, mut net, ..
    } = build(&cfg.spec, t, &train, device)?;
    net.set_compute(t.precision.compute());
    let opt = Sgd::new(&vs, &t.optim);
    let mut train_loader = Loader::new(&train, t.optim.batch_size, device)?
        .shuffled(t.run.seed)
        .normalized(norm.clone());
    // Crops and flips are defined for 32×32 images: recorded as off where they do not apply.
    let augmented = t.data.augment && train.shape[1] == 32;
    if augmented {
        train_loader = train_loader.augmented(Augment::default());
    }
    let eval_bs = t.optim.batch_size.max(256);
    let val = match val {
        Some(v) => Some(Loader::new(&v, eval_bs, device)?.normalized(norm.clone())),
        None => None,
    };
    let test = match t.data.test {
        true => Some(Loader::new(&test, eval_bs, device)?.normalized(norm)),
        false => None,
    };
    std::fs::create_dir_all(dir).map_err(checkpoint::io(dir))?;
    let shape = train.shape.map(|d| d as i64);
    Ok(Run {
        cfg,
        spec,
        dir: dir.to_path_buf(),
        device,
        vs,
        net,
        shape,
        opt,
        train: train_loader,
        val,
        test,
        state: RunState::new(),
        data,
        augmented,
    })
}

/// Set by the command line's Ctrl-C handler: the run stops at the next batch, its state marked
/// [`Status::Interrupted`] at the last finished epoch.
pub fn interrupt_flag() -> &'static AtomicBool {
    static FLAG: AtomicBool = AtomicBool::new(false);
    &FLAG
}

fn interrupted() -> bool {
    interrupt_flag().load(Ordering::SeqCst)
}

/// Starts a new run of `cfg` in `dir` (which must not hold one already).
pub fn train(mut cfg: RunConfigFile, dir: &Path, progress: &mut dyn Progress) -> R<Summary> {
    if dir.join(checkpoint::STATE).exists() {
        return Err(TrainError::Exists(dir.to_path_buf()));
    }
    let mut checks = crate::checks::Checks::flags();
    cfg.train.check(&mut checks, false);
    checks
        .finish()
        .map_err(|e| TrainError::Invalid(e.to_string()))?;
    // Recorded, so that a resumed run uses the same count (and computes the same bits).
    cfg.train
        .run
        .threads
        .get_or_insert_with(|| usize::try_from(tch::get_num_threads()).unwrap_or(1));
    let mut run = prepare(cfg, dir)?;
    // The data as found (through $OPTARCH_DATA, say): a resumed run reads the same files. And
    // augmentation as applied.
    run.cfg.train.data.path = Some(run.data.path.clone());
    run.cfg.train.data.augment = run.augmented;
    checkpoint::write_json(&run.dir.join(checkpoint::DATA), &run.data)?;
    checkpoint::write_json(&run.dir.join(checkpoint::CONFIG), &run.cfg)?;
    if let Some(stage) = run.net.stages.first() {
        let svg = optarch_core::render::to_svg(&stage.topology);
        checkpoint::write_atomic(&run.dir.join(checkpoint::TOPOLOGY), svg.as_bytes())?;
    }
    let _ = std::fs::remove_file(run.dir.join(checkpoint::METRICS));
    checkpoint::commit(&run.dir, &run.state)?;
    run_epochs(&mut run, progress)
}

/// The configuration of the run in `dir`, which must have started (its state committed).
pub fn read_run_config(dir: &Path) -> R<RunConfigFile> {
    if !dir.is_dir() {
        return Err(TrainError::Invalid(format!(
            "{}: no such run directory (optarch train --out names one)",
            dir.display()
        )));
    }
    if dir.join("search.db").exists() {
        return Err(TrainError::Invalid(format!(
            "{} is a search directory: continue it with `optarch search --resume {}`",
            dir.display(),
            dir.display()
        )));
    }
    if !dir.join(checkpoint::STATE).exists() {
        return Err(TrainError::NotStarted(dir.to_path_buf()));
    }
    let path = dir.join(checkpoint::CONFIG);
    let cfg: RunConfigFile = checkpoint::read_json(&path)?;
    // A configuration edited by hand gets the checks a new run gets.
    let mut checks = crate::checks::Checks::flags();
    cfg.train.check(&mut checks, false);
    checks
        .finish()
        .map_err(|e| TrainError::Invalid(format!("{}: {e}", path.display())))?;
    Ok(cfg)
}

/// Continues the run in `dir` from its last finished epoch (the checkpoint set its state
/// names, after checking the set's sums).
pub fn resume(dir: &Path, progress: &mut dyn Progress) -> R<Summary> {
    let cfg = read_run_config(dir)?;
    let state: RunState = checkpoint::read_json(&dir.join(checkpoint::STATE))?;
    if state.epochs_done > cfg.train.schedule.epochs {
        return Err(TrainError::Invalid(format!(
            "{}: {} epochs done of a run of {}: the state is damaged; start the run again",
            dir.join(checkpoint::STATE).display(),
            state.epochs_done,
            cfg.train.schedule.epochs
        )));
    }
    // A finished run has nothing left to do: its summary is read back, without the data.
    if matches!(state.status, Status::Done | Status::Diverged) {
        if let Ok(s) = checkpoint::read_json::<Summary>(&dir.join(checkpoint::SUMMARY)) {
            return Ok(s);
        }
    }
    let mut run = prepare(cfg, dir)?;
    if state.epochs_done > 0 {
        let set = state
            .checkpoint
            .as_ref()
            .ok_or_else(|| CheckpointError::Damaged(dir.join(checkpoint::STATE)))?;
        let weights = set.verified(dir, checkpoint::WEIGHTS)?;
        run.vs.load(&weights)?;
        run.opt.load(&set.verified(dir, checkpoint::OPTIM)?)?;
    }
    // Keep only the metrics of finished epochs (a killed run may have written one more line,
    // or half of one).
    checkpoint::trim_metrics(dir, state.epochs_done)?;
    checkpoint::tidy(dir, &state)?;
    run.state = state;
    match run.state.status {
        Status::Running | Status::Interrupted => {
            run.state.status = Status::Running;
            run_epochs(&mut run, progress)
        }
        Status::Done | Status::Diverged => summary(&run),
    }
}

fn summary(run: &Run) -> R<Summary> {
    let last = checkpoint::read_metrics(&run.dir).pop();
    let t = &run.cfg.train;
    let s = Summary {
        status: run.state.status,
        spec: run.spec.name.clone(),
        preset: t.arch.preset.to_string(),
        depth: t.arch.depth,
        parameters: parameter_count(&run.vs),
        multiply_adds: run
            .net
            .multiply_adds(run.shape[0], run.shape[1], run.shape[2])?,
        epochs: run.state.epochs_done,
        best_acc: run.state.best_acc,
        best_epoch: run.state.best_epoch,
        final_test_acc: last.and_then(|m| m.test_acc),
        wall_seconds: run.state.wall_seconds,
        device: optarch_core::device::device_name(run.device),
        dataset: format!(
            "{} ({} training, {} validation, {} test images)",
            run.data.dataset, run.data.train, run.data.val, run.data.test
        ),
        compute: match t.precision.precision {
            Precision::Fp16 => "fp16 autocast".to_string(),
            _ => run.net.compute().to_string(),
        },
    };
    checkpoint::write_json(&run.dir.join(checkpoint::SUMMARY), &s)?;
    Ok(s)
}

/// What one pass over the training data gave.
struct Pass {
    loss_sum: f64,
    correct: f64,
    seen: f64,
    /// The learning rate of the last batch.
    lr: f64,
    diverged: bool,
    /// Stopped by Ctrl-C before its end.
    interrupted: bool,
}

/// Trains one epoch.
fn train_epoch(run: &mut Run, epoch: usize, progress: &mut dyn Progress) -> R<Pass> {
    let t = &run.cfg.train;
    let batches = run.train.batches_per_epoch();
    let total = (t.schedule.epochs * batches).max(1) as f64;
    let amp = t.precision.precision == Precision::Fp16;
    let mut pass = Pass {
        loss_sum: 0.0,
        correct: 0.0,
        seen: 0.0,
        lr: t.optim.lr,
        diverged: false,
        interrupted: false,
    };
    for b in run.train.epoch(epoch as u64) {
        if interrupted() {
            pass.interrupted = true;
            break;
        }
        let b = b?;
        let it = epoch * batches + b.index;
        pass.lr = t.optim.lr * t.schedule.kind.factor(it as f64 / total);
        let logits = optarch_core::device::autocast_fp16(amp, || {
            run.net.try_forward_t(&b.images, true, None)
        })?;
        // Fallible calls: a libtorch error is an error of the run, never a panic.
        let loss = logits.to_kind(Kind::Float).f_cross_entropy_loss::<Tensor>(
            &b.labels,
            None,
            Reduction::Mean,
            -100,
            t.optim.label_smoothing,
        )?;
        let lv = loss.f_double_value(&[])?;
        if !lv.is_finite() {
            pass.diverged = true;
            break;
        }
        run.opt.zero_grad();
        if amp {
            (&loss * run.state.loss_scale).f_backward()?;
            if !run.opt.grads_finite() {
                run.state.loss_scale = (run.state.loss_scale / 2.0).max(1.0);
                continue;
            }
            run.opt.scale_grads(1.0 / run.state.loss_scale);
        } else {
            loss.f_backward()?;
        }
        if let Some(c) = t.optim.grad_clip {
            let n = run.opt.grad_norm();
            if n > c {
                run.opt.scale_grads(c / n);
            }
        }
        run.opt.step(pass.lr);
        let bs = b.labels.size()[0] as f64;
        pass.loss_sum += lv * bs;
        pass.correct += logits.accuracy_for_logits(&b.labels).double_value(&[]) * bs;
        pass.seen += bs;
        progress.batch(lv);
    }
    Ok(pass)
}

/// Checkpoints a finished epoch, then records it: a kill between the two loses no finished
/// epoch. The best checkpoint is the epoch with the best validation accuracy; without a
/// validation split nothing is selected and the best is the last.
fn checkpoint_epoch(run: &mut Run, m: &EpochMetrics) -> R<()> {
    let (vs, opt) = (&run.vs, &run.opt);
    let save_weights = |p: &Path| vs.save(p);
    let save_optim = |p: &Path| opt.save(p);
    let set = checkpoint::write_set(
        &run.dir,
        m.epoch,
        &[
            (checkpoint::WEIGHTS, &save_weights),
            (checkpoint::OPTIM, &save_optim),
        ],
    )?;
    checkpoint::append_metrics(&run.dir, m)?;
    let mut state = run.state.clone();
    let best = match m.score() {
        Some(score) => state.best_acc.is_none_or(|b| score > b),
        None => run.val.is_none(),
    };
    if best {
        state.best_acc = m.score();
        state.best_epoch = Some(m.epoch);
        state.best = Some(set.clone());
    }
    state.checkpoint = Some(set);
    state.epochs_done = m.epoch + 1;
    state.wall_seconds += m.epoch_seconds;
    if state.epochs_done == run.cfg.train.schedule.epochs {
        state.status = Status::Done;
    }
    checkpoint::commit(&run.dir, &state)?;
    run.state = state;
    Ok(())
}

/// Ends the run here with `status` (its last finished epoch stays the one to resume from).
fn stop(run: &mut Run, status: Status, seconds: f64) -> R<Summary> {
    run.state.status = status;
    run.state.wall_seconds += seconds;
    checkpoint::commit(&run.dir, &run.state)?;
    summary(run)
}

fn run_epochs(run: &mut Run, progress: &mut dyn Progress) -> R<Summary> {
    let batches = run.train.batches_per_epoch();
    let epochs = run.cfg.train.schedule.epochs;
    for epoch in run.state.epochs_done..epochs {
        let started = Instant::now();
        progress.epoch_start(epoch, epochs, batches);
        let pass = train_epoch(run, epoch, progress)?;
        let train_secs = started.elapsed().as_secs_f64();
        if pass.diverged {
            return stop(run, Status::Diverged, started.elapsed().as_secs_f64());
        }
        if pass.interrupted {
            return stop(run, Status::Interrupted, 0.0);
        }
        let (val_loss, val_acc) = match &run.val {
            Some(v) => {
                let (l, a) = evaluate(&run.net, v)?;
                (Some(l), Some(a))
            }
            None => (None, None),
        };
        let test_now = run.cfg.train.data.test_every_epoch || epoch + 1 == epochs;
        let (test_loss, test_acc) = match &run.test {
            Some(t) if test_now => {
                let (l, a) = evaluate(&run.net, t)?;
                (Some(l), Some(a))
            }
            _ => (None, None),
        };
        let m = EpochMetrics {
            epoch,
            lr: pass.lr,
            train_loss: pass.loss_sum / pass.seen.max(1.0),
            train_acc: pass.correct / pass.seen.max(1.0),
            val_loss,
            val_acc,
            test_loss,
            test_acc,
            images_per_sec: pass.seen / train_secs.max(1e-9),
            epoch_seconds: started.elapsed().as_secs_f64(),
        };
        // An infinite loss on any split is a diverged run, not a result.
        let finite = |v: Option<f64>| v.is_none_or(f64::is_finite);
        if !(m.train_loss.is_finite() && finite(m.val_loss) && finite(m.test_loss)) {
            return stop(run, Status::Diverged, m.epoch_seconds);
        }
        checkpoint_epoch(run, &m)?;
        if !progress.epoch_end(&m) && run.state.status == Status::Running {
            return summary(run);
        }
        if interrupted() && run.state.status == Status::Running {
            return stop(run, Status::Interrupted, 0.0);
        }
    }
    stop(run, Status::Done, 0.0)
}
