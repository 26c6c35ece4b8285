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
//! the configured one), `fail@ID` (it fails at once, as with unreadable data). `*` for the ID
//! means every trial.

use super::candidate::Candidate;
use super::config::SearchConfig;
use super::ids::TrialId;
use super::store::{Epoch, Phase, Store, StoreError, Trial, TrialStatus};
use crate::data::DatasetKind;
use crate::train::{
    self, checkpoint, EpochMetrics, Progress, RunConfigFile, RunSpec, RunState, Status, TrainError,
};
use optarch_core::device::DeviceChoice;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why a trial process could not run its trial (its own failures, not the training's, which
/// it records in the store).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TrialError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot record an epoch in the store: {0}")]
    Record(#[source] StoreError),
}

/// Exit status: the attempt failed for good.
pub(crate) const EXIT_FAILED: i32 = 3;
/// Exit status: out of memory.
pub(crate) const EXIT_OOM: i32 = 4;
/// Exit status: the driver is gone; the trial stays `running` until a resumed driver requeues
/// it.
pub(crate) const EXIT_ORPHANED: i32 = 75;

/// The folder of the data prepared once per search (see [`prepared_data`]).
pub(crate) fn data_dir(search_dir: &Path) -> PathBuf {
    search_dir.join("data").join("cifar-10-batches-bin")
}

/// The prepared data folder of a search, when the driver made one.
pub(crate) fn prepared_data(search_dir: &Path) -> Option<PathBuf> {
    let d = data_dir(search_dir);
    d.join("test_batch.bin").is_file().then_some(d)
}

/// The run a trial trains: its candidate's spec, and the search's training configuration with
/// the trial's budget, batch size, seed and device, reading the search's prepared data when
/// there is some.
pub(crate) fn run_config(
    cfg: &SearchConfig,
    candidate: &Candidate,
    trial: &Trial,
    search_dir: &Path,
    device: DeviceChoice,
) -> RunConfigFile {
    let mut train = cfg.train.clone();
    if let Some(prepared) = prepared_data(search_dir) {
        train.data.dataset = DatasetKind::Cifar10;
        train.data.train_subset = None;
        train.data.test_subset = None;
        train.data.path = Some(prepared);
    }
    train.schedule.epochs = trial.max_budget;
    // Only the final trials evaluate the test set: it is reported for them, and nothing a
    // search decides can read it.
    train.data.test = trial.phase == Phase::Final;
    train.optim.batch_size = trial.batch_size;
    train.run.seed = trial.seed;
    train.run.device = device;
    RunConfigFile {
        spec: RunSpec {
            path: PathBuf::from("spec.yaml"),
            text: candidate.spec_yaml.clone(),
            overrides: candidate.overrides.clone(),
        },
        train,
    }
}

fn fault(kind: &str, id: TrialId) -> bool {
    std::env::var("OPTARCH_FAULT").is_ok_and(|v| {
        v.split(',').any(|f| {
            let f = f.trim();
            f == format!("{kind}@{id}") || f == format!("{kind}@*")
        })
    })
}

/// Records epochs in the store and stops at the budget; exits when the driver is gone.
struct Recorder<'a> {
    store: &'a Store,
    trial: TrialId,
    budget: usize,
    parent: u32,
    crash_after_epoch: bool,
    error: Option<StoreError>,
}

fn epoch_row(trial: TrialId, m: &EpochMetrics) -> Epoch {
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
            self.error = Some(e);
            return false;
        }
        if self.crash_after_epoch {
            eprintln!("OPTARCH_FAULT: crashing trial {} on purpose", self.trial);
            std::process::abort();
        }
        m.epoch + 1 < self.budget
    }
}

/// Replays the first `epochs` epochs of a run directory (those its state committed) into the
/// store: a process killed between its checkpoint and its store write loses nothing.
fn replay_metrics(
    store: &Store,
    trial: TrialId,
    run_dir: &Path,
    epochs: usize,
) -> Result<(), StoreError> {
    for m in checkpoint::read_metrics(run_dir)
        .iter()
        .filter(|m| m.epoch < epochs)
    {
        store.record_epoch(&epoch_row(trial, m))?;
    }
    Ok(())
}

fn read_state(run_dir: &Path) -> Option<RunState> {
    checkpoint::read_json(&run_dir.join(checkpoint::STATE)).ok()
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

fn is_oom(e: &TrainError) -> bool {
    let m = e.to_string().to_ascii_lowercase();
    m.contains("out of memory") || m.contains("outofmemoryerror")
}

/// Runs trial `id` as its process does: returns the exit status, with an error said on stderr.
/// `parent` is the process that started this one (the driver, or the trial server that forked
/// it): when it goes away, the trial stops as an orphan.
pub fn status(dir: &Path, id: TrialId, device: DeviceChoice, parent: u32) -> i32 {
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
pub(crate) fn run(
    dir: &Path,
    id: TrialId,
    device: DeviceChoice,
    parent: u32,
) -> Result<i32, TrialError> {
    let started = Instant::now();
    let (store, _, cfg) = Store::open_search(dir)?;
    let trial = store.trial(id)?;
    let cand = store.candidate(trial.candidate)?;
    let run_dir = dir.join(&trial.dir);
    let finish = |status: TrialStatus, error: Option<&str>| {
        store.finish_trial(id, status, error, started.elapsed().as_secs_f64())
    };
    if fault("oom", id) && trial.batch_size == cfg.train.optim.batch_size {
        finish(
            TrialStatus::Oom,
            Some("CUDA out of memory (injected by OPTARCH_FAULT)"),
        )?;
        return Ok(EXIT_OOM);
    }
    if fault("fail", id) {
        finish(
            TrialStatus::Failed,
            Some("cannot read the data (injected by OPTARCH_FAULT)"),
        )?;
        return Ok(EXIT_FAILED);
    }
    let rcfg = run_config(&cfg, &cand, &trial, dir, device);
    let mut rec = Recorder {
        store: &store,
        trial: id,
        budget: trial.budget,
        parent,
        crash_after_epoch: (fault("crash", id) && trial.crashes == 0) || fault("crashall", id),
        error: None,
    };
    let result = match read_state(&run_dir) {
        Some(s) => {
            replay_metrics(&store, id, &run_dir, s.epochs_done)?;
            if s.epochs_done >= trial.budget || matches!(s.status, Status::Done | Status::Diverged)
            {
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
                    store.event(Some(id), &format!("cannot resume ({e}); starting again"))?;
                    clear_run(&run_dir);
                    store.reset_trial(id, trial.batch_size)?;
                    store.start_trial(id, &device.to_string())?;
                    train::train(rcfg, &run_dir, &mut rec)
                }
            }
        }
        None => {
            // Nothing finished yet: a fresh start (a partial directory is discarded).
            clear_run(&run_dir);
            train::train(rcfg, &run_dir, &mut rec)
        }
    };
    if let Some(e) = rec.error.take() {
        return Err(TrialError::Record(e));
    }
    match result {
        Ok(summary) => {
            store.set_size(id, summary.parameters, summary.multiply_adds)?;
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
            if is_oom(&e) {
                finish(TrialStatus::Oom, Some(&msg))?;
                Ok(EXIT_OOM)
            } else {
                finish(TrialStatus::Failed, Some(&msg))?;
                Ok(EXIT_FAILED)
            }
        }
    }
}
