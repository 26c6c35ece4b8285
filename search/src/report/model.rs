//! What a report says, computed from the store: the leaderboard, the ASHA rungs, the budget
//! each phase used, the baseline comparison and the rank correlations between theoretical
//! convergence rate and accuracy. Everything here is plain data (serialised as
//! `leaderboard.json`); the text, CSV and HTML writers only format it.

use super::stats::{
    kendall_p_value, kendall_tau, mean, median, paired_interval, sample_std, spearman_p_value,
    spearman_rho, Interval,
};
use crate::search::candidate::Candidate;
use crate::search::config::SearchConfig;
use crate::search::ids::{CandidateId, TrialId};
use crate::search::rank::{self, Epochs, Standing};
use crate::search::store::{Experiment, Phase, Stored, Trial, TrialStatus};
use optarch_core::spec::Overrides;
use serde::Serialize;
use std::collections::BTreeMap;

/// The format name and version written into `leaderboard.json`.
pub(super) const FORMAT: &str = "optarch-report";
pub(super) const FORMAT_VERSION: u32 = 1;

/// Everything read from the store, in memory.
pub(crate) struct Loaded {
    pub experiment: Experiment,
    pub config: SearchConfig,
    pub candidates: Vec<Stored<CandidateId, Candidate>>,
    pub trials: Vec<Trial>,
    /// Epoch rows of each trial, in order.
    pub epochs: Epochs,
    pub events: Vec<(f64, Option<TrialId>, String)>,
}

impl Loaded {
    pub(super) fn candidate(&self, id: CandidateId) -> Option<&Stored<CandidateId, Candidate>> {
        self.candidates.iter().find(|c| c.id == id)
    }

    pub(super) fn candidate_name(&self, id: CandidateId) -> String {
        self.candidate(id)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| format!("candidate {id}"))
    }

    fn epochs_of(&self, trial: TrialId) -> usize {
        self.epochs.get(&trial).map_or(0, Vec::len)
    }
}

/// The successive-halving schedule of the search.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Schedule {
    pub min_epochs: usize,
    pub max_epochs: usize,
    pub eta: usize,
    /// The epoch budget of each rung, rung 0 first.
    pub rungs: Vec<usize>,
    pub finalists_top_k: usize,
    pub finalists_seeds: usize,
    /// Whether the configuration runs the random-search baseline (`baseline: false` turns it off).
    pub baseline: bool,
}

impl Schedule {
    pub(crate) fn new(config: &SearchConfig) -> Schedule {
        let b = &config.budget;
        Schedule {
            min_epochs: b.min_epochs,
            max_epochs: b.max_epochs,
            eta: b.eta,
            rungs: b.rungs(),
            finalists_top_k: config.finalists.top_k,
            finalists_seeds: config.finalists.seeds,
            baseline: config.baseline,
        }
    }
}

/// Mean ± sample standard deviation of accuracies over seeds.
#[derive(Clone, Debug, Serialize)]
pub(super) struct FinalStats {
    pub mean: f64,
    /// `None` with a single seed.
    pub std: Option<f64>,
    pub n: usize,
    /// One accuracy per finished seed, in trial order.
    pub values: Vec<f64>,
}

impl FinalStats {
    pub(super) fn of(values: Vec<f64>) -> Option<FinalStats> {
        Some(FinalStats {
            mean: mean(&values)?,
            std: sample_std(&values),
            n: values.len(),
            values,
        })
    }
}

/// One line of the leaderboard: a candidate.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Row {
    pub rank: usize,
    pub candidate: CandidateId,
    pub name: String,
    pub origin: String,
    /// The phases it took part in, e.g. `search+final`.
    pub phases: String,
    pub parameters: Option<i64>,
    pub multiply_adds: Option<i64>,
    /// Its parameter values (overrides), as stored.
    pub params: Overrides,
    /// The highest ASHA rung one of its search trials reached.
    pub highest_rung: Option<usize>,
    /// That rung's budget in epochs.
    pub rung_epochs: Option<usize>,
    /// The best validation accuracy at that rung.
    pub score: Option<f64>,
    /// Its final trials' validation accuracy over seeds (what the leaderboard ranks first).
    pub final_val: Option<FinalStats>,
    /// Its final trials' test accuracy over seeds (reported, never used to rank).
    pub final_test: Option<FinalStats>,
    /// Its best random-baseline trial's validation accuracy at the full budget.
    pub baseline_val: Option<f64>,
    /// A named reference (`finalists.references`).
    pub reference: bool,
    pub contraction: Option<f64>,
    pub asymptotic: Option<f64>,
    pub trials: usize,
    pub diverged: usize,
    pub oom: usize,
    pub failed: usize,
    /// Epochs trained over all its trials.
    pub epochs: usize,
    /// Its best trial (the picture and the curves come from it).
    pub best_trial: Option<TrialId>,
}

