//! What a report says, computed from the store: the leaderboard, the ASHA rungs, the budget
//! each phase used, the baseline comparison and the rank correlations between theoretical
//! convergence rate and accuracy. Everything here is plain data (serialised as
//! `leaderboard.json`); the text, CSV and HTML writers only format it.

use super::stats::{kendall_p_value, kendall_tau, mean, median, sample_std, spearman_rho};
use crate::search::config::BudgetCfg;
use crate::search::store::{Candidate, Epoch, Experiment, Phase, Trial, TrialStatus};
use serde::Serialize;
use serde_json::Value;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The format name and version written into `leaderboard.json`.
pub const FORMAT: &str = "optarch-report";
pub const FORMAT_VERSION: u32 = 1;

/// Everything read from the store, in memory.
pub(crate) struct Loaded {
    pub experiment: Experiment,
    pub config: Value,
    pub candidates: Vec<Candidate>,
    pub trials: Vec<Trial>,
    /// Epoch rows of each trial, in order.
    pub epochs: BTreeMap<i64, Vec<Epoch>>,
    pub events: Vec<(f64, Option<i64>, String)>,
}

impl Loaded {
    pub fn candidate(&self, id: i64) -> Option<&Candidate> {
        self.candidates.iter().find(|c| c.id == id)
    }

    pub fn candidate_name(&self, id: i64) -> String {
        self.candidate(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| format!("candidate {id}"))
    }

    fn epochs_of(&self, trial: i64) -> &[Epoch] {
        self.epochs.get(&trial).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The row of `trial` at (0-based) `epoch`.
    fn epoch_row(&self, trial: i64, epoch: usize) -> Option<&Epoch> {
        self.epochs_of(trial).iter().find(|e| e.epoch == epoch)
    }
}

/// The score of an epoch row: validation accuracy, else test accuracy (runs without a
/// validation split); `None` unless finite.
pub(crate) fn score_of(e: &Epoch) -> Option<f64> {
    e.val_acc.or(Some(e.test_acc)).filter(|v| v.is_finite())
}

/// The ASHA schedule, from the search configuration (and the trials, where they disagree).
#[derive(Clone, Debug, Serialize)]
pub struct Schedule {
    pub min_epochs: Option<usize>,
    pub max_epochs: Option<usize>,
    pub eta: Option<f64>,
    /// The epoch budget of each rung, rung 0 first.
    pub rungs: Vec<usize>,
    pub finalists_top_k: Option<usize>,
    pub finalists_seeds: Option<usize>,
}

fn get_usize(v: &Value, path: &[&str]) -> Option<usize> {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_u64)
        .map(|n| n as usize)
}

impl Schedule {
    /// Rung budgets `min·ηⁱ` below `max`, then `max`; rungs seen in the trials (a trial's
    /// `rung` with its `budget`) override the computed ones.
    pub(crate) fn new(config: &Value, trials: &[Trial]) -> Schedule {
        let min = get_usize(config, &["budget", "min_epochs"]);
        let max = get_usize(config, &["budget", "max_epochs"]);
        let eta = config
            .get("budget")
            .and_then(|b| b.get("eta"))
            .and_then(Value::as_f64);
        // The driver's own rule when the configuration parses as one (it does when the driver
        // wrote it); else min·ηⁱ below max, then max.
        let parsed = config
            .get("budget")
            .and_then(|b| serde_json::from_value::<BudgetCfg>(b.clone()).ok());
        let mut rungs = match (&parsed, min, max, eta) {
            (Some(b), _, _, _) => b.rungs(),
            (None, Some(min), Some(max), Some(eta)) => {
                let mut v = Vec::new();
                if min >= 1 && eta > 1.0 {
                    let mut b = min as f64;
                    while (b.round() as usize) < max && v.len() < 64 {
                        v.push(b.round() as usize);
                        b *= eta;
                    }
                }
                v.push(max);
                v
            }
            _ => Vec::new(),
        };
        for t in trials.iter().filter(|t| t.phase == Phase::Search) {
            if t.rung < rungs.len() {
                rungs[t.rung] = t.budget;
            } else if t.rung == rungs.len() {
                rungs.push(t.budget);
            }
        }
        if rungs.is_empty() {
            // No configuration and no search trials: the baseline's budget is the only rung.
            if let Some(m) = trials.iter().map(|t| t.max_budget).max() {
                rungs.push(m);
            }
        }
        Schedule {
            min_epochs: min,
            max_epochs: max.or_else(|| rungs.last().copied()),
            eta,
            rungs,
            finalists_top_k: get_usize(config, &["finalists", "top_k"]),
            finalists_seeds: get_usize(config, &["finalists", "seeds"]),
        }
    }
}

