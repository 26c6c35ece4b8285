//! The search configuration (YAML). Examples live in `specs/search/`; `docs/SEARCH.md` is the
//! reference.

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
    #[serde(default)]
    pub data: DataCfg,
    #[serde(default)]
    pub arch: ArchCfg,
    #[serde(default)]
    pub trainer: TrainerCfg,
    pub budget: BudgetCfg,
    #[serde(default)]
    pub strategy: StrategyCfg,
    #[serde(default)]
    pub finalists: FinalistsCfg,
    /// A random-search baseline at equal budget (reported beside the strategy's result).
    #[serde(default = "yes")]
    pub baseline: bool,
    #[serde(default)]
    pub execution: ExecutionCfg,
    #[serde(default)]
    pub theory: TheoryCfg,
    /// The seed of the strategy, the baseline and the search trials (finalists use seed + 1,
    /// seed + 2, ...).
    #[serde(default)]
    pub seed: u64,
    pub candidates: Vec<CandidateSource>,
}

fn yes() -> bool {
    true
}

/// The data set, as `optarch train` takes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataCfg {
    pub dataset: String,
    /// Archive, folder or data root; default `$OPTARCH_DATA`, else a download.
    pub path: Option<PathBuf>,
    pub download: bool,
    pub train_subset: Option<usize>,
    /// Validation images carved from the training set (the search ranks on them).
    pub val: usize,
    pub test_subset: Option<usize>,
}

impl Default for DataCfg {
    fn default() -> Self {
        DataCfg {
            dataset: "cifar10".into(),
            path: None,
            download: true,
            train_subset: None,
            val: 5000,
            test_subset: None,
        }
    }
}

/// The macro-architecture every candidate is trained in.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ArchCfg {
    pub preset: String,
    pub depth: usize,
    pub widths: Option<Vec<i64>>,
    pub stage_steps: Option<Vec<usize>>,
}

impl Default for ArchCfg {
    fn default() -> Self {
        ArchCfg {
            preset: "cifar-resnet".into(),
            depth: 20,
            widths: None,
            stage_steps: None,
        }
    }
}

impl ArchCfg {
    /// Blocks in the first stage: the step count candidates are unrolled to for hashing and
    /// theory (the preset's own count unless `stage_steps` overrides it).
    pub fn first_stage_steps(&self) -> usize {
        if let Some(s) = self.stage_steps.as_ref().and_then(|s| s.first()) {
            return (*s).max(1);
        }
        optarch_core::exec::Arch::preset(&self.preset, self.depth, 10)
            .ok()
            .and_then(|a| a.stages.first().map(|st| st.steps))
            .unwrap_or(1)
            .max(1)
    }
}

/// Trainer settings shared by every trial.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainerCfg {
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub no_decay_bn_bias: bool,
    /// `cosine`, `onecycle[:warmup]` or `multistep[:a,b]`, over the largest budget.
    pub schedule: String,
    pub label_smoothing: f64,
    pub grad_clip: Option<f64>,
    pub augment: bool,
    pub amp: Option<String>,
    /// Intra-op threads of each trial process.
    pub threads: i32,
}

