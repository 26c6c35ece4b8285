//! The search driver: `optarch search CONFIG` and `optarch search --resume DIR`.
//!
//! Three phases, each derived from the store's state (never from the driver's memory, so a
//! killed driver resumes exactly where it stood):
//!
//! 1. **search**: the strategy proposes candidates at the first rung and successive halving
//!    promotes the best;
//! 2. **baseline**: random search at equal budget: candidates drawn at random and trained at the
//!    full budget until they have used as many epochs as phase 1 did;
//! 3. **final**: the top-k candidates of phase 1 re-trained at the full budget with `seeds`
//!    seeds each.
//!
//! Faults: a trial that reports `diverged` stays so; `oom` is retried once with half the batch;
//! a process that dies without reporting is retried up to `max_attempts` times, then `failed`.

use super::asha::{self, Decision, View};
use super::candidates;
use super::config::{self, Scheduler, SearchConfig, StrategyKind};
use super::executor::{self, Ended, Executor, Local};
use super::store::{NewCandidate, NewTrial, Phase, Store, Trial, TrialStatus};
use super::strategy::{Member, Past, Strategy};
use super::trial;
use crate::data::rng::derive_seed;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Why a search failed.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Config(#[from] config::ConfigError),
    #[error("{0}")]
    Pool(#[from] candidates::PoolError),
    #[error("{0}")]
    Store(#[from] super::store::StoreError),
    #[error("{0}")]
    Train(#[from] crate::train::TrainError),
    #[error("{0}")]
    Spec(#[from] optarch_core::error::SpecError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
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
    /// Override of `execution.device`.
    pub device: Option<String>,
    /// Override of `data.path`.
    pub data: Option<PathBuf>,
    /// The `optarch` executable that runs trials (default: this one).
    pub exe: Option<PathBuf>,
    /// Stop (resumable) once this many trial attempts have been started: for tests.
    pub stop_after_launches: Option<usize>,
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

/// A pool member with its store id.
struct Entry {
    candidate: i64,
    name: String,
    member: Member,
}

fn load_pool(store: &Store) -> R<Vec<Entry>> {
    let names: HashMap<i64, String> = store
        .candidates()?
        .into_iter()
        .map(|c| (c.id, c.row.name))
        .collect();
    Ok(store
        .pool()?
        .into_iter()
        .map(|(candidate, family, features)| Entry {
            candidate,
            name: names.get(&candidate).cloned().unwrap_or_default(),
            member: Member { family, features },
        })
        .collect())
}

/// Writes the data subset every trial reads into `DIR/data` (CIFAR-10 only): one gzip and tar
/// pass for the whole search instead of one per trial.
fn prepare_data(cfg: &SearchConfig, dir: &Path) -> R<()> {
    if cfg.data.dataset != "cifar10" || trial::prepared_data(dir).is_some() {
        return Ok(());
    }
    let tcfg = crate::train::TrainConfig {
        dataset: cfg.data.dataset.clone(),
        data_path: cfg.data.path.clone(),
        download: cfg.data.download,
        train_subset: cfg.data.train_subset,
        test_subset: cfg.data.test_subset,
        val: 0,
        seed: cfg.seed,
        ..Default::default()
    };
    let (train, _, test) = crate::train::load_data(&tcfg)?;
    let out = trial::data_dir(dir);
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let per = train.image_bytes();
    let record = |ds: &crate::data::Dataset, i: usize| -> Vec<u8> {
        let mut r = Vec::with_capacity(per + 1);
        r.push(ds.labels.get(i).copied().unwrap_or(0) as u8);
        r.extend_from_slice(ds.images.get(i * per..(i + 1) * per).unwrap_or(&[]));
        r
    };
    let n = train.len();
    let chunk = n.div_ceil(5).max(1);
    for b in 0..5 {
        let p = out.join(format!("data_batch_{}.bin", b + 1));
        let bytes: Vec<u8> = (b * chunk..((b + 1) * chunk).min(n))
            .flat_map(|i| record(&train, i))
            .collect();
        std::fs::write(&p, bytes).map_err(io(&p))?;
    }
    let tmp = out.join("test_batch.bin.tmp");
    let bytes: Vec<u8> = (0..test.len()).flat_map(|i| record(&test, i)).collect();
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    let fin = out.join("test_batch.bin");
    std::fs::rename(&tmp, &fin).map_err(io(&fin))
}

fn create(opts: &Options, path: &Path) -> R<(PathBuf, Store, SearchConfig, i64)> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut cfg = config::parse(path, &text)?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    if let Some(d) = &opts.data {
        cfg.data.path = Some(d.clone());
    } else if let Some(p) = &cfg.data.path {
        cfg.data.path = Some(base.join(p));
    }
    let dir = opts
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs/search").join(&cfg.name));
    let db = dir.join("search.db");
    if db.exists() {
        return Err(SearchError::Other(format!(
            "{} already holds a search: continue it with `optarch search --resume {}`, or pick \
             another --out",
            dir.display(),
            dir.display()
        )));
    }
    let pool = candidates::build(&cfg, &base)?;
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let cpath = dir.join("config.yaml");
    std::fs::write(&cpath, &text).map_err(io(&cpath))?;
    let store = Store::open(&db)?;
    let json = serde_json::to_string(&cfg).map_err(|e| SearchError::Other(e.to_string()))?;
    let exp = store.create_experiment(&cfg.name, &text, &json)?;
    for (i, item) in pool.items.iter().enumerate() {
        let (id, _) = store.insert_candidate(
            exp,
            &NewCandidate {
                name: item.name.clone(),
                origin: item.origin.clone(),
                spec_yaml: item.spec_yaml.clone(),
                spec_hash: item.spec_hash.clone(),
                topo_hash: item.topo_hash.clone(),
                params_json: serde_json::to_string(&item.overrides)
                    .map_err(|e| SearchError::Other(e.to_string()))?,
                contraction: item.contraction,
                asymptotic: item.asymptotic,
            },
        )?;
        store.insert_pool_entry(id, i, &item.family, &item.features)?;
    }
    for d in &pool.pruned {
        store.event(None, &format!("pruned {}: {}", d.name, d.reason))?;
    }
    for d in &pool.duplicates {
        store.event(None, &format!("merged {}: {}", d.name, d.reason))?;
    }
    store.event(
        None,
        &format!(
            "pool: {} candidates ({} generated recurrences pruned, {} duplicate topologies merged)",
            pool.items.len(),
            pool.pruned.len(),
            pool.duplicates.len()
        ),
    )?;
    Ok((dir, store, cfg, exp))
}

fn reopen(dir: &Path) -> R<(PathBuf, Store, SearchConfig, i64)> {
    let store = Store::open_existing(&dir.join("search.db"))?;
    let exp = store.experiment()?.ok_or_else(|| {
        SearchError::Other(format!(
            "{}: the database holds no experiment; start the search again",
            dir.display()
        ))
    })?;
    let cfg: SearchConfig = serde_json::from_str(&exp.config_json)
        .map_err(|e| SearchError::Other(format!("{}: {e}", dir.display())))?;
    Ok((dir.to_path_buf(), store, cfg, exp.id))
}

/// True while process `pid` is a trial process of the search in `dir` (canonical).
fn trial_alive(pid: i64, dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    // A spawned trial runs `optarch ... trial --dir DIR ...`; a forked one keeps its server's
    // command line, `optarch ... trial-server --dir DIR`.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
        args.iter().any(|a| *a == b"trial" || *a == b"trial-server")
            && args.contains(&dir.as_os_str().as_bytes())
    })
}

/// Trials a killed driver left `running`: wait for their processes (which notice that the
/// driver is gone within one batch), then queue them again.
fn recover(store: &Store, dir: &Path) -> R<()> {
    for t in store.trials()? {
        if t.status != TrialStatus::Running {
            continue;
        }
        if let Some(pid) = t.pid {
            let t0 = Instant::now();
            while trial_alive(pid, dir) && t0.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(100));
            }
            if trial_alive(pid, dir) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
        store.requeue(t.id, Some("the driver stopped while it ran"), true)?;
        store.event(Some(t.id), "requeued after the driver stopped")?;
    }
    Ok(())
}

/// The search's state, as the phases see it.
struct State {
    trials: Vec<Trial>,
    scores: HashMap<i64, Vec<(usize, f64)>>,
}

impl State {
    fn read(store: &Store) -> R<State> {
        Ok(State {
            trials: store.trials()?,
            scores: store.scores()?,
        })
    }

    fn score_at(&self, trial: i64, epochs: usize) -> Option<f64> {
        self.scores
            .get(&trial)?
            .iter()
            .find(|(e, _)| e + 1 == epochs)
            .map(|(_, s)| *s)
    }

    fn view(&self, t: &Trial, rungs: &[usize]) -> View {
        View {
            id: t.id,
            rung: t.rung,
            status: t.status,
            scores: rungs.iter().map(|&b| self.score_at(t.id, b)).collect(),
        }
    }

    fn phase(&self, p: Phase) -> impl Iterator<Item = &Trial> {
        self.trials.iter().filter(move |t| t.phase == p)
    }
}

/// The search ranking of candidates: (highest rung reached with a score, score there), best
/// first; one entry per candidate (its best search trial).
fn ranking(state: &State, rungs: &[usize]) -> Vec<(i64, usize, f64)> {
    let mut best: BTreeMap<i64, (usize, f64)> = BTreeMap::new();
    for t in state.phase(Phase::Search) {
        let v = state.view(t, rungs);
        if let Some((k, s)) = v
            .scores
            .iter()
            .enumerate()
            .rev()
            .find_map(|(k, s)| s.map(|s| (k, s)))
        {
            let e = best.entry(t.candidate).or_insert((k, s));
            if (k, s) > *e {
                *e = (k, s);
            }
        }
    }
    let mut v: Vec<(i64, usize, f64)> = best.into_iter().map(|(c, (k, s))| (c, k, s)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.total_cmp(&a.2)).then(a.0.cmp(&b.0)));
    v
}

