//! `optarch trial --dir DIR --id N`: one trial, in its own process.
//!
//! The process trains (or resumes) the trial's run directory up to the trial's current budget
//! and records every finished epoch in the store, after the epoch's checkpoint is on disk. It
//! ends the attempt itself (`done`, `diverged`, `oom` or `failed`); a process that dies without
//! doing so (a crash, a kill) leaves the trial `running`, and the driver retries it.
//!
//! Exit status: 0 the attempt is recorded (done or diverged), 3 failed (not worth retrying), 4
//! out of memory, 75 the driver went away (the trial stays resumable).
//!
//! `OPTARCH_FAULT` injects faults for the tests of the fault handling: a comma-separated list of
//! `crash@ID` (trial ID aborts after an epoch until it has crashed once), `crashall@ID` (it
//! aborts every time), `oom@ID` (trial ID reports CUDA out of memory while its batch size is
//! the configured one).

use super::config::SearchConfig;
use super::store::{Epoch, Store, Trial, TrialStatus};
use crate::train::{self, EpochMetrics, Progress, RunState, Schedule, Status, TrainConfig};
use optarch_core::spec::Overrides;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Exit status: the attempt failed for good.
pub const EXIT_FAILED: i32 = 3;
/// Exit status: out of memory.
pub const EXIT_OOM: i32 = 4;
/// Exit status: the driver is gone; the trial stays `running` until a resumed driver requeues
/// it.
pub const EXIT_ORPHANED: i32 = 75;

/// The folder of the data prepared once per search (see [`prepared_data`]).
pub fn data_dir(search_dir: &Path) -> PathBuf {
    search_dir.join("data").join("cifar-10-batches-bin")
}

/// The prepared data folder of a search, when the driver made one.
pub fn prepared_data(search_dir: &Path) -> Option<PathBuf> {
    let d = data_dir(search_dir);
    d.join("test_batch.bin").is_file().then_some(d)
}

/// The trainer's configuration of a trial.
pub fn train_config(
    cfg: &SearchConfig,
    spec_yaml: &str,
    overrides: Overrides,
    trial: &Trial,
    search_dir: &Path,
    device: &str,
) -> Result<TrainConfig, String> {
    let schedule = Schedule::parse(&cfg.trainer.schedule)?;
    let prepared = prepared_data(search_dir);
    let d = &cfg.data;
    Ok(TrainConfig {
        spec_path: PathBuf::from("spec.yaml"),
        spec_text: spec_yaml.to_string(),
        overrides,
        preset: cfg.arch.preset.clone(),
        depth: cfg.arch.depth,
        arch: None,
        widths: cfg.arch.widths.clone(),
        stage_steps: cfg.arch.stage_steps.clone(),
        dataset: if prepared.is_some() {
            "cifar10".into()
        } else {
            d.dataset.clone()
        },
        train_subset: if prepared.is_some() {
            None
        } else {
            d.train_subset
        },
        test_subset: if prepared.is_some() {
            None
        } else {
            d.test_subset
        },
        data_path: prepared.or_else(|| d.path.clone()),
        download: d.download,
        val: d.val,
        epochs: trial.max_budget,
        batch_size: trial.batch_size,
        lr: cfg.trainer.lr,
        momentum: cfg.trainer.momentum,
        nesterov: cfg.trainer.nesterov,
        weight_decay: cfg.trainer.weight_decay,
        no_decay_bn_bias: cfg.trainer.no_decay_bn_bias,
        schedule,
        label_smoothing: cfg.trainer.label_smoothing,
        grad_clip: cfg.trainer.grad_clip,
        augment: cfg.trainer.augment,
        amp: cfg.trainer.amp.clone(),
        seed: trial.seed,
        device: device.to_string(),
    })
}

fn fault(kind: &str, id: i64) -> bool {
    std::env::var("OPTARCH_FAULT").is_ok_and(|v| {
        v.split(',')
            .any(|f| f.trim() == format!("{kind}@{id}").as_str())
    })
}

/// Records epochs in the store and stops at the budget; exits when the driver is gone.
struct Recorder<'a> {
    store: &'a Store,
    trial: i64,
    budget: usize,
    parent: u32,
    crash_after_epoch: bool,
    error: Option<String>,
}

fn epoch_row(trial: i64, m: &EpochMetrics) -> Epoch {
    Epoch {
        trial,
        metrics: m.clone(),
    }
}

impl Progress for Recorder<'_> {
    fn epoch_start(&mut self, _: usize, _: usize, _: usize) {}

    fn batch(&mut self, _: f64) {
        if std::os::unix::process::parent_id() != self.parent {
            // Orphaned: the driver was killed. Stop now; the last checkpoint is intact and a
            // resumed search continues from it.
            std::process::exit(EXIT_ORPHANED);
        }
    }

    fn epoch_end(&mut self, m: &EpochMetrics) -> bool {
        // The checkpoint is on disk: this epoch is complete and will never be trained again.
        // (The tests count these lines: one per epoch, whatever was killed.)
        eprintln!("{}", train::epoch_line(m));
        eprintln!("completed epoch {} of trial {}", m.epoch, self.trial);
        if let Err(e) = self.store.record_epoch(&epoch_row(self.trial, m)) {
            self.error = Some(e.to_string());
            return false;
        }
        if self.crash_after_epoch {
            eprintln!("OPTARCH_FAULT: crashing trial {} on purpose", self.trial);
            std::process::abort();
        }
        m.epoch + 1 < self.budget
    }
}

