//! The search configuration (YAML). Examples live in `specs/search/`; `docs/SEARCH.md` is the
//! reference.
//!
//! A search configuration embeds the trainer's [`TrainConfig`] as `train:`, the same type
//! `optarch train` takes as flags; the budget replaces its epochs, and each trial its seed and
//! device. [`parse`] reads a file and checks every value, each error located at its key.

pub use crate::checks::{Checks, ConfigError, Problem};
use crate::data::DatasetKind;
use crate::train::{ArchConfig, TrainConfig};
use optarch_core::device::DeviceChoice;
use optarch_core::error::Pos;
use optarch_core::spec::yaml_pos;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A whole search.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// How every candidate is trained (`train.run.seed` seeds the strategy, the baseline and the
    /// search trials; finalists use seed + 1, seed + 2, ...; `train.run.device` is where trials
    /// go; `train.schedule.epochs` is replaced by `budget.max_epochs`).
    #[serde(default)]
    pub train: TrainConfig,
    pub budget: BudgetConfig,
    #[serde(default)]
    pub strategy: StrategyConfig,
    #[serde(default)]
    pub finalists: FinalistsConfig,
    /// A random-search baseline at equal budget (reported beside the strategy's result).
    #[serde(default = "yes")]
    pub baseline: bool,
    #[serde(default)]
    pub execution: ExecutionConfig,
    /// Where trials run: this machine (`local`, the default) or a Slurm cluster.
    #[serde(default)]
    pub executor: ExecutorConfig,
    #[serde(default)]
    pub theory: TheoryConfig,
    pub candidates: Vec<CandidateSource>,
}

fn yes() -> bool {
    true
}

/// How the budget is shared.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Scheduler {
    /// Asynchronous successive halving: promote as soon as a trial is in the top 1/η of its
    /// rung.
    #[default]
    Asha,
    /// Synchronous successive halving: a rung is cut once all its trials are in.
    Sha,
    /// No early stopping: every trial runs to the largest budget.
    None,
}

/// The resource is epochs.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    /// The first rung's epochs (r).
    #[serde(default = "one")]
    pub min_epochs: usize,
    /// The last rung's epochs (R); the learning-rate schedule spans it.
    pub max_epochs: usize,
    /// Reduction factor η.
    #[serde(default = "three")]
    pub eta: usize,
    /// Candidates the strategy starts at the first rung.
    pub trials: usize,
    #[serde(default)]
    pub scheduler: Scheduler,
}

fn one() -> usize {
    1
}
fn three() -> usize {
    3
}

/// Which candidates are started.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyConfig {
    pub kind: StrategyKind,
    /// Regularised evolution: population size (the oldest member leaves).
    pub population: usize,
    /// Regularised evolution: tournament size.
    pub sample: usize,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StrategyKind {
    /// Every candidate of the pool, in order.
    Grid,
    /// A seeded random sample of the pool.
    #[default]
    Random,
    /// Regularised evolution (Real et al., 2019) over the pool.
    Evolution,
}

/// Finalists re-trained at the full budget.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct FinalistsConfig {
    pub top_k: usize,
    /// Seeds per finalist (at least 3).
    pub seeds: usize,
    /// Candidates (by name) re-trained with the finalists' seeds whatever their rank: the
    /// winner's test accuracy is compared with each of them, seed by seed.
    pub references: Vec<String>,
}

impl Default for FinalistsConfig {
    fn default() -> Self {
        FinalistsConfig {
            top_k: 3,
            seeds: 3,
            references: vec!["gradient_descent".into()],
        }
    }
}

/// How trials run (where: `train.run.device`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutionConfig {
    /// Parallel trial processes on CPU.
    pub workers: usize,
    /// Trials sharing one GPU.
    pub trials_per_gpu: usize,
    /// Attempts of a trial whose process crashed before it is marked failed.
    pub max_attempts: u32,
    /// Fork trial processes from a warm server that has loaded libtorch once (false: start
    /// each as `optarch trial`, paying libtorch's start-up every time).
    pub fork_server: bool,
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        ExecutionConfig {
            workers: 2,
            trials_per_gpu: 1,
            max_attempts: 2,
            fork_server: true,
        }
    }
}

/// Where trials run.
#[derive(
    Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// Processes on this machine (`execution.workers` of them, or one per GPU slot).
    #[default]
    Local,
    /// One Slurm job per trial, submitted with `sbatch` and tracked with `squeue`.
    Slurm,
}

/// The executor: `executor: {kind: slurm, partition: gpu, gres: "gpu:1", ...}`. Every key
/// but `kind` is Slurm's (docs/CLUSTER.md).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    pub kind: ExecutorKind,
    /// `--partition`.
    pub partition: Option<String>,
    /// `--gres` per trial, e.g. `gpu:1` (the trial trains on the GPUs Slurm assigns).
    pub gres: Option<String>,
    /// `--cpus-per-task`: cores per trial (and libtorch's threads).
    pub cpus_per_trial: usize,
    /// `--mem`, e.g. `8G`.
    pub mem: Option<String>,
    /// `--time` per job, e.g. `2:00:00` or `90` (minutes); a trial that reaches it resumes in
    /// a requeued job.
    pub time_limit: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--qos`.
    pub qos: Option<String>,
    /// More `#SBATCH` lines, written as given (e.g. `--constraint=a100`).
    pub extra: Vec<String>,
    /// Jobs queued or running at once.
    pub max_in_flight: usize,
    /// `--signal`: the warning before a time limit or preemption, on which the trial stops at
    /// its last epoch and requeues itself. USR1 is NCCL's: TERM is the default.
    pub signal: String,
    /// The folder, on a filesystem the compute nodes share, for the trials' run directories
    /// and the prepared data (default: the search directory, which must then be shared; the
    /// store always stays in the search directory, which should be on local disk).
    pub shared_dir: Option<PathBuf>,
    /// The `optarch` the jobs run (default: this one; it must be at the same path on the
    /// nodes).
    pub optarch: Option<PathBuf>,
    /// Longest wait between two `squeue` calls, in seconds (polls back off from 1 s to this).
    pub poll_seconds: f64,
    /// Seconds to wait for the probe job that checks the shared filesystem (0: no probe).
    pub probe_timeout: f64,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            kind: ExecutorKind::Local,
            partition: None,
            gres: None,
            cpus_per_trial: 1,
            mem: None,
            time_limit: None,
            account: None,
            qos: None,
            extra: Vec::new(),
            max_in_flight: 16,
            signal: "B:TERM@60".into(),
            shared_dir: None,
            optarch: None,
            poll_seconds: 10.0,
            probe_timeout: 600.0,
        }
    }
}