struct Driver<'a> {
    cfg: &'a SearchConfig,
    store: &'a Store,
    exp: i64,
    pool: &'a [Entry],
    rungs: Vec<usize>,
}

impl Driver<'_> {
    fn max_budget(&self) -> usize {
        self.cfg.budget.max_epochs
    }

    fn new_trial(&self, candidate: i64, phase: Phase, seed: u64, rung_budget: usize) -> R<i64> {
        Ok(self.store.insert_trial(
            self.exp,
            &NewTrial {
                candidate,
                phase,
                seed,
                budget: rung_budget,
                max_budget: self.max_budget(),
                rung: 0,
                batch_size: self.cfg.trainer.batch_size,
            },
        )?)
    }

    fn members(&self) -> Vec<Member> {
        self.pool.iter().map(|e| e.member.clone()).collect()
    }

    fn index_of(&self, candidate: i64) -> Option<usize> {
        self.pool.iter().position(|e| e.candidate == candidate)
    }

    /// The next trial to start, creating it if needed; `None` when nothing can start now, with
    /// `finished` set when every phase is over. `held` are the trials whose processes the
    /// executor still holds.
    fn next(&self, finished: &mut bool, held: &[i64]) -> R<Option<i64>> {
        *finished = false;
        let mut state = State::read(self.store)?;
        // A trial whose process has not been reaped yet is running, whatever it wrote last:
        // it must not be promoted or started twice before the driver has seen it end.
        for t in state.trials.iter_mut() {
            if held.contains(&t.id) {
                t.status = TrialStatus::Running;
            }
        }
        if let Some(t) = state
            .trials
            .iter()
            .find(|t| t.status == TrialStatus::Pending)
        {
            return Ok(Some(t.id));
        }
        // Phase 1: the strategy under successive halving.
        let search: Vec<&Trial> = state.phase(Phase::Search).collect();
        let history: Vec<Past> = search
            .iter()
            .filter_map(|t| {
                Some(Past {
                    index: self.index_of(t.candidate)?,
                    score: state.score_at(t.id, self.rungs.first().copied().unwrap_or(1)),
                })
            })
            .collect();
        let strategy = Strategy {
            kind: self.cfg.strategy.kind,
            population: self.cfg.strategy.population,
            sample: self.cfg.strategy.sample,
            seed: self.cfg.seed,
        };
        let members = self.members();
        let proposal = if search.len() < self.cfg.budget.trials {
            strategy.next(&members, &history)
        } else {
            None
        };
        let views: Vec<View> = search.iter().map(|t| state.view(t, &self.rungs)).collect();
        let sync = self.cfg.budget.scheduler == Scheduler::Sha;
        match asha::decide(
            &self.rungs,
            self.cfg.budget.eta,
            &views,
            proposal.is_some(),
            sync,
        ) {
            Decision::Promote { id, rung } => {
                let budget = self.rungs.get(rung).copied().unwrap_or(self.max_budget());
                self.store.promote(id, rung, budget)?;
                self.store.event(
                    Some(id),
                    &format!("promoted to rung {rung} ({budget} epochs)"),
                )?;
                return Ok(Some(id));
            }
            Decision::Propose => {
                let Some(i) = proposal else { return Ok(None) };
                let Some(e) = self.pool.get(i) else {
                    return Ok(None);
                };
                let b0 = self.rungs.first().copied().unwrap_or(self.max_budget());
                return self
                    .new_trial(e.candidate, Phase::Search, self.cfg.seed, b0)
                    .map(Some);
            }
            // A slot the search cannot use yet takes a baseline trial, as long as the baseline
            // stays within what the search has already spent (which only grows).
            Decision::Wait => return self.baseline(&state, &members),
            Decision::Finished => {}
        }
        // Phase 2: random search at equal budget.
        if let Some(id) = self.baseline(&state, &members)? {
            return Ok(Some(id));
        }
        // Phase 3: finalists with several seeds.
        let finals: Vec<&Trial> = state.phase(Phase::Final).collect();
        for (c, _, _) in ranking(&state, &self.rungs)
            .into_iter()
            .take(self.cfg.finalists.top_k)
        {
            for s in 1..=self.cfg.finalists.seeds as u64 {
                let seed = self.cfg.seed + s;
                if !finals.iter().any(|t| t.candidate == c && t.seed == seed) {
                    return self
                        .new_trial(c, Phase::Final, seed, self.max_budget())
                        .map(Some);
                }
            }
        }
        // The baseline and the finalists run side by side; the search ends when both are in.
        if state
            .trials
            .iter()
            .any(|t| matches!(t.status, TrialStatus::Pending | TrialStatus::Running))
        {
            return Ok(None);
        }
        *finished = true;
        Ok(None)
    }

    /// A new baseline trial while the baseline has spent less than the search so far: as many
    /// full-budget random trials as the search's epochs buy.
    fn baseline(&self, state: &State, members: &[Member]) -> R<Option<i64>> {
        if !self.cfg.baseline {
            return Ok(None);
        }
        let used: usize = state.phase(Phase::Search).map(|t| t.epochs_done).sum();
        let target = (used as f64 / self.max_budget() as f64).round().max(1.0) as usize;
        let base: Vec<&Trial> = state.phase(Phase::Baseline).collect();
        if base.len() >= target.min(self.pool.len()) {
            return Ok(None);
        }
        let random = Strategy {
            kind: StrategyKind::Random,
            population: 0,
            sample: 0,
            seed: derive_seed(&[self.cfg.seed, 0xBA5E]),
        };
        let hist: Vec<Past> = base
            .iter()
            .filter_map(|t| {
                Some(Past {
                    index: self.index_of(t.candidate)?,
                    score: None,
                })
            })
            .collect();
        match random.next(members, &hist).and_then(|i| self.pool.get(i)) {
            Some(e) => self
                .new_trial(
                    e.candidate,
                    Phase::Baseline,
                    self.cfg.seed,
                    self.max_budget(),
                )
                .map(Some),
            None => Ok(None),
        }
    }

    /// Records how a trial process ended.
    fn ended(&self, e: &Ended, stopping: bool) -> R<()> {
        let t = self.store.trial(e.trial)?;
        match t.status {
            TrialStatus::Running if stopping => {
                self.store
                    .requeue(t.id, Some("stopped by an interrupt"), true)?;
            }
            TrialStatus::Running => {
                let how = match e.code {
                    Some(c) => format!("exit status {c}"),
                    None => "a signal".to_string(),
                };
                if e.code == Some(trial::EXIT_ORPHANED) {
                    self.store.requeue(t.id, None, true)?;
                } else if t.crashes + 1 < self.cfg.execution.max_attempts {
                    self.store.requeue(
                        t.id,
                        Some(&format!("the trial process ended with {how}")),
                        false,
                    )?;
                    self.store.event(
                        Some(t.id),
                        &format!(
                            "crashed ({how}), attempt {} of {}: retrying",
                            t.attempts, self.cfg.execution.max_attempts
                        ),
                    )?;
                } else {
                    let msg = format!(
                        "the trial process ended with {how} on each of {} attempts (see {}/log.txt)",
                        t.crashes + 1,
                        t.dir
                    );
                    self.store
                        .finish_trial(t.id, TrialStatus::Failed, Some(&msg), 0.0)?;
                    self.store.event(Some(t.id), &format!("failed: {msg}"))?;
                }
            }
            TrialStatus::Oom => {
                if t.batch_size == self.cfg.trainer.batch_size && t.batch_size > 1 {
                    let half = t.batch_size / 2;
                    self.store.reset_trial(t.id, half)?;
                    self.store.event(
                        Some(t.id),
                        &format!(
                            "out of memory at batch {}: retrying with {half}",
                            t.batch_size
                        ),
                    )?;
                } else {
                    self.store
                        .event(Some(t.id), "out of memory again: the trial stays oom")?;
                }
            }
            TrialStatus::Diverged => {
                self.store
                    .event(Some(t.id), "diverged (NaN or infinite loss)")?;
            }
            TrialStatus::Failed => {
                self.store.event(
                    Some(t.id),
                    &format!("failed: {}", t.error.as_deref().unwrap_or("unknown error")),
                )?;
            }
            TrialStatus::Done | TrialStatus::Pending => {}
        }
        Ok(())
    }
}

