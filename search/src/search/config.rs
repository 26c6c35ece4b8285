//! The search configuration (YAML). Examples live in `specs/search/`; `docs/SEARCH.md` is the
//! reference.
//!
//! A search configuration embeds the trainer's [`TrainConfig`] as `train:`, the same type
//! `optarch train` takes as flags; the budget replaces its epochs, and each trial its seed and
//! device. [`parse`] reads a file and checks every value, each error located at its key.

use crate::data::DatasetKind;
use crate::train::TrainConfig;
use optarch_core::device::DeviceChoice;
use optarch_core::error::Pos;
use optarch_core::spec::yaml_pos::{self, PosMap};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A whole search.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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
    #[serde(default)]
    pub theory: TheoryConfig,
    pub candidates: Vec<CandidateSource>,
}

fn yes() -> bool {
    true
}

/// How the budget is shared.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyConfig {
    pub kind: StrategyKind,
    /// Regularised evolution: population size (the oldest member leaves).
    pub population: usize,
    /// Regularised evolution: tournament size.
    pub sample: usize,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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

/// Spec theory used to prune generated candidates and to report rates.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TheoryConfig {
    /// Condition number of the quadratics.
    pub kappa: f64,
    /// Prune generated recurrences whose asymptotic rate is at least this (1 = unstable).
    pub max_rate: f64,
}

impl Default for TheoryConfig {
    fn default() -> Self {
        TheoryConfig {
            kappa: 100.0,
            max_rate: 1.0,
        }
    }
}

/// Where candidates come from.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum CandidateSource {
    Spec(SpecSource),
    Generator { generate: GeneratorConfig },
}

/// A spec file, with a grid over some of its parameters (every combination is a candidate)
/// and samples of its search ranges.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpecSource {
    /// Relative to the search configuration's folder.
    pub spec: PathBuf,
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<f64>>,
    /// Random draws of the spec's `range`/`choices` parameters not in the grid (0: defaults).
    #[serde(default)]
    pub samples: usize,
}

/// New m-step linear recurrences
/// `z[k+1] = Σ_i a_i z[k-i] - h·grad(Σ_i b_i z[k-i])`, i = 0..m-1.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
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

/// One problem of a configuration: where it is, what is wrong, how to fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    pub file: String,
    /// The position of the offending value (or key), when the file says.
    pub pos: Option<Pos>,
    pub message: String,
    pub hint: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = self.pos {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        write!(f, ": {}\n  hint: {}", self.message, self.hint)
    }
}

/// Why a configuration cannot be used: every problem found, each located.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", .problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// One problem of `file` with no position.
    pub fn new(file: &Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![Problem {
                file: file.display().to_string(),
                pos: None,
                message: message.into(),
                hint: hint.into(),
            }],
        }
    }
}

/// The checks of a configuration's values: each failed check becomes a [`Problem`] located at
/// its key path in the YAML (e.g. `["budget", "eta"]`). The one place every value range of a
/// search configuration is enforced.
pub(crate) struct Checks<'a> {
    file: &'a Path,
    pos: &'a PosMap,
    problems: Vec<Problem>,
}

impl<'a> Checks<'a> {
    pub(crate) fn new(file: &'a Path, pos: &'a PosMap) -> Self {
        Checks {
            file,
            pos,
            problems: Vec::new(),
        }
    }

    /// Records a problem at `path` unless `ok`. The position is the value's, else its nearest
    /// enclosing key's.
    pub(crate) fn require(&mut self, ok: bool, path: &[&str], message: String, hint: &str) {
        if ok {
            return;
        }
        let pos = (0..=path.len())
            .rev()
            .find_map(|n| self.pos.get(&path[..n]))
            .map(|n| n.value);
        self.problems.push(Problem {
            file: self.file.display().to_string(),
            pos,
            message,
            hint: hint.into(),
        });
    }

    /// The problems found, if any.
    pub(crate) fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
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
];

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
        let message = e.to_string();
        let hint = MOVED
            .iter()
            .find(|(old, _)| message.starts_with(&format!("unknown field `{old}`")))
            .map(|(old, new)| format!("`{old}` now lives under `{new}` (see docs/SEARCH.md)"))
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

impl SearchConfig {
    /// Checks every value that serde's types do not rule out.
    pub(crate) fn check(&self, c: &mut Checks) {
        let b = &self.budget;
        c.require(
            b.max_epochs >= 1,
            &["budget", "max_epochs"],
            "budget.max_epochs must be at least 1".into(),
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
            e.workers >= 1,
            &["execution", "workers"],
            "execution.workers must be at least 1".into(),
            "2 workers suit a 2-core machine",
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
        c.require(
            self.train.run.threads != Some(0),
            &["train", "run", "threads"],
            "train.run.threads must be at least 1".into(),
            "leave it out to share the cores among the trials",
        );
        c.require(
            self.strategy.kind != StrategyKind::Evolution
                || (self.strategy.population >= 2 && self.strategy.sample >= 1),
            &["strategy"],
            "regularised evolution needs strategy.population ≥ 2 and strategy.sample ≥ 1".into(),
            "for example `strategy: {kind: evolution, population: 8, sample: 3}`",
        );
        for (i, s) in self.candidates.iter().enumerate() {
            let CandidateSource::Generator { generate: g } = s else {
                continue;
            };
            let at = i.to_string();
            let path = ["candidates", at.as_str(), "generate"];
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