/// Spec theory used to prune generated candidates and to report rates.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct TheoryConfig {
    /// Condition number of the quadratics.
    pub kappa: f64,
    /// Prune generated recurrences whose asymptotic rate is at least this (1 = unstable).
    pub max_rate: f64,
    /// Leave out spec candidates that diverge on quadratics (asymptotic rate above 1, or a
    /// response that overflows); by default they are kept and the store records a warning.
    pub skip_divergent: bool,
}

impl Default for TheoryConfig {
    fn default() -> Self {
        TheoryConfig {
            kappa: 100.0,
            max_rate: 1.0,
            skip_divergent: false,
        }
    }
}

/// Where candidates come from: a spec file (`spec:`, with `grid:` and `samples:`) or
/// generated recurrences (`generate:`, alone).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(untagged)]
#[serde(try_from = "RawCandidate")]
pub enum CandidateSource {
    Spec(SpecSource),
    Generator { generate: GeneratorConfig },
}

/// The most combinations a configuration's candidates may expand to before pruning: each is
/// built, rated on quadratics and hashed (about a millisecond each), so that building a pool
/// never takes more than seconds.
pub const MAX_COMBINATIONS: usize = 20_000;

/// The most parallel trial processes of a search on CPU.
pub const MAX_WORKERS: usize = 512;

/// The most past iterates a generated recurrence may read.
pub const MAX_HISTORY: usize = 8;

/// The most candidates a configuration may have rated on quadratics (each spec entry's
/// combinations and each generator's consistent ones): rating takes about 20 ms each in a
/// release build, so a pool is built within about 20 s.
pub const MAX_RATED: usize = 1_000;

impl GeneratorConfig {
    /// Whether a recurrence with coefficients `a` and `b` is consistent: a fixed point of
    /// the method needs Σa = 1 and Σb = 1. Only consistent ones are rated.
    pub fn consistent(a: &[f64], b: &[f64]) -> bool {
        let sa: f64 = a.iter().sum();
        let sb: f64 = b.iter().sum();
        (sa - 1.0).abs() <= 1e-9 && (sb - 1.0).abs() <= 1e-9
    }

    /// How many of the grid's points are consistent (every h counts): counted without
    /// building any.
    fn consistent_points(&self) -> usize {
        let grids: Vec<&Vec<f64>> = self.a.iter().chain(&self.b).collect();
        if grids.iter().any(|g| g.is_empty()) {
            return 0;
        }
        let m = self.a.len();
        let mut at = vec![0usize; grids.len()];
        let mut n = 0usize;
        loop {
            let point: Vec<f64> = at.iter().zip(&grids).map(|(&i, g)| g[i]).collect();
            if Self::consistent(&point[..m], &point[m..]) {
                n += 1;
            }
            // The next point, odometer-wise.
            let mut k = 0;
            loop {
                let Some(slot) = at.get_mut(k) else {
                    return n.saturating_mul(self.h.len());
                };
                *slot += 1;
                if *slot < grids[k].len() {
                    break;
                }
                *slot = 0;
                k += 1;
            }
        }
    }
}

impl CandidateSource {
    /// How many candidates of this entry are rated on quadratics (call it only once
    /// [`CandidateSource::size`] is within [`MAX_COMBINATIONS`]).
    fn rated(&self) -> usize {
        match self {
            CandidateSource::Spec(_) => self.size(),
            CandidateSource::Generator { generate: g } => g.consistent_points(),
        }
    }

    /// The combinations this entry expands to before pruning and merging (saturating): a
    /// spec's grid points times its samples, a generator's grid points.
    pub fn size(&self) -> usize {
        let product =
            |lens: &mut dyn Iterator<Item = usize>| lens.fold(1usize, |a, n| a.saturating_mul(n));
        match self {
            CandidateSource::Spec(s) => {
                product(&mut s.grid.values().map(Vec::len)).saturating_mul(s.samples.max(1))
            }
            CandidateSource::Generator { generate: g } => {
                product(&mut g.a.iter().chain(&g.b).map(Vec::len).chain([g.h.len()]))
            }
        }
    }
}

/// A candidate entry as written: every key of both kinds, unknown ones refused where they
/// stand (an untagged enum would only say that nothing matched).
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RawCandidate {
    spec: Option<PathBuf>,
    #[serde(default)]
    grid: Option<BTreeMap<String, Vec<f64>>>,
    #[serde(default)]
    samples: Option<usize>,
    #[serde(default)]
    arch: Option<ArchConfig>,
    generate: Option<GeneratorConfig>,
}