/// A trial's accuracy at one point of its training.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Point {
    pub trial: i64,
    /// The rung (search trials), else `None`.
    pub rung: Option<usize>,
    /// Epochs trained at this point.
    pub epochs: usize,
    pub score: f64,
    pub test_acc: f64,
}

/// The score of a search trial at rung `i`, if it trained that far.
pub(crate) fn rung_point(l: &Loaded, s: &Schedule, t: &Trial, i: usize) -> Option<Point> {
    let b = *s.rungs.get(i)?;
    let e = l.epoch_row(t.id, b.checked_sub(1)?)?;
    Some(Point {
        trial: t.id,
        rung: Some(i),
        epochs: b,
        score: score_of(e)?,
        test_acc: e.test_acc,
    })
}

/// A trial's scored point: for a search trial the highest rung it reached, for a baseline or
/// final trial its full budget (none before it gets there).
pub(crate) fn trial_point(l: &Loaded, s: &Schedule, t: &Trial) -> Option<Point> {
    match t.phase {
        Phase::Search => (0..s.rungs.len())
            .rev()
            .find_map(|i| rung_point(l, s, t, i)),
        Phase::Baseline | Phase::Final => {
            let e = l.epoch_row(t.id, t.max_budget.checked_sub(1)?)?;
            Some(Point {
                trial: t.id,
                rung: None,
                epochs: t.max_budget,
                score: score_of(e)?,
                test_acc: e.test_acc,
            })
        }
    }
}

/// Higher rung first, then higher score.
fn better(a: &Point, b: &Point) -> Ordering {
    a.rung
        .cmp(&b.rung)
        .then(a.score.total_cmp(&b.score))
        .reverse()
}

/// Mean ± sample standard deviation of the finalists' test accuracies.
#[derive(Clone, Debug, Serialize)]
pub struct FinalStats {
    pub mean: f64,
    /// `None` with a single seed.
    pub std: Option<f64>,
    pub n: usize,
    /// One test accuracy per finished seed, in trial order.
    pub values: Vec<f64>,
}

/// One line of the leaderboard: a candidate.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub rank: usize,
    pub candidate: i64,
    pub name: String,
    pub origin: String,
    /// The phases it took part in, e.g. `search+final`.
    pub phases: String,
    pub parameters: Option<i64>,
    pub multiply_adds: Option<i64>,
    /// Its parameter values (overrides), as stored.
    pub params: Value,
    /// The highest ASHA rung one of its search trials reached.
    pub highest_rung: Option<usize>,
    /// That rung's budget in epochs.
    pub rung_epochs: Option<usize>,
    /// The best validation accuracy at that rung.
    pub score: Option<f64>,
    /// Finalists: test accuracy over seeds.
    pub final_test: Option<FinalStats>,
    /// The final mean when there are finalists, else the test accuracy of its best trial at
    /// that trial's scored point.
    pub test_acc: Option<f64>,
    /// Where `test_acc` comes from: `final`, `search` or `baseline`.
    pub test_from: Option<String>,
    pub contraction: Option<f64>,
    pub asymptotic: Option<f64>,
    pub trials: usize,
    pub diverged: usize,
    pub oom: usize,
    pub failed: usize,
    /// Epochs trained over all its trials.
    pub epochs: usize,
    /// Its best trial (the picture and the curves come from it).
    pub best_trial: Option<i64>,
}

impl Row {
    /// Its overrides as `beta=0.5, h=1`.
    pub fn params_text(&self) -> String {
        match &self.params {
            Value::Object(m) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s}"),
                    v => format!("{k}={v}"),
                })
                .collect::<Vec<_>>()
                .join(", "),
            Value::Null => String::new(),
            v => v.to_string(),
        }
    }
}

fn row_order(a: &Row, b: &Row) -> Ordering {
    let fm = |r: &Row| r.final_test.as_ref().map(|f| f.mean);
    // Finalists first, by mean test accuracy; then by rung and score; then baseline-only
    // candidates by their test accuracy; then the rest, in the order they were created.
    let group = |r: &Row| match (fm(r), r.highest_rung, r.test_acc) {
        (Some(_), _, _) => 0,
        (None, Some(_), _) => 1,
        (None, None, Some(_)) => 2,
        _ => 3,
    };
    let desc = |x: Option<f64>, y: Option<f64>| match (x, y) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    };
    group(a)
        .cmp(&group(b))
        .then_with(|| desc(fm(a), fm(b)))
        .then_with(|| b.highest_rung.cmp(&a.highest_rung))
        .then_with(|| desc(a.score, b.score))
        .then_with(|| desc(a.test_acc, b.test_acc))
        .then_with(|| a.candidate.cmp(&b.candidate))
}