impl Row {
    /// Its overrides as `beta=0.5, h=1`.
    pub(super) fn params_text(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Statistics of one ASHA rung (search trials only).
#[derive(Clone, Debug, Serialize)]
pub(super) struct RungStats {
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
    /// A trial's epochs at this rung as a share of the full budget (`max_epochs`).
    pub share: f64,
    /// Kendall's τ between each candidate's best score at this rung and its mean final
    /// validation accuracy, over the candidates with both: how well this rung predicts the
    /// full-budget ranking.
    pub tau_final: Option<f64>,
    pub n_final: usize,
}

/// How much each phase trained.
#[derive(Clone, Debug, Default, Serialize)]
pub(super) struct PhaseUse {
    pub trials: usize,
    pub epochs: usize,
    pub train_seconds: f64,
}

/// The budget of each phase: the search and the random baseline are meant to be equal.
#[derive(Clone, Debug, Default, Serialize)]
pub(super) struct Budget {
    pub search: PhaseUse,
    pub baseline: PhaseUse,
    #[serde(rename = "final")]
    pub finals: PhaseUse,
}

/// The best trial of a phase.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Best {
    pub candidate: CandidateId,
    pub name: String,
    pub trial: TrialId,
    pub epochs: usize,
    /// Validation accuracy.
    pub score: f64,
}

/// The search against the random baseline at equal budget.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Comparison {
    /// The best search trial at the highest rung any reached.
    pub search: Option<Best>,
    /// The best baseline trial at the full budget.
    pub baseline: Option<Best>,
    /// The candidate with the best mean final validation accuracy (its leaderboard rank is 1).
    pub finals: Option<(String, FinalStats)>,
}

/// The search's best candidate against a named reference on the test set, seed by seed.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Versus {
    /// The winner, or when the winner is a reference itself, the best finalist that is not.
    pub challenger: String,
    pub reference: String,
    /// The challenger's and the reference's test accuracy over the seeds.
    pub challenger_test: Option<FinalStats>,
    pub test: Option<FinalStats>,
    /// Challenger − reference, paired by seed, with its 95 % interval.
    pub difference: Option<Interval>,
}

/// The unbiased estimate: test accuracies of the winner and the named references, which no
/// decision of the search has read.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Estimate {
    pub winner: String,
    /// The winner's test accuracy over its final seeds.
    pub test: Option<FinalStats>,
    pub references: Vec<Versus>,
}

/// A candidate's point: (name, x, y).
pub(super) type Labelled = (String, f64, f64);

/// A rank correlation between a convergence rate and an accuracy, over candidates.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Correlation {
    /// `contraction` or `asymptotic`.
    pub rate: String,
    /// Which accuracy, in words.
    pub accuracy: String,
    pub n: usize,
    pub kendall_tau: Option<f64>,
    /// Two-sided p-value of τ under independence (exact up to 8 points).
    pub p_value: Option<f64>,
    pub spearman_rho: Option<f64>,
    /// Two-sided p-value of ρ under independence (exact up to 8 points).
    pub spearman_p_value: Option<f64>,
    /// (candidate name, rate, accuracy).
    pub points: Vec<Labelled>,
}

/// A trial that ended in a fault.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Fault {
    pub trial: TrialId,
    pub candidate: String,
    pub phase: Phase,
    pub status: TrialStatus,
    pub attempts: u32,
    pub epochs_done: usize,
    pub error: Option<String>,
}

/// A line of the event log.
#[derive(Clone, Debug, Serialize)]
pub(super) struct Event {
    /// Seconds since the experiment was created.
    pub at: f64,
    pub trial: Option<TrialId>,
    pub message: String,
}

/// The whole report (`leaderboard.json`).
#[derive(Clone, Debug, Serialize)]
pub(super) struct Report {
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
    /// The winner's test accuracy and its comparison with the references (`None` before the
    /// final trials end).
    pub estimate: Option<Estimate>,
    pub correlations: Vec<Correlation>,
    pub faults: Vec<Fault>,
    pub events: Vec<Event>,
}

fn phase_use(l: &Loaded, phase: Phase) -> PhaseUse {
    let mut u = PhaseUse::default();
    for t in l.trials.iter().filter(|t| t.phase == phase) {
        u.trials += 1;
        u.epochs += l.epochs_of(t.id);
        u.train_seconds += t.train_seconds;
    }
    u
}