/// The display: bars on a terminal, lines otherwise.
struct Display {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    workers: Vec<ProgressBar>,
    total: u64,
}

impl Display {
    fn new(slots: usize, total: u64) -> Display {
        if !std::io::stderr().is_terminal() {
            return Display {
                multi: None,
                overall: None,
                workers: Vec::new(),
                total,
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{bar:30.cyan/blue}] {pos}/{len} epochs {elapsed_precise} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let overall = multi.add(
            ProgressBar::new(total)
                .with_style(style)
                .with_prefix("search"),
        );
        let wstyle = ProgressStyle::with_template("{prefix:>8} {spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let workers = (0..slots)
            .map(|i| {
                multi.add(
                    ProgressBar::new_spinner()
                        .with_style(wstyle.clone())
                        .with_prefix(format!("worker {i}")),
                )
            })
            .collect();
        Display {
            multi: Some(multi),
            overall: Some(overall),
            workers,
            total,
        }
    }

    fn line(&self, msg: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }

    fn update(&mut self, epochs: u64, best: &str, busy: &[(usize, String)]) {
        if let Some(o) = &self.overall {
            if epochs > self.total {
                self.total = epochs;
                o.set_length(epochs);
            }
            o.set_position(epochs);
            o.set_message(best.to_string());
        }
        for (i, w) in self.workers.iter().enumerate() {
            match busy.iter().find(|(s, _)| *s == i) {
                Some((_, m)) => {
                    w.set_message(m.clone());
                    w.tick();
                }
                None => w.set_message("idle"),
            }
        }
    }

    fn finish(&self) {
        for w in &self.workers {
            w.finish_and_clear();
        }
        if let Some(o) = &self.overall {
            o.finish();
        }
    }
}

/// Epochs a search will train, roughly: the rungs' shares, the baseline, the finalists.
fn estimate(cfg: &SearchConfig, rungs: &[usize], pool: usize) -> u64 {
    let n = cfg.budget.trials.min(pool) as f64;
    let eta = cfg.budget.eta.max(2) as f64;
    let mut prev = 0usize;
    let mut search = 0.0;
    for (k, &b) in rungs.iter().enumerate() {
        search += (n / eta.powi(k as i32)).max(1.0).floor() * (b - prev) as f64;
        prev = b;
    }
    let base = if cfg.baseline { search } else { 0.0 };
    let finals = (cfg.finalists.top_k * cfg.finalists.seeds * cfg.budget.max_epochs) as f64;
    (search + base + finals) as u64
}

/// Runs (or resumes) a search to its end, or until interrupted.
pub fn run(opts: &Options) -> R<Outcome> {
    let started = Instant::now();
    let (dir, store, mut cfg, exp) = match (&opts.config, &opts.resume) {
        (_, Some(d)) => reopen(d)?,
        (Some(c), None) => create(opts, c)?,
        (None, None) => {
            return Err(SearchError::Other(
                "give a search configuration (optarch search specs/search/quick.yaml) or \
                 --resume DIR"
                    .into(),
            ))
        }
    };
    if let Some(w) = opts.workers {
        cfg.execution.workers = w.max(1);
    }
    if let Some(d) = &opts.device {
        cfg.execution.device = d.clone();
    }
    if opts.resume.is_some() {
        if let Some(d) = &opts.data {
            cfg.data.path = Some(d.clone());
        }
        recover(&store, &std::fs::canonicalize(&dir).map_err(io(&dir))?)?;
    }
    let gpus = if cfg.execution.device == "cpu" {
        0
    } else {
        usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
    };
    let slots = executor::slots(
        &cfg.execution.device,
        gpus,
        cfg.execution.workers,
        cfg.execution.trials_per_gpu,
    )
    .map_err(SearchError::Other)?;
    let exe = match &opts.exe {
        Some(e) => e.clone(),
        None => std::env::current_exe().map_err(io(Path::new("optarch")))?,
    };
    let dir_abs = std::fs::canonicalize(&dir).map_err(io(&dir))?;
    // The trial servers load libtorch while the data is prepared.
    let mut ex = Local::new(
        exe,
        dir_abs.clone(),
        slots,
        cfg.trainer.threads,
        cfg.execution.fork_server,
    );
    prepare_data(&cfg, &dir)?;
    let pool = load_pool(&store)?;
    let driver = Driver {
        cfg: &cfg,
        store: &store,
        exp,
        pool: &pool,
        rungs: cfg.budget.rungs(),
    };
    let names: HashMap<i64, String> = pool.iter().map(|e| (e.candidate, e.name.clone())).collect();
    let mut display = Display::new(ex.slots(), estimate(&cfg, &driver.rungs, pool.len()));
    display.line(&format!(
        "search {} in {}: {} candidates, rungs {:?} epochs, {} slot(s) on {}",
        cfg.name,
        dir.display(),
        pool.len(),
        driver.rungs,
        ex.slots(),
        ex.device(0)
    ));
    let flag = interrupted();
    flag.store(false, Ordering::SeqCst);
    let mut launches = 0usize;
    // Slot-seconds with no trial to run, and since when each free slot has had none.
    let mut waiting = 0.0f64;
    let mut waiting_since: BTreeMap<usize, Instant> = BTreeMap::new();
    let mut finished = false;
    let mut status = "done";
    // The store is read to plan only when a trial process has ended (or once a second, as the
    // epochs the baseline may spend grow), and to draw twice a second: the loop itself polls
    // the processes every 50 ms.
    let mut changed = true;
    let (mut planned, mut drawn) = (Instant::now(), Instant::now());
    loop {
        let stop =
            flag.load(Ordering::SeqCst) || opts.stop_after_launches.is_some_and(|n| launches >= n);
        for e in ex.poll() {
            changed = true;
            driver.ended(&e, false)?;
            let t = store.trial(e.trial)?;
            display.line(&format!(
                "trial {:>3} {:<28} {:<8} epochs {}/{} {}",
                t.id,
                names.get(&t.candidate).map(String::as_str).unwrap_or("?"),
                t.status.as_str(),
                t.epochs_done,
                t.budget,
                t.val_acc
                    .map(|a| format!("score {:.2} %", 100.0 * a))
                    .unwrap_or_default()
            ));
        }
        if stop {
            for e in ex.stop_all() {
                driver.ended(&e, true)?;
            }
            status = "interrupted";
            display.line(&format!(
                "stopped: continue with `optarch search --resume {}`",
                dir.display()
            ));
            break;
        }
        let busy = ex.busy();
        let free: Vec<usize> = (0..ex.slots()).filter(|s| !busy.contains_key(s)).collect();
        if !changed && planned.elapsed() < Duration::from_secs(1) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        changed = false;
        planned = Instant::now();
        for (i, &slot) in free.iter().enumerate() {
            if opts.stop_after_launches.is_some_and(|n| launches >= n) {
                break;
            }
            let held: Vec<i64> = ex.busy().into_values().collect();
            let Some(id) = driver.next(&mut finished, &held)? else {
                // No trial can run now: the free slots left wait for work (a rung's last
                // results, the end of the search), not for the search's machinery.
                for &s in free.iter().skip(i) {
                    waiting_since.entry(s).or_insert_with(Instant::now);
                }
                break;
            };
            if let Some(t) = waiting_since.remove(&slot) {
                waiting += t.elapsed().as_secs_f64();
            }
            let t = store.trial(id)?;
            store.start_trial(id, &ex.device(slot))?;
            let pid = ex
                .launch(slot, id, &dir_abs.join(&t.dir))
                .map_err(io(&dir_abs.join(&t.dir)))?;
            store.set_pid(id, pid)?;
            launches += 1;
        }
        for n in ex.notes() {
            store.event(None, &n)?;
            display.line(&n);
        }
        if finished && ex.busy().is_empty() {
            break;
        }
        if drawn.elapsed() < Duration::from_millis(500) {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        drawn = Instant::now();
        let state = State::read(&store)?;
        let epochs: u64 = state.trials.iter().map(|t| t.epochs_done as u64).sum();
        let best = ranking(&state, &driver.rungs)
            .first()
            .map(|(c, k, s)| {
                format!(
                    "best {} {:.2} % (rung {k})",
                    names.get(c).map(String::as_str).unwrap_or("?"),
                    100.0 * s
                )
            })
            .unwrap_or_default();
        let busy: Vec<(usize, String)> = ex
            .busy()
            .into_iter()
            .map(|(s, id)| {
                let t = state.trials.iter().find(|t| t.id == id);
                let m = match t {
                    Some(t) => format!(
                        "trial {id} {} {} epoch {}/{}",
                        t.phase.as_str(),
                        names.get(&t.candidate).map(String::as_str).unwrap_or("?"),
                        t.epochs_done,
                        t.budget
                    ),
                    None => format!("trial {id}"),
                };
                (s, m)
            })
            .collect();
        display.update(epochs, &best, &busy);
        std::thread::sleep(Duration::from_millis(50));
    }
    display.finish();
    waiting += waiting_since
        .values()
        .map(|t| t.elapsed().as_secs_f64())
        .sum::<f64>();
    let wall = started.elapsed().as_secs_f64();
    store.set_experiment_status(exp, status, wall)?;
    let state = State::read(&store)?;
    let train_seconds: f64 = state.trials.iter().map(|t| t.train_seconds).sum();
    let trial_seconds: f64 = state.trials.iter().map(|t| t.wall_seconds).sum();
    let total_wall = store.experiment()?.map(|e| e.wall_seconds).unwrap_or(wall);
    let slots = ex.slots();
    let outcome = Outcome {
        dir: dir.clone(),
        status: status.into(),
        wall_seconds: total_wall,
        slots,
        train_seconds,
        trial_seconds,
        overhead: 1.0 - train_seconds / (slots as f64 * total_wall).max(1e-9),
        waiting_seconds: opts.resume.is_none().then_some(waiting),
        waiting_share: opts
            .resume
            .is_none()
            .then(|| waiting / (slots as f64 * total_wall).max(1e-9)),
        trials: state.trials.len(),
        epochs: state.trials.iter().map(|t| t.epochs_done).sum(),
    };
    let p = dir.join("outcome.json");
    let text =
        serde_json::to_string_pretty(&outcome).map_err(|e| SearchError::Other(e.to_string()))?;
    std::fs::write(&p, text).map_err(io(&p))?;
    Ok(outcome)
}