/// Statistics of one ASHA rung (search trials only).
#[derive(Clone, Debug, Serialize)]
pub struct RungStats {
    pub rung: usize,
    /// Epochs a trial has trained when it is scored at this rung.
    pub epochs: usize,
    /// Trials scored at this rung.
    pub reached: usize,
    /// Trials promoted beyond it (`None` for the last rung).
    pub promoted: Option<usize>,
    pub best: Option<f64>,
    pub median: Option<f64>,
    /// Kendall's τ between the scores at this rung and at the next, over the trials that
    /// reached both: how well a short run predicts a longer one.
    pub tau_next: Option<f64>,
    pub n_next: usize,
}

/// How much each phase trained.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PhaseUse {
    pub trials: usize,
    pub epochs: usize,
    pub train_seconds: f64,
}

/// The budget of each phase: the search and the random baseline are meant to be equal.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Budget {
    pub search: PhaseUse,
    pub baseline: PhaseUse,
    #[serde(rename = "final")]
    pub finals: PhaseUse,
}

/// The best trial of a phase.
#[derive(Clone, Debug, Serialize)]
pub struct Best {
    pub candidate: i64,
    pub name: String,
    pub trial: i64,
    pub epochs: usize,
    pub score: f64,
    pub test_acc: f64,
}

/// The search against the random baseline at equal budget.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// The best search trial at the highest rung any reached.
    pub search: Option<Best>,
    /// The best baseline trial at the full budget.
    pub baseline: Option<Best>,
    /// The finalist with the best mean test accuracy (its leaderboard rank is 1).
    pub finals: Option<(String, FinalStats)>,
}

/// A candidate's point: (name, x, y).
pub type Labelled = (String, f64, f64);

/// A rank correlation between a convergence rate and an accuracy, over candidates.
#[derive(Clone, Debug, Serialize)]
pub struct Correlation {
    /// `contraction` or `asymptotic`.
    pub rate: String,
    /// Which accuracy, in words.
    pub accuracy: String,
    pub n: usize,
    pub kendall_tau: Option<f64>,
    /// Two-sided p-value of τ under independence (exact up to 8 points).
    pub p_value: Option<f64>,
    pub spearman_rho: Option<f64>,
    /// (candidate name, rate, accuracy).
    pub points: Vec<Labelled>,
}

/// A trial that ended in a fault.
#[derive(Clone, Debug, Serialize)]
pub struct Fault {
    pub trial: i64,
    pub candidate: String,
    pub phase: Phase,
    pub status: TrialStatus,
    pub attempts: u32,
    pub epochs_done: usize,
    pub error: Option<String>,
}

/// A line of the event log.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Seconds since the experiment was created.
    pub at: f64,
    pub trial: Option<i64>,
    pub message: String,
}

/// The whole report (`leaderboard.json`).
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub format: &'static str,
    pub version: u32,
    pub experiment: String,
    pub status: String,
    pub created: f64,
    pub wall_seconds: f64,
    pub schedule: Schedule,
    pub leaderboard: Vec<Row>,
    pub rungs: Vec<RungStats>,
    pub budget: Budget,
    pub comparison: Comparison,
    pub correlations: Vec<Correlation>,
    pub faults: Vec<Fault>,
    pub events: Vec<Event>,
}

fn phase_use(l: &Loaded, phase: Phase) -> PhaseUse {
    let mut u = PhaseUse::default();
    for t in l.trials.iter().filter(|t| t.phase == phase) {
        u.trials += 1;
        u.epochs += l.epochs_of(t.id).len();
        u.train_seconds += t.train_seconds;
    }
    u
}

fn best_of(l: &Loaded, s: &Schedule, phase: Phase) -> Option<Best> {
    l.trials
        .iter()
        .filter(|t| t.phase == phase)
        .filter_map(|t| trial_point(l, s, t).map(|p| (t, p)))
        .min_by(|a, b| better(&a.1, &b.1))
        .map(|(t, p)| Best {
            candidate: t.candidate,
            name: l.candidate_name(t.candidate),
            trial: t.id,
            epochs: p.epochs,
            score: p.score,
            test_acc: p.test_acc,
        })
}

