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
    self, checkpoint, EpochMetrics, Progress, RunConfigFile, RunSpec, RunState, Status,
    TrainConfig, TrainError,
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
    #[error("cannot write {}: {source}", .path.display())]
    Result {
        path: PathBuf,
        source: train::CheckpointError,
    },
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
    let mut train = candidate_train(cfg, candidate);
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
    // The report reads a final trial's test accuracy after its last epoch only: the epochs
    // before it skip the test pass (at the CPU campaign's 10,000 training images it added 40 %
    // to an epoch).
    train.data.test_every_epoch = false;
    train.optim.batch_size = trial.batch_size;
    train.run.seed = trial.seed;
    train.run.device = device;
    RunConfigFile {
        spec: candidate_spec(candidate),
        train,
    }
}

/// The training configuration a candidate trains in: the search's, in the candidate's own
/// macro-architecture when its entry gives one.
pub(crate) fn candidate_train(cfg: &SearchConfig, candidate: &Candidate) -> TrainConfig {
    let mut train = cfg.train.clone();
    if let Some(arch) = &candidate.arch {
        train.arch = arch.clone();
    }
    train
}

/// The spec a candidate's trials train: its text and parameter values.
pub(crate) fn candidate_spec(candidate: &Candidate) -> RunSpec {
    RunSpec {
        path: PathBuf::from("spec.yaml"),
        text: candidate.spec_yaml.clone(),
        overrides: candidate.overrides.clone(),
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

/// Where a trial process reports: the store (a local trial), or files in its run directory
/// that the driver reads back (a cluster job: the driver is the only writer of the store).
pub(crate) trait Sink {
    /// A finished epoch, after its checkpoint is on disk.
    fn epoch(&self, m: &EpochMetrics) -> Result<(), TrialError>;
    /// A line for the search's event log.
    fn event(&self, message: &str) -> Result<(), TrialError>;
    /// The run directory could not be resumed and starts again from nothing.
    fn restart(&self, batch_size: usize, device: &str) -> Result<(), TrialError>;
    /// The network's size.
    fn size(&self, parameters: i64, multiply_adds: i64) -> Result<(), TrialError>;
    /// The attempt's end.
    fn finish(&self, status: TrialStatus, error: Option<&str>, wall: f64)
        -> Result<(), TrialError>;
}

/// A local trial reports to the store itself.
struct StoreSink<'a> {
    store: &'a Store,
    trial: TrialId,
}

impl Sink for StoreSink<'_> {
    fn epoch(&self, m: &EpochMetrics) -> Result<(), TrialError> {
        Ok(self.store.record_epoch(&epoch_row(self.trial, m))?)
    }
    fn event(&self, message: &str) -> Result<(), TrialError> {
        Ok(self.store.event(Some(self.trial), message)?)
    }
    fn restart(&self, batch_size: usize, device: &str) -> Result<(), TrialError> {
        self.store.reset_trial(self.trial, batch_size)?;
        Ok(self.store.start_trial(self.trial, device)?)
    }
    fn size(&self, parameters: i64, multiply_adds: i64) -> Result<(), TrialError> {
        Ok(self.store.set_size(self.trial, parameters, multiply_adds)?)
    }
    fn finish(
        &self,
        status: TrialStatus,
        error: Option<&str>,
        wall: f64,
    ) -> Result<(), TrialError> {
        Ok(self.store.finish_trial(self.trial, status, error, wall)?)
    }
}