/// Replays the finished epochs of a run directory into the store (a process killed between its
/// checkpoint and its store write loses nothing).
fn replay_metrics(store: &Store, trial: i64, run_dir: &Path) -> Result<(), String> {
    let Ok(text) = std::fs::read_to_string(run_dir.join("metrics.jsonl")) else {
        return Ok(());
    };
    for line in text.lines() {
        if let Ok(m) = serde_json::from_str::<EpochMetrics>(line) {
            store
                .record_epoch(&epoch_row(trial, &m))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn read_state(run_dir: &Path) -> Option<RunState> {
    train::read_json(&run_dir.join("state.json")).ok()
}

/// Empties a run directory but for the trial's log.
fn clear_run(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.file_name().is_some_and(|n| n == "log.txt") {
            continue;
        }
        let _ = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
    }
}

fn is_oom(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("out of memory") || m.contains("outofmemoryerror")
}

/// Runs trial `id` as its process does: returns the exit status, with an error said on stderr.
/// `parent` is the process that started this one (the driver, or the trial server that forked
/// it): when it goes away, the trial stops as an orphan.
pub fn status(dir: &Path, id: i64, device: &str, parent: u32) -> i32 {
    match run(dir, id, device, parent) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: trial {id}: {e}");
            EXIT_FAILED
        }
    }
}

/// Runs trial `id` of the search in `dir` on `device` for process `parent`; returns the exit
/// status.
pub fn run(dir: &Path, id: i64, device: &str, parent: u32) -> Result<i32, String> {
    let started = Instant::now();
    let store = Store::open_existing(&dir.join("search.db")).map_err(|e| e.to_string())?;
    let exp = store
        .experiment()
        .map_err(|e| e.to_string())?
        .ok_or("the search database holds no experiment")?;
    let cfg: SearchConfig = serde_json::from_str(&exp.config_json).map_err(|e| e.to_string())?;
    let trial = store.trial(id).map_err(|e| e.to_string())?;
    let cand = store
        .candidate(trial.candidate)
        .map_err(|e| e.to_string())?;
    let overrides: Overrides = serde_json::from_str(&cand.params_json).unwrap_or_default();
    let run_dir = dir.join(&trial.dir);
    let finish = |status: TrialStatus, error: Option<&str>| {
        store
            .finish_trial(id, status, error, started.elapsed().as_secs_f64())
            .map_err(|e| e.to_string())
    };
    if fault("oom", id) && trial.batch_size == cfg.trainer.batch_size {
        finish(
            TrialStatus::Oom,
            Some("CUDA out of memory (injected by OPTARCH_FAULT)"),
        )?;
        return Ok(EXIT_OOM);
    }
    let tcfg = train_config(&cfg, &cand.spec_yaml, overrides, &trial, dir, device)?;
    let mut rec = Recorder {
        store: &store,
        trial: id,
        budget: trial.budget,
        parent,
        crash_after_epoch: (fault("crash", id) && trial.crashes == 0) || fault("crashall", id),
        error: None,
    };
    let state = read_state(&run_dir);
    let result = match state {
        Some(s) => {
            replay_metrics(&store, id, &run_dir)?;
            if s.epochs_done >= trial.budget || s.status != Status::Running {
                // Already there (killed after its last epoch, before it reported).
                finish(
                    if s.status == Status::Diverged {
                        TrialStatus::Diverged
                    } else {
                        TrialStatus::Done
                    },
                    None,
                )?;
                return Ok(0);
            }
            match train::resume(&run_dir, &mut rec) {
                Ok(s) => Ok(s),
                Err(e) => {
                    // A checkpoint cut short by a kill: start this trial again from nothing.
                    store
                        .event(Some(id), &format!("cannot resume ({e}); starting again"))
                        .map_err(|e| e.to_string())?;
                    clear_run(&run_dir);
                    store
                        .reset_trial(id, trial.batch_size)
                        .map_err(|e| e.to_string())?;
                    store.start_trial(id, device).map_err(|e| e.to_string())?;
                    train::train(tcfg, &run_dir, &mut rec)
                }
            }
        }
        None => {
            // Nothing finished yet: a fresh start (a partial directory is discarded).
            clear_run(&run_dir);
            train::train(tcfg, &run_dir, &mut rec)
        }
    };
    if let Some(e) = rec.error.take() {
        return Err(format!("cannot record an epoch in the store: {e}"));
    }
    match result {
        Ok(summary) => {
            if let Ok(ma) = u64::try_from(summary.multiply_adds) {
                store
                    .set_size(id, summary.parameters, ma as i64)
                    .map_err(|e| e.to_string())?;
            }
            let status = if summary.status == Status::Diverged {
                TrialStatus::Diverged
            } else {
                TrialStatus::Done
            };
            let note =
                (status == TrialStatus::Diverged).then_some("the loss became NaN or infinite");
            finish(status, note)?;
            Ok(0)
        }
        Err(e) => {
            let msg = e.to_string();
            if is_oom(&msg) {
                finish(TrialStatus::Oom, Some(&msg))?;
                Ok(EXIT_OOM)
            } else {
                finish(TrialStatus::Failed, Some(&msg))?;
                Ok(EXIT_FAILED)
            }
        }
    }
}