fn leaderboard(l: &Loaded, s: &Schedule) -> Vec<Row> {
    let mut rows: Vec<Row> = l
        .candidates
        .iter()
        .map(|c| {
            let trials: Vec<&Trial> = l.trials.iter().filter(|t| t.candidate == c.id).collect();
            let count = |st: TrialStatus| trials.iter().filter(|t| t.status == st).count();
            let mut phases: Vec<&str> = Vec::new();
            for p in [Phase::Search, Phase::Baseline, Phase::Final] {
                if trials.iter().any(|t| t.phase == p) {
                    phases.push(p.as_str());
                }
            }
            let best_in = |phase: Phase| {
                trials
                    .iter()
                    .filter(|t| t.phase == phase)
                    .filter_map(|t| trial_point(l, s, t))
                    .min_by(better)
            };
            let search = best_in(Phase::Search);
            let baseline = best_in(Phase::Baseline);
            let finals: Vec<f64> = trials
                .iter()
                .filter(|t| t.phase == Phase::Final)
                .filter_map(|t| trial_point(l, s, t))
                .map(|p| p.test_acc)
                .filter(|v| v.is_finite())
                .collect();
            let final_test = mean(&finals).map(|m| FinalStats {
                mean: m,
                std: sample_std(&finals),
                n: finals.len(),
                values: finals.clone(),
            });
            let (test_acc, test_from) = match (&final_test, &search, &baseline) {
                (Some(f), _, _) => (Some(f.mean), Some("final")),
                (None, Some(p), _) => (Some(p.test_acc), Some("search")),
                (None, None, Some(p)) => (Some(p.test_acc), Some("baseline")),
                _ => (None, None),
            };
            let best_trial = search
                .or(baseline)
                .map(|p| p.trial)
                .or_else(|| trials.first().map(|t| t.id));
            Row {
                rank: 0,
                candidate: c.id,
                name: c.name.clone(),
                origin: c.origin.clone(),
                phases: phases.join("+"),
                parameters: trials.iter().find_map(|t| t.parameters),
                multiply_adds: trials.iter().find_map(|t| t.multiply_adds),
                params: serde_json::from_str(&c.params_json)
                    .unwrap_or_else(|_| Value::String(c.params_json.clone())),
                highest_rung: search.and_then(|p| p.rung),
                rung_epochs: search.map(|p| p.epochs),
                score: search.map(|p| p.score),
                final_test,
                test_acc,
                test_from: test_from.map(str::to_string),
                contraction: c.contraction.filter(|v| v.is_finite()),
                asymptotic: c.asymptotic.filter(|v| v.is_finite()),
                trials: trials.len(),
                diverged: count(TrialStatus::Diverged),
                oom: count(TrialStatus::Oom),
                failed: count(TrialStatus::Failed),
                epochs: trials.iter().map(|t| l.epochs_of(t.id).len()).sum(),
                best_trial,
            }
        })
        .collect();
    rows.sort_by(row_order);
    for (i, r) in rows.iter_mut().enumerate() {
        r.rank = i + 1;
    }
    rows
}

fn rung_stats(l: &Loaded, s: &Schedule) -> Vec<RungStats> {
    let search: Vec<&Trial> = l
        .trials
        .iter()
        .filter(|t| t.phase == Phase::Search)
        .collect();
    let last = s.rungs.len().saturating_sub(1);
    (0..s.rungs.len())
        .map(|i| {
            let scores: Vec<f64> = search
                .iter()
                .filter_map(|t| rung_point(l, s, t, i))
                .map(|p| p.score)
                .collect();
            let (mut here, mut next) = (Vec::new(), Vec::new());
            for t in &search {
                if let (Some(a), Some(b)) = (rung_point(l, s, t, i), rung_point(l, s, t, i + 1)) {
                    here.push(a.score);
                    next.push(b.score);
                }
            }
            RungStats {
                rung: i,
                epochs: s.rungs[i],
                reached: scores.len(),
                promoted: (i < last).then(|| search.iter().filter(|t| t.rung > i).count()),
                best: scores.iter().copied().reduce(f64::max),
                median: median(&scores),
                tau_next: kendall_tau(&here, &next),
                n_next: here.len(),
            }
        })
        .collect()
}

/// The best first-rung score of each candidate: every search candidate trained the same
/// number of epochs there, so these accuracies compare fairly.
pub(crate) fn first_rung_scores(l: &Loaded, s: &Schedule) -> BTreeMap<i64, f64> {
    let mut out: BTreeMap<i64, f64> = BTreeMap::new();
    for t in l.trials.iter().filter(|t| t.phase == Phase::Search) {
        if let Some(p) = rung_point(l, s, t, 0) {
            let e = out.entry(t.candidate).or_insert(p.score);
            *e = e.max(p.score);
        }
    }
    out
}