impl Default for TrainerCfg {
    fn default() -> Self {
        TrainerCfg {
            batch_size: 128,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            no_decay_bn_bias: true,
            schedule: "cosine".into(),
            label_smoothing: 0.0,
            grad_clip: None,
            augment: true,
            amp: None,
            threads: 1,
        }
    }
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
pub struct BudgetCfg {
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

impl BudgetCfg {
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

/// Which candidates are started.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StrategyCfg {
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
pub struct FinalistsCfg {
    pub top_k: usize,
    /// Seeds per finalist (at least 3).
    pub seeds: usize,
}

impl Default for FinalistsCfg {
    fn default() -> Self {
        FinalistsCfg { top_k: 3, seeds: 3 }
    }
}

/// Where trials run.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutionCfg {
    /// Parallel trial processes on CPU.
    pub workers: usize,
    /// `auto` (GPUs when libtorch sees any, else CPU), `cpu` or `cuda`.
    pub device: String,
    /// Trials sharing one GPU.
    pub trials_per_gpu: usize,
    /// Attempts of a trial whose process crashed before it is marked failed.
    pub max_attempts: u32,
    /// Fork trial processes from a warm server that has loaded libtorch once (false: start
    /// each as `optarch trial`, paying libtorch's start-up every time).
    pub fork_server: bool,
}

impl Default for ExecutionCfg {
    fn default() -> Self {
        ExecutionCfg {
            workers: 2,
            device: "auto".into(),
            trials_per_gpu: 1,
            max_attempts: 2,
            fork_server: true,
        }
    }
}

/// Spec theory used to prune generated candidates and to report rates.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TheoryCfg {
    /// Condition number of the quadratics.
    pub kappa: f64,
    /// Prune generated recurrences whose asymptotic rate is at least this (1 = unstable).
    pub max_rate: f64,
}

impl Default for TheoryCfg {
    fn default() -> Self {
        TheoryCfg {
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
    Generator { generate: GeneratorCfg },
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
pub struct GeneratorCfg {
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

/// A configuration error, located when it comes from YAML.
#[derive(Debug, thiserror::Error)]
#[error("{file}{loc}: {message}\n  hint: {hint}")]
pub struct ConfigError {
    pub file: String,
    pub loc: String,
    pub message: String,
    pub hint: String,
}

impl ConfigError {
    pub fn new(file: &Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        ConfigError {
            file: file.display().to_string(),
            loc: String::new(),
            message: message.into(),
            hint: hint.into(),
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

/// Parses and checks a search configuration's text (`path` names it in errors).
pub fn parse(path: &Path, text: &str) -> Result<SearchConfig, ConfigError> {
    let cfg: SearchConfig = serde_yaml::from_str(text).map_err(|e| {
        let loc = e
            .location()
            .map(|l| format!(":{}:{}", l.line(), l.column()))
            .unwrap_or_default();
        ConfigError {
            file: path.display().to_string(),
            loc,
            message: e.to_string(),
            hint: "see docs/SEARCH.md for the keys of a search configuration".into(),
        }
    })?;
    check(path, &cfg)?;
    Ok(cfg)
}

fn check(path: &Path, c: &SearchConfig) -> Result<(), ConfigError> {
    let err = |m: String, h: &str| Err(ConfigError::new(path, m, h));
    let b = &c.budget;
    if b.max_epochs == 0 || b.trials == 0 {
        return err(
            "budget.max_epochs and budget.trials must be at least 1".into(),
            "for example `budget: {min_epochs: 1, max_epochs: 9, eta: 3, trials: 27}`",
        );
    }
    if b.min_epochs > b.max_epochs {
        return err(
            format!(
                "budget.min_epochs ({}) exceeds budget.max_epochs ({})",
                b.min_epochs, b.max_epochs
            ),
            "the first rung cannot be longer than the last",
        );
    }
    if b.eta < 2 {
        return err(
            format!("budget.eta is {}; it must be at least 2", b.eta),
            "η = 3 keeps the top third of each rung",
        );
    }
    if c.finalists.seeds < 3 && c.finalists.top_k > 0 {
        return err(
            format!(
                "finalists.seeds is {}; finalists are re-trained with at least 3 seeds",
                c.finalists.seeds
            ),
            "set `finalists: {seeds: 3}` (or `top_k: 0` to skip the finalists)",
        );
    }
    if c.candidates.is_empty() {
        return err(
            "no candidates".into(),
            "add `candidates: [{spec: ../heavy_ball.yaml}]` or a `generate:` entry",
        );
    }
    if c.execution.workers == 0 || c.execution.trials_per_gpu == 0 {
        return err(
            "execution.workers and execution.trials_per_gpu must be at least 1".into(),
            "2 workers suit a 2-core machine",
        );
    }
    if !matches!(c.execution.device.as_str(), "auto" | "cpu" | "cuda") {
        return err(
            format!(
                "execution.device is `{}`; expected auto, cpu or cuda",
                c.execution.device
            ),
            "GPUs are assigned to trials through CUDA_VISIBLE_DEVICES",
        );
    }
    if c.strategy.kind == StrategyKind::Evolution
        && (c.strategy.population < 2 || c.strategy.sample < 1)
    {
        return err(
            "regularised evolution needs strategy.population ≥ 2 and strategy.sample ≥ 1".into(),
            "for example `strategy: {kind: evolution, population: 8, sample: 3}`",
        );
    }
    if crate::train::Schedule::parse(&c.trainer.schedule).is_err() {
        return err(
            format!("trainer.schedule `{}` is unknown", c.trainer.schedule),
            "use cosine, onecycle[:warmup] or multistep[:a,b]",
        );
    }
    for s in &c.candidates {
        if let CandidateSource::Generator { generate: g } = s {
            if g.history == 0 || g.a.len() != g.history || g.b.len() != g.history {
                return err(
                    format!(
                        "generate: history is {} but a has {} grids and b has {}",
                        g.history,
                        g.a.len(),
                        g.b.len()
                    ),
                    "give one list of values per past iterate for both a and b",
                );
            }
            if g.a.iter().chain(&g.b).any(|v| v.is_empty()) || g.h.is_empty() {
                return err(
                    "generate: an empty coefficient grid".into(),
                    "every a_i, b_i and h needs at least one value",
                );
            }
        }
    }
    Ok(())
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
            c.arch.first_stage_steps(),
            3,
            "ResNet-20: 3 blocks per stage"
        );
        assert_eq!(c.finalists.seeds, 3);
        assert!(c.baseline);
        let b = BudgetCfg {
            min_epochs: 1,
            max_epochs: 4,
            eta: 2,
            trials: 1,
            scheduler: Scheduler::Asha,
        };
        assert_eq!(b.rungs(), [1, 2, 4]);
        let b = BudgetCfg { max_epochs: 5, ..b };
        assert_eq!(b.rungs(), [1, 2, 4, 5]);
        let b = BudgetCfg {
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
        assert!(e.contains("eta is 1"), "{e}");
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
        assert!(e.contains("history is 2 but a has 1"), "{e}");
    }
}
