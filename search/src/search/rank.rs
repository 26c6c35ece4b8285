//! What is better than what: the one place that ranks. The score of an epoch is
//! [`EpochMetrics::score`](crate::train::EpochMetrics::score); here are the score of a trial at
//! a point of its training ([`Point`]), the order of two points ([`better`]), the rung rule of
//! successive halving ([`promoted`], [`by_score`]), the ranking of candidates by their search
//! trials ([`search_ranking`]), the order of the leaderboard ([`Standing`]) and the winner with
//! the trial its weights come from ([`winner`]). The driver, ASHA, the report and the export
//! all call these.

use super::ids::{CandidateId, TrialId};
pub(crate) use super::store::Epochs;
use super::store::{Epoch, Phase, Trial};
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// The row of `trial`'s epoch number `n` (1-based: after `n` epochs of training).
pub(crate) fn epoch_after(epochs: &Epochs, trial: TrialId, n: usize) -> Option<&Epoch> {
    let i = n.checked_sub(1)?;
    epochs.get(&trial)?.iter().find(|e| e.epoch == i)
}

/// The score of `trial` after `n` epochs.
pub(crate) fn score_after(epochs: &Epochs, trial: TrialId, n: usize) -> Option<f64> {
    epoch_after(epochs, trial, n)?.score()
}

/// A trial's score at one point of its training.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Point {
    pub trial: TrialId,
    /// The rung (search trials), else `None`.
    pub rung: Option<usize>,
    /// Epochs trained at this point.
    pub epochs: usize,
    pub score: f64,
    pub test_acc: f64,
}

/// The point of a search trial at rung `i` (of budgets `rungs`), if it trained that far.
pub(crate) fn rung_point(epochs: &Epochs, rungs: &[usize], t: &Trial, i: usize) -> Option<Point> {
    let b = *rungs.get(i)?;
    let e = epoch_after(epochs, t.id, b)?;
    Some(Point {
        trial: t.id,
        rung: Some(i),
        epochs: b,
        score: e.score()?,
        test_acc: e.test_acc,
    })
}

/// A trial's scored point: for a search trial the highest rung it reached, for a baseline or
/// final trial its full budget (none before it gets there).
pub(crate) fn trial_point(epochs: &Epochs, rungs: &[usize], t: &Trial) -> Option<Point> {
    match t.phase {
        Phase::Search => (0..rungs.len())
            .rev()
            .find_map(|i| rung_point(epochs, rungs, t, i)),
        Phase::Baseline | Phase::Final => {
            let e = epoch_after(epochs, t.id, t.max_budget)?;
            Some(Point {
                trial: t.id,
                rung: None,
                epochs: t.max_budget,
                score: e.score()?,
                test_acc: e.test_acc,
            })
        }
    }
}

/// Better first: the higher rung, then the higher score (an ordering for `sort_by` and
/// `min_by`).
pub(crate) fn better(a: &Point, b: &Point) -> Ordering {
    a.rung
        .cmp(&b.rung)
        .then(a.score.total_cmp(&b.score))
        .reverse()
}

/// Higher scores first, trials without one last (an ordering for `sort_by`).
pub(crate) fn by_score(a: Option<f64>, b: Option<f64>) -> Ordering {
    let key = |s: Option<f64>| s.filter(|v| v.is_finite()).unwrap_or(f64::NEG_INFINITY);
    key(b).total_cmp(&key(a))
}

/// The rung rule of successive halving: of `n` trials scored at a rung, the best `⌊n/η⌋` move
/// on.
pub(crate) fn promoted(n: usize, eta: usize) -> usize {
    n / eta.max(2)
}

/// The best point of each candidate among `trials` (one phase, usually), best candidate first;
/// ties go to the candidate created first.
pub(crate) fn best_points<'a>(
    epochs: &Epochs,
    rungs: &[usize],
    trials: impl IntoIterator<Item = &'a Trial>,
) -> Vec<(CandidateId, Point)> {
    let mut best: BTreeMap<CandidateId, Point> = BTreeMap::new();
    for t in trials {
        if let Some(p) = trial_point(epochs, rungs, t) {
            let e = best.entry(t.candidate).or_insert(p);
            if better(&p, e) == Ordering::Less {
                *e = p;
            }
        }
    }
    let mut v: Vec<(CandidateId, Point)> = best.into_iter().collect();
    v.sort_by(|a, b| better(&a.1, &b.1).then(a.0.cmp(&b.0)));
    v
}