fn best_of(l: &Loaded, s: &Schedule, phase: Phase) -> Option<Best> {
    let trials = l.trials.iter().filter(|t| t.phase == phase);
    let (candidate, p) = rank::best_points(&l.epochs, &s.rungs, trials)
        .into_iter()
        .next()?;
    Some(Best {
        candidate,
        name: l.candidate_name(candidate),
        trial: p.trial,
        epochs: p.epochs,
        score: p.score,
    })
}

/// The phases trial list `trials` took part in, e.g. `search+final`.
fn phases(trials: &[&Trial]) -> String {
    let mut out: Vec<&str> = Vec::new();
    for p in [Phase::Search, Phase::Baseline, Phase::Final] {
        if trials.iter().any(|t| t.phase == p) {
            out.push(p.as_str());
        }
    }
    out.join("+")
}

/// The leaderboard row of a candidate where it stands: validation accuracies only.
fn row(c: &Stored<CandidateId, Candidate>, l: &Loaded, st: &Standing) -> Row {
    let trials: Vec<&Trial> = l.trials.iter().filter(|t| t.candidate == c.id).collect();
    let count = |x: TrialStatus| trials.iter().filter(|t| t.status == x).count();
    let best_trial = st
        .search
        .or(st.baseline)
        .or(st.finals.first().copied())
        .map(|p| p.trial)
        .or_else(|| trials.first().map(|t| t.id));
    Row {
        rank: 0,
        candidate: c.id,
        name: c.name.clone(),
        origin: c.origin.clone(),
        phases: phases(&trials),
        parameters: trials.iter().find_map(|t| t.parameters),
        multiply_adds: trials.iter().find_map(|t| t.multiply_adds),
        params: c.overrides.clone(),
        highest_rung: st.search.and_then(|p| p.rung),
        rung_epochs: st.search.map(|p| p.epochs),
        score: st.search.map(|p| p.score),
        final_val: FinalStats::of(st.finals.iter().map(|p| p.score).collect()),
        final_test: FinalStats::of(tests_by_seed(l, st).into_values().collect()),
        baseline_val: st.baseline.map(|p| p.score),
        reference: c.reference,
        contraction: c.contraction.filter(|v| v.is_finite()),
        asymptotic: c.asymptotic.filter(|v| v.is_finite()),
        trials: trials.len(),
        diverged: count(TrialStatus::Diverged),
        oom: count(TrialStatus::Oom),
        failed: count(TrialStatus::Failed),
        epochs: trials.iter().map(|t| l.epochs_of(t.id)).sum(),
        best_trial,
    }
}

/// Every candidate where it stands ([`rank::Standing::order`]), ranked from 1.
fn leaderboard(l: &Loaded, standings: &[Standing]) -> Vec<Row> {
    standings
        .iter()
        .enumerate()
        .filter_map(|(i, st)| {
            let mut r = row(l.candidate(st.candidate)?, l, st);
            r.rank = i + 1;
            Some(r)
        })
        .collect()
}

/// The final trials' test accuracies of a candidate, by seed.
fn tests_by_seed(l: &Loaded, st: &Standing) -> BTreeMap<u64, f64> {
    st.finals
        .iter()
        .filter_map(|p| {
            let seed = l.trials.iter().find(|t| t.id == p.trial)?.seed;
            Some((seed, p.test_acc.filter(|v| v.is_finite())?))
        })
        .collect()
}

/// The winner's test accuracy, and the search's best candidate against each reference, seed by
/// seed: the winner, or, when a reference wins, the best finalist that is not one.
fn estimate(l: &Loaded, standings: &[Standing]) -> Option<Estimate> {
    let is_reference = |st: &Standing| l.candidate(st.candidate).is_some_and(|c| c.reference);
    let finals = || standings.iter().filter(|st| !st.finals.is_empty());
    let first = finals().next()?;
    let challenger = finals().find(|st| !is_reference(st));
    let references = match challenger {
        None => Vec::new(),
        Some(ch) => {
            let mine = tests_by_seed(l, ch);
            finals()
                .filter(|st| is_reference(st) && st.candidate != ch.candidate)
                .map(|st| {
                    let other = tests_by_seed(l, st);
                    let (a, b): (Vec<f64>, Vec<f64>) = mine
                        .iter()
                        .filter_map(|(seed, x)| Some((*x, *other.get(seed)?)))
                        .unzip();
                    Versus {
                        challenger: l.candidate_name(ch.candidate),
                        reference: l.candidate_name(st.candidate),
                        challenger_test: FinalStats::of(mine.values().copied().collect()),
                        test: FinalStats::of(other.values().copied().collect()),
                        difference: paired_interval(&a, &b),
                    }
                })
                .collect()
        }
    };
    Some(Estimate {
        winner: l.candidate_name(first.candidate),
        test: FinalStats::of(tests_by_seed(l, first).values().copied().collect()),
        references,
    })
}

