//! The search driver: `optarch search CONFIG` and `optarch search --resume DIR`.
//!
//! * [`setup`]: the search directory, made or opened again, the data prepared once, and the
//!   trials a killed driver left running;
//! * [`plan`]: the three phases (search, baseline, finalists), each derived from the store's
//!   state, never from the driver's memory, so a killed driver resumes exactly where it stood;
//!   and what to make of a trial process that ended;
//! * [`display`]: bars or lines;
//! * here: the event loop (reap ended trials, start trials in free slots, draw) and the
//!   accounting of the workers' time ([`Outcome`]).
//!
//! Faults: a trial that reports `diverged` stays so; `oom` is retried once with half the batch;
//! a process that dies without reporting is retried up to `max_attempts` times, then `failed`.

mod display;
mod lock;
mod plan;
mod setup;

pub use lock::Holder;
pub use setup::{Preview, PreviewCandidate, MATCHED};

/// The batch scripts a search would submit (`optarch search --dry-run`), making nothing.
pub fn dry_run(
    config: &Path,
    out: Option<&Path>,
    executor: &super::config::ExecutorOverrides,
) -> Result<String, SearchError> {
    setup::dry_run(config, out, executor)
}

/// Checks a search configuration and builds its pool, making nothing (`optarch search
/// --check`).
pub fn preview(config: &Path) -> Result<Preview, SearchError> {
    setup::preview(config)
}

use super::config::{ConfigError, ExecutorKind};
use super::executor::{self, Executor, Local, Slurm, Started};
use super::ids::{ExperimentId, TrialId};
use super::rank;
use super::store::TrialStatus;
use super::store::{Store, StoreError};
use super::trial;
use display::{estimate, Display, Names};
use optarch_core::device::DeviceChoice;
use plan::{Next, Planner, State};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Pool(#[from] super::pool::PoolError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Setup(#[from] crate::train::SetupError),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode the search configuration: {0}")]
    Encode(#[source] serde_json::Error),
    #[error(
        "{} already holds a search: continue it with `optarch search --resume {}`, or pick \
         another --out",
        .0.display(),
        .0.display()
    )]
    Exists(PathBuf),
    #[error(
        "{} is in use by another `optarch search` ({}): one driver per search directory; wait \
         for it to end, or stop it (Ctrl-C, or kill the process), then use --resume",
        .dir.display(),
        .holder.as_ref().map_or_else(|| "a process that has not said who it is".to_string(), ToString::to_string)
    )]
    Locked {
        dir: PathBuf,
        holder: Option<Holder>,
    },
    #[error(
        "{} holds no search (no search.db): {}",
        .dir.display(),
        if *.training_run {
            format!("it holds a training run; continue it with `optarch train --resume {}`", .dir.display())
        } else {
            format!("start one there with `optarch search CONFIG --out {}`", .dir.display())
        }
    )]
    NotASearch { dir: PathBuf, training_run: bool },
    #[error(
        "{} exists and holds something other than a search: pick another --out, or remove it",
        .0.display()
    )]
    NotEmpty(PathBuf),
    #[error(transparent)]
    Checkpoint(#[from] crate::train::CheckpointError),
    #[error(
        "give a search configuration (optarch search specs/search/quick.yaml) or --resume DIR"
    )]
    NothingToRun,
    #[error(transparent)]
    Slots(#[from] executor::SlotError),
    #[error(transparent)]
    Slurm(#[from] executor::slurm::SlurmError),
}

type R<T> = Result<T, SearchError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SearchError + '_ {
    move |source| SearchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What `optarch search` was asked.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// A new search from this configuration...
    pub config: Option<PathBuf>,
    /// ...or the search in this directory, continued.
    pub resume: Option<PathBuf>,
    /// Where a new search lives (default `runs/search/<name>`).
    pub out: Option<PathBuf>,
    /// Override of `execution.workers`.
    pub workers: Option<usize>,
    /// Override of `train.run.device`.
    pub device: Option<DeviceChoice>,
    /// Override of `train.data.path`.
    pub data: Option<PathBuf>,
    /// The `optarch` executable that runs trials (default: this one).
    pub exe: Option<PathBuf>,
    /// With `resume`: queue the failed and out-of-memory trials again.
    pub retry_failed: bool,
    /// Overrides of `executor:` (stored with a new search; a resumed one applies them again).
    pub executor: super::config::ExecutorOverrides,
    /// Stop (resumable) once this many trial attempts have been started: for tests.
    pub stop_after_launches: Option<usize>,
}