/// The candidates ranked by their search trials: the finalists are its first `top_k`.
pub(crate) fn search_ranking(
    epochs: &Epochs,
    rungs: &[usize],
    trials: &[Trial],
) -> Vec<(CandidateId, Point)> {
    best_points(
        epochs,
        rungs,
        trials.iter().filter(|t| t.phase == Phase::Search),
    )
}

/// Where a candidate stands: what the leaderboard orders by.
#[derive(Clone, Debug)]
pub(crate) struct Standing {
    pub candidate: CandidateId,
    /// The mean final test accuracy over its finalist seeds.
    pub finals: Option<f64>,
    /// Its best search point.
    pub search: Option<Point>,
    /// Its test accuracy where it has no finals: its search point's, else its baseline's.
    pub test_acc: Option<f64>,
}

impl Standing {
    fn group(&self) -> u8 {
        match (self.finals, self.search, self.test_acc) {
            (Some(_), _, _) => 0,
            (None, Some(_), _) => 1,
            (None, None, Some(_)) => 2,
            _ => 3,
        }
    }

    /// The leaderboard's order: finalists first, by mean test accuracy; then by rung and
    /// score; then baseline-only candidates by their test accuracy; then the rest, in the order
    /// they were created.
    pub(crate) fn order(a: &Standing, b: &Standing) -> Ordering {
        let desc = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let rung = |s: &Standing| s.search.and_then(|p| p.rung);
        let score = |s: &Standing| s.search.map(|p| p.score);
        a.group()
            .cmp(&b.group())
            .then_with(|| desc(a.finals, b.finals))
            .then_with(|| rung(b).cmp(&rung(a)))
            .then_with(|| desc(score(a), score(b)))
            .then_with(|| desc(a.test_acc, b.test_acc))
            .then_with(|| a.candidate.cmp(&b.candidate))
    }
}

/// The standing of each candidate of `candidates` (in store order), from its trials.
pub(crate) fn standings(
    epochs: &Epochs,
    rungs: &[usize],
    candidates: &[CandidateId],
    trials: &[Trial],
) -> Vec<Standing> {
    let best = |phase: Phase| -> BTreeMap<CandidateId, Point> {
        best_points(epochs, rungs, trials.iter().filter(|t| t.phase == phase))
            .into_iter()
            .collect()
    };
    let (search, baseline) = (best(Phase::Search), best(Phase::Baseline));
    candidates
        .iter()
        .map(|&c| {
            let finals: Vec<f64> = final_tests(epochs, rungs, trials, c);
            let finals =
                (!finals.is_empty()).then(|| finals.iter().sum::<f64>() / finals.len() as f64);
            let search = search.get(&c).copied();
            let test_acc = finals
                .or(search.map(|p| p.test_acc))
                .or(baseline.get(&c).map(|p| p.test_acc));
            Standing {
                candidate: c,
                finals,
                search,
                test_acc,
            }
        })
        .collect()
}

/// The final test accuracies of candidate `c`, one per finished seed, in trial order.
pub(crate) fn final_tests(
    epochs: &Epochs,
    rungs: &[usize],
    trials: &[Trial],
    c: CandidateId,
) -> Vec<f64> {
    trials
        .iter()
        .filter(|t| t.candidate == c && t.phase == Phase::Final)
        .filter_map(|t| trial_point(epochs, rungs, t))
        .map(|p| p.test_acc)
        .filter(|v| v.is_finite())
        .collect()
}

/// The winner and the trial whose weights stand for it: the first candidate of the
/// leaderboard, and of its trials the one trained longest, the best score breaking ties.
pub(crate) fn winner(
    epochs: &Epochs,
    rungs: &[usize],
    candidates: &[CandidateId],
    trials: &[Trial],
) -> Option<(CandidateId, TrialId)> {
    let mut s = standings(epochs, rungs, candidates, trials);
    s.sort_by(Standing::order);
    let c = s.first()?.candidate;
    let t = trials
        .iter()
        .filter(|t| t.candidate == c && t.epochs_done > 0)
        .max_by(|a, b| {
            a.epochs_done
                .cmp(&b.epochs_done)
                .then(by_score(b.score, a.score))
        })?;
    Some((c, t.id))
}