fn correlations(l: &Loaded, s: &Schedule, rows: &[Row]) -> Vec<Correlation> {
    let first = first_rung_scores(l, s);
    let epochs0 = s.rungs.first().copied().unwrap_or(0);
    let mut out = Vec::new();
    for rate in ["contraction", "asymptotic"] {
        let rate_of = |c: &Candidate| match rate {
            "contraction" => c.contraction,
            _ => c.asymptotic,
        };
        let sets: [(String, Vec<Labelled>); 2] = [
            (
                format!("validation accuracy after {epochs0} epochs (first rung, every candidate)"),
                l.candidates
                    .iter()
                    .filter_map(|c| {
                        let r = rate_of(c).filter(|v| v.is_finite())?;
                        Some((c.name.clone(), r, *first.get(&c.id)?))
                    })
                    .collect(),
            ),
            (
                "mean final test accuracy (finalists)".to_string(),
                rows.iter()
                    .filter_map(|row| {
                        let c = l.candidate(row.candidate)?;
                        let r = rate_of(c).filter(|v| v.is_finite())?;
                        Some((row.name.clone(), r, row.final_test.as_ref()?.mean))
                    })
                    .collect(),
            ),
        ];
        for (accuracy, points) in sets {
            let x: Vec<f64> = points.iter().map(|p| p.1).collect();
            let y: Vec<f64> = points.iter().map(|p| p.2).collect();
            out.push(Correlation {
                rate: rate.to_string(),
                accuracy,
                n: points.len(),
                kendall_tau: kendall_tau(&x, &y),
                p_value: kendall_p_value(&x, &y),
                spearman_rho: spearman_rho(&x, &y),
                points,
            });
        }
    }
    out
}

/// Computes the report from what the store holds.
pub(crate) fn build(l: &Loaded) -> Report {
    let s = Schedule::new(&l.config, &l.trials);
    let leaderboard = leaderboard(l, &s);
    let finals = leaderboard
        .iter()
        .filter_map(|r| r.final_test.clone().map(|f| (r.name.clone(), f)))
        .next();
    let faults = l
        .trials
        .iter()
        .filter(|t| t.status.is_final())
        .map(|t| Fault {
            trial: t.id,
            candidate: l.candidate_name(t.candidate),
            phase: t.phase,
            status: t.status,
            attempts: t.attempts,
            epochs_done: t.epochs_done,
            error: t.error.clone(),
        })
        .collect();
    let created = l.experiment.created;
    Report {
        format: FORMAT,
        version: FORMAT_VERSION,
        experiment: l.experiment.name.clone(),
        status: l.experiment.status.clone(),
        created,
        wall_seconds: l.experiment.wall_seconds,
        rungs: rung_stats(l, &s),
        budget: Budget {
            search: phase_use(l, Phase::Search),
            baseline: phase_use(l, Phase::Baseline),
            finals: phase_use(l, Phase::Final),
        },
        comparison: Comparison {
            search: best_of(l, &s, Phase::Search),
            baseline: best_of(l, &s, Phase::Baseline),
            finals,
        },
        correlations: correlations(l, &s, &leaderboard),
        leaderboard,
        faults,
        events: l
            .events
            .iter()
            .map(|(at, trial, message)| Event {
                at: at - created,
                trial: *trial,
                message: message.clone(),
            })
            .collect(),
        schedule: s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rungs_follow_the_driver_config_else_the_formula_else_the_trials() {
        let driver = json!({"budget": {"min_epochs": 2, "max_epochs": 20, "eta": 3, "trials": 9}});
        assert_eq!(Schedule::new(&driver, &[]).rungs, [2, 6, 18, 20]);
        let none = json!({"budget": {"max_epochs": 20, "trials": 9, "scheduler": "none"}});
        assert_eq!(Schedule::new(&none, &[]).rungs, [20]);
        // Not the driver's form (no `trials`): min·ηⁱ below max, then max.
        let loose = json!({"budget": {"min_epochs": 1, "max_epochs": 9, "eta": 3}});
        let s = Schedule::new(&loose, &[]);
        assert_eq!(s.rungs, [1, 3, 9]);
        assert_eq!(s.max_epochs, Some(9));
        assert_eq!(Schedule::new(&Value::Null, &[]).rungs, Vec::<usize>::new());
    }
}