/// Trials that ended without a result for one cause.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FailureGroup {
    /// `failed` or `oom`.
    pub status: String,
    /// The error, with each trial's own directory written `<trial>`.
    pub cause: String,
    pub trials: usize,
}

/// How a search ended.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Outcome {
    pub dir: PathBuf,
    /// `done` or `interrupted`.
    pub status: String,
    pub wall_seconds: f64,
    pub slots: usize,
    /// Seconds the trials spent in training and evaluation epochs.
    pub train_seconds: f64,
    /// Seconds the trial processes ran.
    pub trial_seconds: f64,
    /// 1 − train / (slots × wall): the share of the workers' time not spent training.
    pub overhead: f64,
    /// Slot-seconds in which a slot was free and no trial could run: waiting for a rung's last
    /// results, or for the last trials of the search. Measured for a search run in one go
    /// (`None` after a resume: the killed run's waiting is not known).
    pub waiting_seconds: Option<f64>,
    /// `waiting_seconds` / (slots × wall): the part of the overhead that is waiting for work;
    /// the rest is the search's own cost (process starts, set-up, scheduling).
    pub waiting_share: Option<f64>,
    pub trials: usize,
    pub epochs: usize,
    /// The trials that failed or ran out of memory, grouped by cause, largest group first.
    pub failed: Vec<FailureGroup>,
    /// The winning candidate's name (none when no trial finished an epoch).
    pub winner: Option<String>,
}

/// The Ctrl-C (and SIGTERM) flag, installed once per process.
fn interrupted() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        // Without a handler (another library installed one), Ctrl-C ends the process and the
        // search is still resumable, just less tidily.
        let _ = ctrlc::set_handler(move || f.store(true, Ordering::SeqCst));
        flag
    })
    .clone()
}

/// Slot-seconds with no trial to run: since when each free slot has had none.
#[derive(Default)]
struct Waiting {
    seconds: f64,
    since: BTreeMap<usize, Instant>,
}

impl Waiting {
    fn idle(&mut self, slot: usize) {
        self.since.entry(slot).or_insert_with(Instant::now);
    }

    fn busy(&mut self, slot: usize) {
        if let Some(t) = self.since.remove(&slot) {
            self.seconds += t.elapsed().as_secs_f64();
        }
    }

    fn total(mut self) -> f64 {
        let slots: Vec<usize> = self.since.keys().copied().collect();
        for s in slots {
            self.busy(s);
        }
        self.seconds
    }
}

/// The event loop of one driver run.
struct Loop<'a> {
    planner: Planner<'a>,
    ex: Box<dyn Executor>,
    names: Names,
    display: Display,
    dir_abs: PathBuf,
    stop_after: Option<usize>,
    launches: usize,
    waiting: Waiting,
    /// When the cluster jobs' progress was last read back.
    ingested: Instant,
}