fn rung_stats(l: &Loaded, s: &Schedule, rows: &[Row]) -> Vec<RungStats> {
    let search: Vec<&Trial> = l
        .trials
        .iter()
        .filter(|t| t.phase == Phase::Search)
        .collect();
    let point = |t: &Trial, i: usize| rank::rung_point(&l.epochs, &s.rungs, t, i);
    let last = s.rungs.len().saturating_sub(1);
    (0..s.rungs.len())
        .map(|i| {
            let scores: Vec<f64> = search
                .iter()
                .filter_map(|t| point(t, i))
                .map(|p| p.score)
                .collect();
            let (mut here, mut next) = (Vec::new(), Vec::new());
            for t in &search {
                if let (Some(a), Some(b)) = (point(t, i), point(t, i + 1)) {
                    here.push(a.score);
                    next.push(b.score);
                }
            }
            let best = rung_scores(l, s, i);
            let (at_rung, at_end): (Vec<f64>, Vec<f64>) = rows
                .iter()
                .filter_map(|r| Some((*best.get(&r.candidate)?, r.final_val.as_ref()?.mean)))
                .unzip();
            RungStats {
                rung: i,
                epochs: s.rungs[i],
                reached: scores.len(),
                promoted: (i < last).then(|| search.iter().filter(|t| t.rung > i).count()),
                best: scores.iter().copied().reduce(f64::max),
                median: median(&scores),
                tau_next: kendall_tau(&here, &next),
                n_next: here.len(),
                share: s.rungs[i] as f64 / s.max_epochs.max(1) as f64,
                tau_final: kendall_tau(&at_rung, &at_end),
                n_final: at_rung.len(),
            }
        })
        .collect()
}

/// The best first-rung score of each candidate: every search candidate trained the same
/// number of epochs there, so these accuracies compare fairly.
pub(crate) fn first_rung_scores(l: &Loaded, s: &Schedule) -> BTreeMap<CandidateId, f64> {
    rung_scores(l, s, 0)
}

/// The best score at rung `i` of each candidate that one of its search trials reached.
fn rung_scores(l: &Loaded, s: &Schedule, i: usize) -> BTreeMap<CandidateId, f64> {
    let mut out: BTreeMap<CandidateId, f64> = BTreeMap::new();
    for t in l.trials.iter().filter(|t| t.phase == Phase::Search) {
        if let Some(p) = rank::rung_point(&l.epochs, &s.rungs, t, i) {
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
        let rate_of = |c: &Stored<CandidateId, Candidate>| match rate {
            "contraction" => c.contraction,
            _ => c.asymptotic,
        };
        let sets: [(String, Vec<Labelled>); 2] = [
            (
                format!(
                    "validation accuracy after {} (first rung, every candidate)",
                    super::format::epochs_text(epochs0)
                ),
                l.candidates
                    .iter()
                    .filter_map(|c| {
                        let r = rate_of(c).filter(|v| v.is_finite())?;
                        Some((c.name.clone(), r, *first.get(&c.id)?))
                    })
                    .collect(),
            ),
            (
                "mean final validation accuracy (finalists and references)".to_string(),
                rows.iter()
                    .filter_map(|row| {
                        let c = l.candidate(row.candidate)?;
                        let r = rate_of(c).filter(|v| v.is_finite())?;
                        Some((row.name.clone(), r, row.final_val.as_ref()?.mean))
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
                spearman_p_value: spearman_p_value(&x, &y),
                points,
            });
        }
    }
    out
}

/// Computes the report from what the store holds.
pub(crate) fn build(l: &Loaded) -> Report {
    let s = Schedule::new(&l.config);
    let ids: Vec<CandidateId> = l.candidates.iter().map(|c| c.id).collect();
    let standings = rank::leaderboard(&l.epochs, &s.rungs, &ids, &l.trials);
    let leaderboard = leaderboard(l, &standings);
    let finals = leaderboard
        .iter()
        .filter_map(|r| r.final_val.clone().map(|f| (r.name.clone(), f)))
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
        rungs: rung_stats(l, &s, &leaderboard),
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
        estimate: estimate(l, &standings),
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