/// Records epochs and stops at the budget; exits when the driver is gone (a local trial: its
/// `parent`).
struct Recorder<'a> {
    sink: &'a dyn Sink,
    trial: TrialId,
    budget: usize,
    parent: Option<u32>,
    crash_after_epoch: bool,
    error: Option<TrialError>,
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
        if self
            .parent
            .is_some_and(|p| std::os::unix::process::parent_id() != p)
        {
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
        if let Err(e) = self.sink.epoch(m) {
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
fn replay_metrics(sink: &dyn Sink, run_dir: &Path, epochs: usize) -> Result<(), TrialError> {
    for m in checkpoint::read_metrics(run_dir)
        .iter()
        .filter(|m| m.epoch < epochs)
    {
        sink.epoch(m)?;
    }
    Ok(())
}

fn read_state(run_dir: &Path) -> Option<RunState> {
    checkpoint::read_json(&run_dir.join(checkpoint::STATE)).ok()
}

/// Empties a run directory but for the trial's log and a cluster job's own files.
fn clear_run(run_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(run_dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.file_name()
            .is_some_and(|n| n == "log.txt" || n == JOB_FILE || n == JOB_SCRIPT)
        {
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
    let (store, _, cfg) = Store::open_search(dir)?;
    let trial = store.trial(id)?;
    let cand = store.candidate(trial.candidate)?;
    let attempt = Attempt {
        trial: id,
        budget: trial.budget,
        batch_size: trial.batch_size,
        configured_batch: cfg.train.optim.batch_size,
        crashes: trial.crashes,
        run: run_config(&cfg, &cand, &trial, dir, device),
    };
    let sink = StoreSink {
        store: &store,
        trial: id,
    };
    attempt.run(&dir.join(&trial.dir), &sink, Some(parent))
}

/// One attempt of a trial, whoever started it: what it trains and how far.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Attempt {
    pub trial: TrialId,
    /// Epochs to reach before stopping (the trial's current rung).
    pub budget: usize,
    /// Its batch size now (halved after running out of memory).
    pub batch_size: usize,
    /// The search's batch size (an injected out-of-memory fault fires only at it).
    pub configured_batch: usize,
    /// Crashes so far (an injected crash fires only on the first attempt).
    pub crashes: u32,
    /// The run's whole configuration.
    pub run: RunConfigFile,
}

impl Attempt {
    /// Trains (or resumes) `run_dir` up to the budget, reporting to `sink`; returns the exit
    /// status. With `parent`, the process stops when that process goes away.
    pub(crate) fn run(
        &self,
        run_dir: &Path,
        sink: &dyn Sink,
        parent: Option<u32>,
    ) -> Result<i32, TrialError> {
        let started = Instant::now();
        let id = self.trial;
        let device = self.run.train.run.device;
        let finish = |status: TrialStatus, error: Option<&str>| {
            sink.finish(status, error, started.elapsed().as_secs_f64())
        };
        if fault("oom", id) && self.batch_size == self.configured_batch {
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
        let rcfg = self.run.clone();
        let mut rec = Recorder {
            sink,
            trial: id,
            budget: self.budget,
            parent,
            crash_after_epoch: (fault("crash", id) && self.crashes == 0) || fault("crashall", id),
            error: None,
        };
        let result = match read_state(run_dir) {
            Some(s) => {
                replay_metrics(sink, run_dir, s.epochs_done)?;
                if s.epochs_done >= self.budget
                    || matches!(s.status, Status::Done | Status::Diverged)
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
                eprintln!(
                    "resuming trial {id} from its checkpoint after epoch {} (budget {})",
                    s.epochs_done, self.budget
                );
                match train::resume(run_dir, &mut rec) {
                    Ok(s) => Ok(s),
                    Err(e) => {
                        // A checkpoint cut short by a kill: start this trial again from nothing.
                        sink.event(&format!("cannot resume ({e}); starting again"))?;
                        clear_run(run_dir);
                        sink.restart(self.batch_size, &device.to_string())?;
                        train::train(rcfg, run_dir, &mut rec)
                    }
                }
            }
            None => {
                // Nothing finished yet: a fresh start (a partial directory is discarded).
                clear_run(run_dir);
                train::train(rcfg, run_dir, &mut rec)
            }
        };
        if let Some(e) = rec.error.take() {
            return Err(e);
        }
        match result {
            Ok(summary) if summary.status == Status::Interrupted => {
                // Stopped by a signal (a cluster job warned before its time limit or
                // preemption): resumable from its last epoch, nothing to report.
                Ok(EXIT_ORPHANED)
            }
            Ok(summary) => {
                sink.size(summary.parameters, summary.multiply_adds)?;
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
}

// ---- Cluster jobs: the trial's side and the driver's side of the run-directory protocol ----

/// `job.json`, written by the driver into the run directory before it submits the job.
pub(crate) const JOB_FILE: &str = "job.json";
/// `job.sh`, the batch script the driver submits.
pub(crate) const JOB_SCRIPT: &str = "job.sh";
/// `result.json`, written (atomically) by the job when its attempt ends.
pub(crate) const RESULT_FILE: &str = "result.json";

/// What a cluster job runs: one attempt of a trial.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct JobFile {
    /// The store's attempt number: a result is read back only for the attempt it belongs to.
    pub attempt: u32,
    #[serde(flatten)]
    pub work: Attempt,
}

/// How a job's attempt ended, as the job wrote it.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct JobResult {
    pub trial: TrialId,
    pub attempt: u32,
    /// A [`TrialStatus`] name.
    pub status: String,
    pub error: Option<String>,
    pub wall: f64,
    pub parameters: Option<i64>,
    pub multiply_adds: Option<i64>,
    /// The run directory could not be resumed and was trained again from nothing.
    pub restarted: bool,
    /// Lines for the search's event log.
    pub events: Vec<String>,
}

/// A job reports through files: epochs are the run's own `metrics.jsonl` (committed with
/// `state.json`), the rest goes into `result.json` when the attempt ends.
struct FileSink {
    run_dir: PathBuf,
    result: std::cell::RefCell<JobResult>,
}

impl Sink for FileSink {
    fn epoch(&self, _: &EpochMetrics) -> Result<(), TrialError> {
        Ok(())
    }
    fn event(&self, message: &str) -> Result<(), TrialError> {
        eprintln!("{message}");
        self.result.borrow_mut().events.push(message.to_string());
        Ok(())
    }
    fn restart(&self, _: usize, _: &str) -> Result<(), TrialError> {
        self.result.borrow_mut().restarted = true;
        Ok(())
    }
    fn size(&self, parameters: i64, multiply_adds: i64) -> Result<(), TrialError> {
        let mut r = self.result.borrow_mut();
        r.parameters = Some(parameters);
        r.multiply_adds = Some(multiply_adds);
        Ok(())
    }
    fn finish(
        &self,
        status: TrialStatus,
        error: Option<&str>,
        wall: f64,
    ) -> Result<(), TrialError> {
        let mut r = self.result.borrow_mut();
        r.status = status.as_str().to_string();
        r.error = error.map(str::to_string);
        r.wall = wall;
        let path = self.run_dir.join(RESULT_FILE);
        checkpoint::write_json(&path, &*r).map_err(|source| TrialError::Result { path, source })
    }
}

/// Runs the attempt a cluster job was given (`optarch trial --job RUN_DIR/job.json`); returns
/// the exit status. SIGTERM (Slurm's warning before a time limit or a preemption) stops it at
/// the next batch; it then asks Slurm to requeue the job, which resumes from the last epoch.
pub fn job_status(job_file: &Path) -> i32 {
    let job: JobFile = match checkpoint::read_json(job_file) {
        Ok(j) => j,
        Err(e) => {
            eprintln!(
                "error: cannot read the job file {} ({e}): is the trial directory on a \
                 filesystem the compute node shares with the driver?",
                job_file.display()
            );
            return EXIT_FAILED;
        }
    };
    let run_dir = job_file.parent().unwrap_or(Path::new(".")).to_path_buf();
    let _ = ctrlc::set_handler(|| {
        train::interrupt_flag().store(true, std::sync::atomic::Ordering::SeqCst)
    });
    let slurm_job = std::env::var("SLURM_JOB_ID").ok();
    eprintln!(
        "trial {} attempt {} in {} (Slurm job {}, restart {}, CUDA_VISIBLE_DEVICES={})",
        job.work.trial,
        job.attempt,
        run_dir.display(),
        slurm_job.as_deref().unwrap_or("-"),
        std::env::var("SLURM_RESTART_COUNT").unwrap_or_else(|_| "0".into()),
        std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default(),
    );
    let sink = FileSink {
        run_dir: run_dir.clone(),
        result: std::cell::RefCell::new(JobResult {
            trial: job.work.trial,
            attempt: job.attempt,
            ..Default::default()
        }),
    };
    let code = match job.work.run(&run_dir, &sink, None) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: trial {}: {e}", job.work.trial);
            return EXIT_FAILED;
        }
    };
    if code == EXIT_ORPHANED {
        match &slurm_job {
            Some(id) => {
                let ok = std::process::Command::new("scontrol")
                    .args(["requeue", id])
                    .status()
                    .is_ok_and(|s| s.success());
                eprintln!(
                    "stopped by a signal at the last finished epoch; {}",
                    if ok {
                        "requeued: the job resumes from its checkpoint"
                    } else {
                        "could not requeue (a cancelled job, or no scontrol): the driver decides"
                    }
                );
            }
            None => eprintln!("stopped by a signal at the last finished epoch"),
        }
    }
    code
}

/// The driver's side: reads what a job wrote into `run_dir` for `attempt` of `trial` into the
/// store: the epochs its state has committed, and with `result`, its result when the attempt
/// has ended. Returns whether a result was read.
pub(crate) fn ingest(
    store: &Store,
    trial: TrialId,
    run_dir: &Path,
    attempt: u32,
    result: bool,
) -> Result<bool, StoreError> {
    let result: Option<JobResult> = match result {
        true => checkpoint::read_json(&run_dir.join(RESULT_FILE))
            .ok()
            .filter(|r: &JobResult| r.trial == trial && r.attempt == attempt),
        false => None,
    };
    if result.as_ref().is_some_and(|r| r.restarted) {
        let batch = store.trial(trial)?.batch_size;
        store.reset_trial(trial, batch)?;
    }
    if let Some(s) = read_state(run_dir) {
        for m in checkpoint::read_metrics(run_dir)
            .iter()
            .filter(|m| m.epoch < s.epochs_done)
        {
            store.record_epoch(&epoch_row(trial, m))?;
        }
    }
    let Some(r) = result else {
        return Ok(false);
    };
    for e in &r.events {
        store.event(Some(trial), e)?;
    }
    if let (Some(p), Some(m)) = (r.parameters, r.multiply_adds) {
        store.set_size(trial, p, m)?;
    }
    let status = TrialStatus::parse(&r.status).unwrap_or(TrialStatus::Failed);
    let error = match TrialStatus::parse(&r.status) {
        Some(_) => r.error.clone(),
        None => Some(format!("the job wrote an unknown status `{}`", r.status)),
    };
    store.finish_trial(trial, status, error.as_deref(), r.wall)?;
    Ok(true)
}