impl Loop<'_> {
    fn store(&self) -> &Store {
        self.planner.store
    }

    /// Records the trials whose processes ended.
    fn reap(&mut self) -> R<bool> {
        let ended = self.ex.poll();
        for e in &ended {
            self.collect(e)?;
            self.planner.ended(e, false)?;
            let t = self.store().trial(e.trial)?;
            self.display.line(&self.names.ended(&t));
        }
        Ok(!ended.is_empty())
    }

    /// A cluster job's files, read into the store (the driver is its only writer): the
    /// epochs it finished and, once it ended, its result.
    fn collect(&self, e: &executor::Ended) -> R<()> {
        if let Some((attempt, run_dir)) = &e.files {
            trial::ingest(self.store(), e.trial, run_dir, *attempt, true)?;
        }
        Ok(())
    }

    /// The running cluster jobs' finished epochs, read into the store every few seconds (for
    /// the progress display, and so that a killed driver loses nothing).
    fn ingest_running(&mut self) -> R<()> {
        if self.ingested.elapsed() < Duration::from_secs(2) {
            return Ok(());
        }
        self.ingested = Instant::now();
        for t in self.ex.busy().into_values() {
            if let Some((_, attempt, run_dir)) = self.ex.job_of(t) {
                trial::ingest(self.store(), t, &run_dir, attempt, false)?;
            }
        }
        Ok(())
    }

    /// Starts trials in the free slots; `true` when the search is over.
    fn fill(&mut self) -> R<bool> {
        let busy = self.ex.busy();
        let free: Vec<usize> = (0..self.ex.slots())
            .filter(|s| !busy.contains_key(s))
            .collect();
        let mut finished = false;
        for (i, &slot) in free.iter().enumerate() {
            if self.stop_after.is_some_and(|n| self.launches >= n) {
                break;
            }
            let held: Vec<TrialId> = self.ex.busy().into_values().collect();
            let id = match self.planner.next(&held)? {
                Next::Start(id) => id,
                other => {
                    finished = other == Next::Finished;
                    // No trial can run now: the free slots left wait for work (a rung's last
                    // results, the end of the search), not for the search's machinery.
                    for &s in free.iter().skip(i) {
                        self.waiting.idle(s);
                    }
                    break;
                }
            };
            self.waiting.busy(slot);
            self.launch(slot, id)?;
        }
        for n in self.ex.notes() {
            self.store().event(None, &n)?;
            self.display.line(&n);
        }
        Ok(finished && self.ex.busy().is_empty())
    }

    fn launch(&mut self, slot: usize, id: TrialId) -> R<()> {
        self.store().start_trial(id, &self.ex.device(slot))?;
        let t = self.store().trial(id)?;
        let cand = self.store().candidate(t.candidate)?;
        let cfg = self.planner.cfg;
        let job = trial::JobFile {
            attempt: t.attempts,
            work: trial::Attempt {
                trial: id,
                budget: t.budget,
                batch_size: t.batch_size,
                configured_batch: cfg.train.optim.batch_size,
                crashes: t.crashes,
                run: trial::run_config(cfg, &cand, &t, &self.dir_abs, cfg.train.run.device),
            },
        };
        let run_dir = self.dir_abs.join(&t.dir);
        match self.ex.launch(slot, &job, &run_dir).map_err(io(&run_dir))? {
            Started::Process(pid) => self.store().set_pid(id, pid)?,
            Started::Job(j) => {
                self.store().set_job(id, &j)?;
                self.store().event(
                    Some(id),
                    &format!("submitted as Slurm job {j} (attempt {})", t.attempts),
                )?;
            }
        }
        self.launches += 1;
        Ok(())
    }

    fn draw(&mut self) -> R<()> {
        let state = State::read(self.store())?;
        let epochs: u64 = state.trials.iter().map(|t| t.epochs_done as u64).sum();
        let best = self.names.best(&state, &self.planner.rungs);
        let busy = self.names.busy(&state, &self.ex.busy());
        self.display.update(epochs, &best, &busy);
        Ok(())
    }

    /// Runs until the search is over (`done`) or stopped (`interrupted`).
    fn run(&mut self, flag: &AtomicBool, dir: &Path) -> R<&'static str> {
        // The store is read to plan only when a trial process has ended (or once a second, as
        // the epochs the baseline may spend grow), and to draw twice a second: the loop itself
        // polls the processes every 50 ms.
        let mut changed = true;
        let (mut planned, mut drawn) = (Instant::now(), Instant::now());
        loop {
            let stop =
                flag.load(Ordering::SeqCst) || self.stop_after.is_some_and(|n| self.launches >= n);
            changed |= self.reap()?;
            self.ingest_running()?;
            if stop {
                for e in self.ex.stop_all() {
                    self.collect(&e)?;
                    self.planner.ended(&e, true)?;
                }
                self.display.line(&format!(
                    "stopped: continue with `optarch search --resume {}`",
                    dir.display()
                ));
                return Ok("interrupted");
            }
            if !changed && planned.elapsed() < Duration::from_secs(1) {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            changed = false;
            planned = Instant::now();
            if self.fill()? {
                return Ok("done");
            }
            if drawn.elapsed() >= Duration::from_millis(500) {
                drawn = Instant::now();
                self.draw()?;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The workers' time over a whole search, its failures and its winner, from the store.
fn outcome(
    store: &Store,
    exp: ExperimentId,
    dir: &Path,
    status: &str,
    slots: usize,
    waiting: Option<f64>,
    rungs: &[usize],
) -> R<Outcome> {
    let trials = store.trials()?;
    let train_seconds: f64 = trials.iter().map(|t| t.train_seconds).sum();
    let trial_seconds: f64 = trials.iter().map(|t| t.wall_seconds).sum();
    let wall = store
        .experiment()?
        .filter(|e| e.id == exp)
        .map(|e| e.wall_seconds)
        .unwrap_or(0.0);
    let capacity = (slots as f64 * wall).max(1e-9);
    let mut groups: BTreeMap<(String, String), usize> = BTreeMap::new();
    for t in trials
        .iter()
        .filter(|t| matches!(t.status, TrialStatus::Failed | TrialStatus::Oom))
    {
        let cause = t
            .error
            .as_deref()
            .unwrap_or("no message")
            .replace(&t.dir, "<trial>");
        *groups
            .entry((t.status.as_str().to_string(), cause))
            .or_default() += 1;
    }
    let mut failed: Vec<FailureGroup> = groups
        .into_iter()
        .map(|((status, cause), trials)| FailureGroup {
            status,
            cause,
            trials,
        })
        .collect();
    failed.sort_by_key(|g| std::cmp::Reverse(g.trials));
    let pool = store.candidates()?;
    let ids: Vec<_> = pool.iter().map(|c| c.id).collect();
    let winner = rank::winner(&store.all_epochs()?, rungs, &ids, &trials)
        .and_then(|(c, _)| pool.iter().find(|p| p.id == c))
        .map(|c| c.name.clone());
    Ok(Outcome {
        dir: dir.to_path_buf(),
        status: status.into(),
        wall_seconds: wall,
        slots,
        train_seconds,
        trial_seconds,
        overhead: 1.0 - train_seconds / capacity,
        waiting_seconds: waiting,
        waiting_share: waiting.map(|w| w / capacity),
        trials: trials.len(),
        epochs: trials.iter().map(|t| t.epochs_done).sum(),
        failed,
        winner,
    })
}

/// Before a new Slurm search is made: checks through a job that the folder its trials will
/// live in is shared with the nodes, and that the nodes run the `optarch` the jobs will.
fn probe(config: &Path, opts: &Options) -> R<()> {
    let cfg = setup::configured(config, opts.data.as_deref(), &opts.executor)?;
    if cfg.executor.kind != ExecutorKind::Slurm {
        return Ok(());
    }
    let folder = match &cfg.executor.shared_dir {
        Some(s) => s.clone(),
        None => {
            let dir = setup::search_dir(&cfg, opts.out.as_deref());
            match dir.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            }
        }
    };
    std::fs::create_dir_all(&folder).map_err(io(&folder))?;
    let folder = std::fs::canonicalize(&folder).map_err(io(&folder))?;
    let exe = match &opts.exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().map_err(io(Path::new("optarch")))?,
    };
    let optarch = cfg.executor.optarch.clone().unwrap_or(exe);
    Slurm::new(&cfg, optarch).probe(&folder)?;
    Ok(())
}

/// Runs (or resumes) a search to its end, or until interrupted.
pub fn run(opts: &Options) -> R<Outcome> {
    let started = Instant::now();
    // Ctrl-C is caught from here on: a search being made is finished (that is quick and
    // atomic), then the loop stops at once, resumable.
    let flag = interrupted();
    flag.store(false, Ordering::SeqCst);
    // The directory's lock is held until this function returns.
    let (
        setup::Opened {
            dir,
            store,
            mut cfg,
            exp,
        },
        _lock,
    ) = match (&opts.config, &opts.resume) {
        (_, Some(d)) => {
            let lock = setup::lock_existing(d)?;
            (setup::reopen(d)?, lock)
        }
        (Some(c), None) => {
            probe(c, opts)?;
            setup::create(c, opts.out.as_deref(), opts.data.as_deref(), &opts.executor)?
        }
        (None, None) => return Err(SearchError::NothingToRun),
    };
    if let Some(w) = opts.workers {
        cfg.execution.workers = w.max(1);
    }
    if let Some(d) = opts.device {
        cfg.train.run.device = d;
    }
    if opts.resume.is_some() {
        opts.executor.apply(&mut cfg)?;
    }
    let dir_abs = std::fs::canonicalize(&dir).map_err(io(&dir))?;
    let exe = match &opts.exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().map_err(io(Path::new("optarch")))?,
    };
    // The executor first: a resumed search re-attaches to the cluster jobs it left running.
    let mut ex: Box<dyn Executor> = match cfg.executor.kind {
        ExecutorKind::Local => {
            let slots = executor::local_slots(&cfg)?;
            let threads = executor::threads_per_trial(&cfg, slots.len());
            // The trial servers load libtorch while the data is prepared.
            Box::new(Local::new(
                exe,
                dir_abs.clone(),
                slots,
                threads,
                cfg.execution.fork_server,
            ))
        }
        ExecutorKind::Slurm => {
            executor::slurm::link_shared(&cfg, &dir_abs).map_err(io(&dir_abs))?;
            let optarch = cfg.executor.optarch.clone().unwrap_or(exe);
            Box::new(Slurm::new(&cfg, optarch))
        }
    };
    if opts.resume.is_some() {
        if let Some(d) = &opts.data {
            cfg.train.data.path = Some(d.clone());
        }
        setup::recover(&store, &dir_abs, ex.as_mut())?;
        if opts.retry_failed {
            let n = setup::retry_failed(&store)?;
            let note = match n {
                0 => "--retry-failed: no trial had failed; nothing to retry".to_string(),
                n => format!("--retry-failed: {n} trial(s) queued again"),
            };
            eprintln!("{note}");
            store.event(None, &note)?;
        }
    }
    setup::prepare_data(&cfg, &dir)?;
    let pool = store.candidates()?;
    let names = Names(pool.iter().map(|c| (c.id, c.name.clone())).collect());
    let planner = Planner {
        cfg: &cfg,
        store: &store,
        exp,
        pool: &pool,
        rungs: cfg.budget.rungs(),
    };
    let display = Display::new(ex.slots(), estimate(&cfg, &planner.rungs, pool.len()));
    display.line(&format!(
        "search {} in {}: {} candidates, rungs {:?} epochs, {} slot(s) on {}",
        cfg.name,
        dir.display(),
        pool.len(),
        planner.rungs,
        ex.slots(),
        ex.device(0)
    ));
    // A candidate merged into another with the same topology is said, not dropped silently.
    if opts.config.is_some() {
        for (_, _, m) in store.events()? {
            if m.starts_with("merged ") {
                display.line(&m);
            }
        }
    }
    let mut event_loop = Loop {
        planner,
        ex,
        names,
        display,
        dir_abs,
        stop_after: opts.stop_after_launches,
        launches: 0,
        waiting: Waiting::default(),
        ingested: Instant::now(),
    };
    let status = event_loop.run(&flag, &dir)?;
    event_loop.display.finish();
    let slots = event_loop.ex.slots();
    let waiting = event_loop.waiting.total();
    store.set_experiment_status(exp, status, started.elapsed().as_secs_f64())?;
    let outcome = outcome(
        &store,
        exp,
        &dir,
        status,
        slots,
        opts.resume.is_none().then_some(waiting),
        &event_loop.planner.rungs,
    )?;
    let text = serde_json::to_string_pretty(&outcome).map_err(SearchError::Encode)?;
    crate::train::checkpoint::write_atomic(&dir.join("outcome.json"), text.as_bytes())?;
    Ok(outcome)
}