impl TryFrom<RawCandidate> for CandidateSource {
    type Error = String;
    fn try_from(r: RawCandidate) -> Result<Self, String> {
        match (r.spec, r.generate) {
            (Some(spec), None) => Ok(CandidateSource::Spec(SpecSource {
                spec,
                grid: r.grid.unwrap_or_default(),
                samples: r.samples.unwrap_or(0),
                arch: r.arch,
            })),
            (None, Some(g)) if r.grid.is_none() && r.samples.is_none() && r.arch.is_none() => {
                Ok(CandidateSource::Generator { generate: g })
            }
            (None, Some(_)) => Err("a `generate:` entry stands alone: `grid`, `samples` and \
                 `arch` belong to a `spec:` entry (the generator's grids are its a, b and h; its \
                 recurrences train in `train.arch`)"
                .into()),
            (Some(_), Some(_)) => Err("a candidate entry has either `spec:` or `generate:`, \
                 not both: make them two entries"
                .into()),
            (None, None) => Err("a candidate entry needs `spec: FILE` or `generate: {...}`".into()),
        }
    }
}

/// A spec file, with a grid over some of its parameters (every combination is a candidate)
/// and samples of its search ranges.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SpecSource {
    /// Relative to the search configuration's folder.
    pub spec: PathBuf,
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<f64>>,
    /// Random draws of the spec's `range`/`choices` parameters not in the grid (0: defaults).
    #[serde(default)]
    pub samples: usize,
    /// The macro-architecture this entry's candidates train in, replacing `train.arch` (e.g.
    /// DenseNet's dense blocks for a concatenating spec, at a width matched to the others').
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<ArchConfig>,
}

/// New m-step linear recurrences
/// `z[k+1] = Σ_i a_i z[k-i] - h·grad(Σ_i b_i z[k-i])`, i = 0..m-1.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GeneratorConfig {
    /// m: how many past iterates a step reads.
    pub history: usize,
    /// Grid of each a_i (m lists).
    pub a: Vec<Vec<f64>>,
    /// Grid of each b_i (m lists).
    pub b: Vec<Vec<f64>>,
    /// Grid of the step size h.
    #[serde(default = "unit_h")]
    pub h: Vec<f64>,
    /// At most this many survivors of the pruning (a seeded sample when more survive).
    #[serde(default)]
    pub limit: Option<usize>,
}

fn unit_h() -> Vec<f64> {
    vec![1.0]
}

impl BudgetConfig {
    /// The rungs' budgets: r, rη, rη², ... below R, then R.
    pub fn rungs(&self) -> Vec<usize> {
        if self.scheduler == Scheduler::None {
            return vec![self.max_epochs];
        }
        let mut v = Vec::new();
        let mut b = self.min_epochs.max(1);
        while b < self.max_epochs {
            v.push(b);
            b = b.saturating_mul(self.eta.max(2));
        }
        v.push(self.max_epochs);
        v
    }
}

/// Reads and checks a search configuration.
pub fn load(path: &Path) -> Result<SearchConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            path,
            format!("cannot read the search configuration: {e}"),
            "pass the path of a YAML file such as specs/search/quick.yaml",
        )
    })?;
    parse(path, &text)
}

/// Keys that moved under `train:` (an older configuration's top level).
const MOVED: &[(&str, &str)] = &[
    ("data", "train.data"),
    ("arch", "train.arch"),
    (
        "trainer",
        "train.optim, train.schedule, train.precision and train.run",
    ),
    ("seed", "train.run.seed"),
    ("execution: unknown field `device`", "train.run.device"),
];

/// The JSON Schema of search configurations, as editors with a YAML language server read it
/// (`schemas/search.schema.json`, referenced by every shipped configuration).
pub fn schema() -> serde_json::Value {
    schemars::schema_for!(SearchConfig).to_value()
}

/// Parses and checks a search configuration's text (`path` names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<SearchConfig, ConfigError> {
    let file = path.display().to_string();
    let pos = yaml_pos::scan(&file, text).map_err(|e| ConfigError {
        problems: vec![Problem {
            file: file.clone(),
            pos: e.pos,
            message: e.message.clone(),
            hint: e.hint.clone().unwrap_or_default(),
        }],
    })?;
    let cfg: SearchConfig = serde_yaml::from_str(text).map_err(|e| {
        let message = without_location(&e.to_string());
        let hint = MOVED
            .iter()
            .find(|(old, _)| {
                message.starts_with(&format!("unknown field `{old}`")) || message.starts_with(old)
            })
            .map(|(old, new)| {
                let old = old.split('`').nth(1).unwrap_or(old);
                format!("`{old}` now lives under `{new}` (see docs/SEARCH.md)")
            })
            .unwrap_or_else(|| "see docs/SEARCH.md for the keys of a search configuration".into());
        ConfigError {
            problems: vec![Problem {
                file: file.clone(),
                pos: e.location().map(|l| Pos {
                    line: l.line(),
                    column: l.column(),
                }),
                message,
                hint,
            }],
        }
    })?;
    let mut checks = Checks::new(path, &pos);
    cfg.check(&mut checks);
    checks.finish()?;
    Ok(cfg)
}

/// serde_yaml's message without its trailing `at line L column C` (the problem's place is
/// said first).
fn without_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i)
            if message[i + 9..]
                .split(" column ")
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
        {
            message[..i].to_string()
        }
        _ => message.to_string(),
    }
}

impl SearchConfig {
    /// Checks every value that serde's types do not rule out.
    pub(crate) fn check(&self, c: &mut Checks) {
        let b = &self.budget;
        c.require(
            (1..=crate::train::MAX_EPOCHS).contains(&b.max_epochs),
            &["budget", "max_epochs"],
            format!(
                "budget.max_epochs is {}; it must be from 1 to {}",
                b.max_epochs,
                crate::train::MAX_EPOCHS
            ),
            "for example `budget: {min_epochs: 1, max_epochs: 9, eta: 3, trials: 27}`",
        );
        c.require(
            b.trials >= 1,
            &["budget", "trials"],
            "budget.trials must be at least 1".into(),
            "for example `budget: {min_epochs: 1, max_epochs: 9, eta: 3, trials: 27}`",
        );
        c.require(
            b.min_epochs <= b.max_epochs,
            &["budget", "min_epochs"],
            format!(
                "budget.min_epochs ({}) exceeds budget.max_epochs ({})",
                b.min_epochs, b.max_epochs
            ),
            "the first rung cannot be longer than the last",
        );
        c.require(
            b.min_epochs >= 1,
            &["budget", "min_epochs"],
            "budget.min_epochs must be at least 1".into(),
            "the first rung trains each candidate this many epochs",
        );
        c.require(
            b.eta >= 2,
            &["budget", "eta"],
            format!("budget.eta is {}; it must be at least 2", b.eta),
            "η = 3 keeps the top third of each rung",
        );
        c.require(
            self.train.data.val >= 1,
            &["train", "data", "val"],
            "train.data.val is 0: a search ranks its candidates on validation images only".into(),
            "carve some out of the training set, e.g. `train: {data: {val: 500}}`",
        );
        c.require(
            self.finalists.top_k <= 1_000 && self.finalists.seeds <= 100,
            &["finalists"],
            format!(
                "finalists.top_k is {} and finalists.seeds {}; at most 1000 finalists and 100 \
                 seeds",
                self.finalists.top_k, self.finalists.seeds
            ),
            "3 finalists with 3 seeds each is the default",
        );
        c.require(
            self.finalists.seeds >= 3 || self.finalists.top_k == 0,
            &["finalists", "seeds"],
            format!(
                "finalists.seeds is {}; finalists are re-trained with at least 3 seeds",
                self.finalists.seeds
            ),
            "set `finalists: {seeds: 3}` (or `top_k: 0` to skip the finalists)",
        );
        c.require(
            !self.candidates.is_empty(),
            &["candidates"],
            "no candidates".into(),
            "add `candidates: [{spec: ../heavy_ball.yaml}]` or a `generate:` entry",
        );
        let e = &self.execution;
        c.require(
            (1..=MAX_WORKERS).contains(&e.workers),
            &["execution", "workers"],
            format!(
                "execution.workers is {}; it must be from 1 to {MAX_WORKERS} (each is a process \
                 training a network)",
                e.workers
            ),
            "one per core or two suit a CPU; on GPUs the slots come from trials_per_gpu",
        );
        c.require(
            e.trials_per_gpu >= 1,
            &["execution", "trials_per_gpu"],
            "execution.trials_per_gpu must be at least 1".into(),
            "1 gives each trial a GPU of its own",
        );
        c.require(
            !matches!(self.train.run.device, DeviceChoice::Cuda(Some(_))),
            &["train", "run", "device"],
            format!(
                "train.run.device is `{}`; a search takes auto, cpu or cuda",
                self.train.run.device
            ),
            "GPUs are assigned to trials through CUDA_VISIBLE_DEVICES",
        );
        c.within("train", |c| self.train.check(c, true));
        for (i, source) in self.candidates.iter().enumerate() {
            if let CandidateSource::Spec(SpecSource {
                arch: Some(arch), ..
            }) = source
            {
                c.within("candidates", |c| {
                    c.within(&i.to_string(), |c| arch.check(c))
                });
            }
        }
        c.require(
            e.max_attempts >= 1,
            &["execution", "max_attempts"],
            "execution.max_attempts must be at least 1".into(),
            "2 retries a trial whose process crashed once",
        );
        self.executor.check(c);
        let t = &self.theory;
        c.number(
            t.kappa,
            &["theory", "kappa"],
            t.kappa >= 1.0,
            "at least 1 (a condition number)",
            "100 is the default",
        );
        c.number(
            t.max_rate,
            &["theory", "max_rate"],
            t.max_rate > 0.0,
            "positive",
            "1 prunes the unstable recurrences only",
        );
        let st = &self.strategy;
        c.require(
            st.kind != StrategyKind::Evolution
                || (st.population >= 2 && (1..=st.population).contains(&st.sample)),
            &["strategy"],
            format!(
                "regularised evolution needs strategy.population ≥ 2 and 1 ≤ strategy.sample ≤ \
                 population (they are {} and {})",
                st.population, st.sample
            ),
            "for example `strategy: {kind: evolution, population: 8, sample: 3}`",
        );
        c.require(
            st.kind == StrategyKind::Evolution || (st.population == 0 && st.sample == 0),
            &["strategy"],
            "strategy.population and strategy.sample are regularised evolution's; this \
             strategy would ignore them"
                .into(),
            "remove them, or set `kind: evolution`",
        );
        c.require(
            !self.name.is_empty()
                && !self.name.starts_with('.')
                && self
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.')),
            &["name"],
            format!(
                "name `{}` must be a plain folder name (letters, digits, `-`, `_`, `.`; not \
                 starting with `.`): the search's default directory is runs/search/<name>",
                self.name
            ),
            "e.g. `name: heavy-ball-cifar10`",
        );
        let sizes: Vec<usize> = self.candidates.iter().map(CandidateSource::size).collect();
        let total = sizes.iter().fold(0usize, |a, b| a.saturating_add(*b));
        c.require(
            total <= MAX_COMBINATIONS,
            &["candidates"],
            format!(
                "the candidates expand to {} combinations before pruning (at most {MAX_COMBINATIONS} \
                 are built): {}",
                if total == usize::MAX { "more than 10^19".to_string() } else { total.to_string() },
                sizes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("candidates[{i}]: {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "narrow the grids (fewer values of a, b, h or of a spec's parameters) or lower \
             `samples`; a generator's `limit` caps its survivors, not what is built",
        );
        if total <= MAX_COMBINATIONS {
            let rated: Vec<usize> = self.candidates.iter().map(CandidateSource::rated).collect();
            let n: usize = rated.iter().sum();
            c.require(
                n <= MAX_RATED,
                &["candidates"],
                format!(
                    "{n} candidates would be rated on quadratics (at most {MAX_RATED}, about 20 ms \
                     each): {}",
                    rated
                        .iter()
                        .enumerate()
                        .map(|(i, n)| format!("candidates[{i}]: {n}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "narrow the grids or lower `samples` (of a generator's points only those with \
                 Σa = 1 and Σb = 1 are rated)",
            );
        }
        for (i, s) in self.candidates.iter().enumerate() {
            let at = i.to_string();
            let g = match s {
                CandidateSource::Generator { generate: g } => g,
                CandidateSource::Spec(sp) => {
                    for (k, v) in &sp.grid {
                        let path = ["candidates", at.as_str(), "grid", k.as_str()];
                        c.require(
                            !v.is_empty(),
                            &path,
                            format!("grid `{k}` has no values"),
                            "give it at least one value, or leave it out",
                        );
                        for x in v {
                            c.number(*x, &path, true, "", "grid values are numbers");
                        }
                    }
                    continue;
                }
            };
            let path = ["candidates", at.as_str(), "generate"];
            c.require(
                g.history <= MAX_HISTORY,
                &path,
                format!(
                    "generate: history is {}; at most {MAX_HISTORY} past iterates are supported",
                    g.history
                ),
                "two- and three-step recurrences already hold heavy ball and Nesterov",
            );
            c.require(
                g.limit != Some(0),
                &path,
                "generate: limit is 0, which keeps no survivor".into(),
                "leave it out to keep every survivor, or give at least 1",
            );
            for (key, values) in [
                ("a", g.a.iter().flatten().collect::<Vec<_>>()),
                ("b", g.b.iter().flatten().collect()),
                ("h", g.h.iter().collect()),
            ] {
                let at_key = ["candidates", at.as_str(), "generate", key];
                for x in values {
                    c.number(*x, &at_key, true, "", "coefficients are numbers");
                }
            }
            c.require(
                g.history >= 1 && g.a.len() == g.history && g.b.len() == g.history,
                &path,
                format!(
                    "generate: history is {} but a has {} grids and b has {}",
                    g.history,
                    g.a.len(),
                    g.b.len()
                ),
                "give one list of values per past iterate for both a and b",
            );
            c.require(
                !(g.a.iter().chain(&g.b).any(|v| v.is_empty()) || g.h.is_empty()),
                &path,
                "generate: an empty coefficient grid".into(),
                "every a_i, b_i and h needs at least one value",
            );
        }
    }

    /// The data set a search prepares once for its trials, when it can (CIFAR-10).
    pub(crate) fn prepares_data(&self) -> bool {
        self.train.data.dataset == DatasetKind::Cifar10
    }
}

/// Command-line overrides of `executor:` (`optarch search --executor slurm --partition gpu
/// ...`). A new search stores them with its configuration, so a resumed one keeps them.
#[derive(Clone, Debug, Default)]
pub struct ExecutorOverrides {
    pub kind: Option<ExecutorKind>,
    pub partition: Option<String>,
    pub gres: Option<String>,
    pub time_limit: Option<String>,
    pub cpus_per_trial: Option<usize>,
    pub max_in_flight: Option<usize>,
    pub shared_dir: Option<PathBuf>,
}

impl ExecutorOverrides {
    /// Writes the overrides into `cfg` and checks the executor again.
    pub fn apply(&self, cfg: &mut SearchConfig) -> Result<(), ConfigError> {
        let e = &mut cfg.executor;
        match self.kind {
            // Local for once (a quick try of a cluster's configuration): its Slurm keys rest.
            Some(ExecutorKind::Local) => *e = ExecutorConfig::default(),
            Some(k) => e.kind = k,
            None => {}
        }
        let set = |slot: &mut Option<String>, v: &Option<String>| {
            if v.is_some() {
                slot.clone_from(v);
            }
        };
        set(&mut e.partition, &self.partition);
        set(&mut e.gres, &self.gres);
        set(&mut e.time_limit, &self.time_limit);
        if let Some(n) = self.cpus_per_trial {
            e.cpus_per_trial = n;
        }
        if let Some(n) = self.max_in_flight {
            e.max_in_flight = n;
        }
        if self.shared_dir.is_some() {
            e.shared_dir.clone_from(&self.shared_dir);
        }
        let mut c = Checks::flags();
        e.check(&mut c);
        c.finish()
    }
}

impl ExecutorConfig {
    fn check(&self, c: &mut Checks) {
        let slurm_only = [
            ("partition", self.partition.is_some()),
            ("gres", self.gres.is_some()),
            ("mem", self.mem.is_some()),
            ("time_limit", self.time_limit.is_some()),
            ("account", self.account.is_some()),
            ("qos", self.qos.is_some()),
            ("extra", !self.extra.is_empty()),
            ("shared_dir", self.shared_dir.is_some()),
            ("optarch", self.optarch.is_some()),
        ];
        if self.kind == ExecutorKind::Local {
            for (key, set) in slurm_only {
                c.require(
                    !set,
                    &["executor", key],
                    format!("executor.{key} is a Slurm setting, but executor.kind is local"),
                    "add `kind: slurm` to the executor, or remove the key",
                );
            }
            return;
        }
        c.require(
            (1..=1024).contains(&self.cpus_per_trial),
            &["executor", "cpus_per_trial"],
            format!(
                "executor.cpus_per_trial is {}; it must be from 1 to 1024",
                self.cpus_per_trial
            ),
            "1 to 8 cores suit one trial",
        );
        c.require(
            (1..=100_000).contains(&self.max_in_flight),
            &["executor", "max_in_flight"],
            format!(
                "executor.max_in_flight is {}; it must be from 1 to 100000",
                self.max_in_flight
            ),
            "the jobs queued or running at once, e.g. 16",
        );
        c.number(
            self.poll_seconds,
            &["executor", "poll_seconds"],
            (1.0..=600.0).contains(&self.poll_seconds),
            "from 1 to 600",
            "10 s between squeue calls at most is gentle on the controller",
        );
        c.number(
            self.probe_timeout,
            &["executor", "probe_timeout"],
            (0.0..=86_400.0).contains(&self.probe_timeout),
            "from 0 (no probe) to 86400",
            "the probe job has to start and end within it",
        );
        if let Some(t) = &self.time_limit {
            c.require(
                slurm_time(t).is_some(),
                &["executor", "time_limit"],
                format!("executor.time_limit `{t}` is not a Slurm time"),
                "minutes (`90`), `H:MM:SS`, `MM:SS` or `D-HH:MM:SS`",
            );
        }
        c.require(
            self.signal
                .trim_start_matches("B:")
                .split('@')
                .next()
                .is_some_and(|sig| !sig.is_empty() && !sig.contains("USR1")),
            &["executor", "signal"],
            format!("executor.signal `{}` is not usable", self.signal),
            "`B:TERM@60` (TERM to the job's script 60 s before the limit); not USR1, which NCCL \
             uses",
        );
        for (key, v) in [
            ("partition", &self.partition),
            ("gres", &self.gres),
            ("mem", &self.mem),
            ("account", &self.account),
            ("qos", &self.qos),
        ] {
            if let Some(v) = v {
                c.require(
                    !v.is_empty()
                        && !v
                            .chars()
                            .any(|ch| ch.is_whitespace() || ch == '\'' || ch == '"'),
                    &["executor", key],
                    format!("executor.{key} `{v}` is empty or has spaces or quotes"),
                    "a Slurm value such as `gpu`, `gpu:1` or `8G`",
                );
            }
        }
        for line in &self.extra {
            c.require(
                line.trim_start().starts_with('-') && !line.contains('\n'),
                &["executor", "extra"],
                format!("executor.extra line `{line}` is not an sbatch option"),
                "each line is one option as on sbatch's command line, e.g. `--constraint=a100`",
            );
        }
    }
}

/// Minutes in a Slurm time (`M`, `M:S`, `H:M:S`, `D-H`, `D-H:M`, `D-H:M:S`).
pub(crate) fn slurm_time(t: &str) -> Option<f64> {
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (d.parse::<f64>().ok()?, r),
        None => (0.0, t),
    };
    let parts: Vec<f64> = rest
        .split(':')
        .map(|p| p.parse::<f64>().ok().filter(|v| *v >= 0.0))
        .collect::<Option<_>>()?;
    let has_days = t.contains('-');
    let minutes = match (has_days, parts.as_slice()) {
        (false, [m]) => *m,
        (false, [m, s]) => m + s / 60.0,
        (false, [h, m, s]) => h * 60.0 + m + s / 60.0,
        (true, [h]) => h * 60.0,
        (true, [h, m]) => h * 60.0 + m,
        (true, [h, m, s]) => h * 60.0 + m + s / 60.0,
        _ => return None,
    };
    let total = days * 1440.0 + minutes;
    (total > 0.0).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(y: &str) -> Result<SearchConfig, ConfigError> {
        parse(Path::new("s.yaml"), y)
    }

    #[test]
    fn slurm_times_parse() {
        assert_eq!(slurm_time("90"), Some(90.0));
        assert_eq!(slurm_time("2:00:00"), Some(120.0));
        assert_eq!(slurm_time("1-00:30"), Some(1470.0));
        assert_eq!(slurm_time("10:30"), Some(10.5));
        assert_eq!(slurm_time("soon"), None);
        assert_eq!(slurm_time("0"), None);
        assert_eq!(slurm_time("1:2:3:4"), None);
    }

    #[test]
    fn slurm_keys_need_the_slurm_executor() {
        let y = format!("{MIN}executor: {{partition: gpu}}\n");
        let e = parse_str(&y).unwrap_err().to_string();
        assert!(e.contains("executor.partition is a Slurm setting"), "{e}");
        let y = format!(
            "{MIN}executor: {{kind: slurm, partition: gpu, gres: 'gpu:1', time_limit: '1:00:00', \
             extra: ['--constraint=a100']}}\n"
        );
        let c = parse_str(&y).unwrap();
        assert_eq!(c.executor.kind, ExecutorKind::Slurm);
        assert_eq!(c.executor.signal, "B:TERM@60");
        let y = format!("{MIN}executor: {{kind: slurm, signal: 'B:USR1@60'}}\n");
        let e = parse_str(&y).unwrap_err().to_string();
        assert!(e.contains("executor.signal"), "{e}");
        let y = format!("{MIN}executor: {{kind: slurm, time_limit: soon}}\n");
        let e = parse_str(&y).unwrap_err().to_string();
        assert!(e.contains("time_limit"), "{e}");
        let y = format!("{MIN}executor: {{kind: slurm, extra: ['constraint=a100']}}\n");
        assert!(parse_str(&y).is_err());
    }

    const MIN: &str =
        "name: t\nbudget: {max_epochs: 9, trials: 4}\ncandidates:\n  - spec: a.yaml\n";

    #[test]
    fn defaults_and_rungs() {
        let c = parse(Path::new("s.yaml"), MIN).unwrap();
        assert_eq!(c.budget.rungs(), [1, 3, 9]);
        assert_eq!(
            c.train.arch.first_stage_steps().unwrap(),
            3,
            "ResNet-20: 3 blocks per stage"
        );
        assert_eq!(c.finalists.seeds, 3);
        assert!(c.baseline);
        assert_eq!(c.train, TrainConfig::default());
        let b = BudgetConfig {
            min_epochs: 1,
            max_epochs: 4,
            eta: 2,
            trials: 1,
            scheduler: Scheduler::Asha,
        };
        assert_eq!(b.rungs(), [1, 2, 4]);
        let b = BudgetConfig { max_epochs: 5, ..b };
        assert_eq!(b.rungs(), [1, 2, 4, 5]);
        let b = BudgetConfig {
            scheduler: Scheduler::None,
            ..b
        };
        assert_eq!(b.rungs(), [5]);
    }

    #[test]
    fn errors_are_located_and_hinted() {
        let e = parse(Path::new("s.yaml"), &format!("{MIN}colour: red\n"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("s.yaml:5:1: unknown field `colour`"), "{e}");
        assert!(e.contains("hint: see docs/SEARCH.md"), "{e}");
        let e = parse(
            Path::new("s.yaml"),
            "name: t\nbudget: {max_epochs: 9, trials: 4, eta: 1}\ncandidates: [{spec: a}]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("s.yaml:2:41: budget.eta is 1"), "{e}");
        let e = parse(
            Path::new("s.yaml"),
            "name: t\nbudget: {max_epochs: 9, trials: 4}\nfinalists: {seeds: 2}\ncandidates: [{spec: a}]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("at least 3 seeds"), "{e}");
        let e = parse(
            Path::new("s.yaml"),
            "name: t\nbudget: {max_epochs: 9, trials: 4}\ncandidates:\n  - generate: {history: 2, a: [[1]], b: [[1], [0]]}\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("s.yaml:4:15: generate: history is 2 but a has 1"),
            "{e}"
        );
        // Every problem is reported, not just the first.
        let e = parse(
            Path::new("s.yaml"),
            "name: t\nbudget: {max_epochs: 9, trials: 0, eta: 1}\ncandidates: [{spec: a}]\n",
        )
        .unwrap_err();
        assert_eq!(e.problems.len(), 2, "{e}");
        // A search ranks on validation images: it needs some.
        let e = parse(
            Path::new("s.yaml"),
            &format!("{MIN}train: {{data: {{val: 0}}}}\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("s.yaml:5:21: train.data.val is 0"), "{e}");
        // A key of the older layout says where it went.
        let e = parse(Path::new("s.yaml"), &format!("{MIN}trainer: {{lr: 0.1}}\n"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("now lives under `train.optim"), "{e}");
    }

    /// The message of the one problem of `text` (a search configuration), with its place.
    fn problem(text: &str) -> String {
        let e = parse(Path::new("s.yaml"), text).unwrap_err();
        e.to_string()
    }

    #[test]
    fn every_value_is_range_checked_where_it_is_written() {
        let cases: &[(&str, &str)] = &[
            (
                "train: {optim: {lr: -1}}",
                "s.yaml:5:21: train.optim.lr is -1; it must be positive",
            ),
            (
                "train: {optim: {lr: .nan}}",
                "s.yaml:5:21: train.optim.lr is NaN; it must be a finite number, positive",
            ),
            (
                "train: {optim: {momentum: 1.0}}",
                "s.yaml:5:27: train.optim.momentum is 1; it must be in [0, 1)",
            ),
            (
                "train: {optim: {weight_decay: -0.1}}",
                "train.optim.weight_decay is -0.1; it must be at least 0",
            ),
            (
                "train: {optim: {label_smoothing: 2}}",
                "s.yaml:5:34: train.optim.label_smoothing is 2; it must be in [0, 1)",
            ),
            (
                "train: {optim: {grad_clip: 0}}",
                "train.optim.grad_clip is 0; it must be positive",
            ),
            (
                "train: {optim: {batch_size: 0}}",
                "train.optim.batch_size must be at least 1",
            ),
            (
                "train: {arch: {widths: [4, 8]}}",
                "s.yaml:5:24: train.arch.widths is [4, 8]; cifar-resnet needs 3 widths",
            ),
            (
                "train: {arch: {stage_steps: [1, 0, 1]}}",
                "train.arch.stage_steps is [1, 0, 1]",
            ),
            (
                "train: {arch: {depth: 21}}",
                "s.yaml:5:23: train.arch.depth 21 does not fit cifar-resnet",
            ),
            (
                "train: {data: {train_subset: 1000, val: 1000}}",
                "train.data.val is 1000, but only 1000 training images",
            ),
            (
                "train: {data: {train_subset: 0}}",
                "train.data.train_subset is 0",
            ),
            (
                "train: {data: {test_subset: 20000}}",
                "train.data.test_subset is 20000; cifar10 has 10000 test images",
            ),
            (
                "train: {run: {threads: 0}}",
                "train.run.threads must be at least 1",
            ),
            (
                "train: {schedule: {kind: 'multistep:0.5,1.5'}}",
                "milestones are fractions of the run",
            ),
            (
                "train: {data: {dataset: cifar11}}",
                "s.yaml:5:15: train.data: unknown data set `cifar11`: expected cifar10",
            ),
            (
                "theory: {kappa: .inf}",
                "theory.kappa is inf; it must be a finite number, at least 1",
            ),
            ("theory: {kappa: 0.5}", "theory.kappa is 0.5"),
            (
                "execution: {max_attempts: 0}",
                "execution.max_attempts must be at least 1",
            ),
        ];
        for (extra, want) in cases {
            let e = problem(&format!("{MIN}{extra}\n"));
            assert!(e.contains(want), "{extra}:\n{e}\nwants: {want}");
        }
    }

    #[test]
    fn candidate_entries_say_which_key_is_wrong() {
        let head = "name: t\nbudget: {max_epochs: 9, trials: 4}\ncandidates:\n";
        let cases: &[(&str, &str)] = &[
            (
                "  - {spec: a.yaml, colour: 1}\n",
                "s.yaml:4:20: candidates[0]: unknown field `colour`",
            ),
            (
                "  - {generate: {history: 1, a: [[1]], b: [[1]], bogus: 2}}\n",
                "s.yaml:4:49: candidates[0].generate: unknown field `bogus`",
            ),
            (
                "  - {generate: {history: 1, a: [[1]], b: [[1]]}, grid: {h: [1]}}\n",
                "s.yaml:4:3: candidates: a `generate:` entry stands alone",
            ),
            (
                "  - {spec: a.yaml, generate: {history: 1, a: [[1]], b: [[1]]}}\n",
                "not both",
            ),
            ("  - {samples: 3}\n", "needs `spec: FILE` or `generate:"),
            (
                "  - {spec: a.yaml, grid: {beta: []}}\n",
                "s.yaml:4:33: grid `beta` has no values",
            ),
            (
                "  - {spec: a.yaml, grid: {beta: [.nan]}}\n",
                "candidates.0.grid.beta is NaN",
            ),
            (
                "  - {generate: {history: 1, a: [[.inf]], b: [[1]]}}\n",
                "candidates.0.generate.a is inf",
            ),
        ];
        for (entry, want) in cases {
            let e = problem(&format!("{head}{entry}"));
            assert!(e.contains(want), "{entry}:\n{e}\nwants: {want}");
            assert!(!e.contains("did not match any variant"), "{e}");
        }
    }

    #[test]
    fn pool_sizes_are_bounded_before_anything_is_built() {
        let head = "name: t\nbudget: {max_epochs: 9, trials: 4}\ncandidates:\n";
        let xs: Vec<String> = (0..11).map(|i| format!("{}", i as f64 / 10.0)).collect();
        let ys: Vec<String> = (0..11)
            .map(|i| format!("{}", 1.0 - i as f64 / 10.0))
            .collect();
        let hs: Vec<String> = (1..=100).map(|i| format!("{}", i as f64 / 50.0)).collect();
        // 121 × 100 points, of which 11 × 100 consistent: too many to rate.
        let e = problem(&format!(
            "{head}  - generate: {{history: 2, a: [[1.5], [-0.5]], b: [[{}], [{}]], h: [{}]}}\n",
            xs.join(", "),
            ys.join(", "),
            hs.join(", ")
        ));
        assert!(
            e.contains("s.yaml:4:3: 1100 candidates would be rated on quadratics (at most 1000"),
            "{e}"
        );
        // More points than are ever built, said before building any.
        let e = problem(&format!(
            "{head}  - generate: {{history: 2, a: [[{x}], [{x}]], b: [[{x}], [{x}]], h: [1, 2]}}\n",
            x = xs.join(", ")
        ));
        assert!(
            e.contains("the candidates expand to 29282 combinations before pruning"),
            "{e}"
        );
        let e = problem(&format!(
            "{head}  - {{spec: a.yaml, grid: {{beta: [0.1, 0.2]}}, samples: 18446744073709551615}}\n"
        ));
        assert!(e.contains("more than 10^19"), "{e}");
    }

    #[test]
    fn strategy_execution_and_generator_bounds() {
        let cases: &[(&str, &str)] = &[
            (
                "execution: {workers: 100000}",
                "execution.workers is 100000; it must be from 1 to 512",
            ),
            (
                "strategy: {kind: evolution, population: 2, sample: 5}",
                "1 ≤ strategy.sample ≤ population (they are 2 and 5)",
            ),
            (
                "strategy: {kind: grid, population: 4}",
                "this strategy would ignore them",
            ),
            (
                "execution: {device: cpu}",
                "`device` now lives under `train.run.device`",
            ),
            (
                "candidates:\n  - {generate: {history: 9, a: [[1], [0], [0], [0], [0], [0], [0], [0], [0]], b: [[1], [0], [0], [0], [0], [0], [0], [0], [0]]}}",
                "history is 9; at most 8",
            ),
            (
                "candidates:\n  - {generate: {history: 1, a: [[1]], b: [[1]], limit: 0}}",
                "limit is 0",
            ),
        ];
        for (extra, want) in cases {
            let text = if extra.starts_with("candidates") {
                format!("name: t\nbudget: {{max_epochs: 9, trials: 4}}\n{extra}\n")
            } else {
                format!("{MIN}{extra}\n")
            };
            let e = problem(&text);
            assert!(e.contains(want), "{extra}:\n{e}\nwants: {want}");
        }
    }

    #[test]
    fn the_name_is_a_plain_folder_name_and_the_first_rung_has_epochs() {
        for name in ["''", "../../evil", ".hidden", "a/b"] {
            let e = problem(&format!(
                "name: {name}\nbudget: {{max_epochs: 9, trials: 4}}\ncandidates: [{{spec: a}}]\n"
            ));
            assert!(e.contains("must be a plain folder name"), "{name}: {e}");
        }
        let e = problem(
            "name: t\nbudget: {max_epochs: 9, trials: 4, min_epochs: 0}\ncandidates: [{spec: a}]\n",
        );
        assert!(
            e.contains("s.yaml:2:48: budget.min_epochs must be at least 1"),
            "{e}"
        );
    }
}
