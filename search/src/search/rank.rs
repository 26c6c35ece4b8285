//! What is better than what: the one place that ranks. The score of an epoch is
//! [`EpochMetrics::score`](crate::train::EpochMetrics::score), its validation accuracy; here are
//! the score of a trial at a point of its training ([`Point`]), the order of two points
//! ([`better`]), the rung rule of successive halving ([`promoted`], [`by_score`]), the ranking
//! of candidates by their search trials ([`search_ranking`]), the order of the leaderboard
//! ([`Standing`]) and the winner with the trial its weights come from ([`winner`]). The driver,
//! ASHA, the report and the export all call these, and none of them reads a test accuracy: the
//! test set is only reported, for the trials of the final phase.

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
    /// Validation accuracy.
    pub score: f64,
    /// Test accuracy, where the trial evaluated the test set (final trials).
    pub test_acc: Option<f64>,
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
    /// Its final trials' points, one per finished seed, in trial order.
    pub finals: Vec<Point>,
    /// Its best search point.
    pub search: Option<Point>,
    /// Its best random-baseline point.
    pub baseline: Option<Point>,
}

impl Standing {
    /// The mean validation accuracy over its final seeds.
    pub(crate) fn final_score(&self) -> Option<f64> {
        (!self.finals.is_empty())
            .then(|| self.finals.iter().map(|p| p.score).sum::<f64>() / self.finals.len() as f64)
    }

    fn group(&self) -> u8 {
        match (self.final_score(), self.search, self.baseline) {
            (Some(_), _, _) => 0,
            (None, Some(_), _) => 1,
            (None, None, Some(_)) => 2,
            _ => 3,
        }
    }

    /// The leaderboard's order, on validation accuracy only: candidates with final trials
    /// first, by their mean over the seeds; then by the rung reached and the score there; then
    /// baseline-only candidates by their score; then the rest, in the order they were created.
    pub(crate) fn order(a: &Standing, b: &Standing) -> Ordering {
        let desc = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => y.total_cmp(&x),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        };
        let rung = |s: &Standing| s.search.and_then(|p| p.rung);
        let score = |s: &Standing| s.search.map(|p| p.score);
        let base = |s: &Standing| s.baseline.map(|p| p.score);
        a.group()
            .cmp(&b.group())
            .then_with(|| desc(a.final_score(), b.final_score()))
            .then_with(|| rung(b).cmp(&rung(a)))
            .then_with(|| desc(score(a), score(b)))
            .then_with(|| desc(base(a), base(b)))
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
        .map(|&c| Standing {
            candidate: c,
            finals: trials
                .iter()
                .filter(|t| t.candidate == c && t.phase == Phase::Final)
                .filter_map(|t| trial_point(epochs, rungs, t))
                .collect(),
            search: search.get(&c).copied(),
            baseline: baseline.get(&c).copied(),
        })
        .collect()
}

/// The leaderboard: every candidate where it stands, best first.
pub(crate) fn leaderboard(
    epochs: &Epochs,
    rungs: &[usize],
    candidates: &[CandidateId],
    trials: &[Trial],
) -> Vec<Standing> {
    let mut s = standings(epochs, rungs, candidates, trials);
    s.sort_by(Standing::order);
    s
}

/// The winner and the trial whose weights stand for it: the first candidate of the
/// leaderboard, and of its trials the one trained longest, the best score breaking ties.
pub(crate) fn winner(
    epochs: &Epochs,
    rungs: &[usize],
    candidates: &[CandidateId],
    trials: &[Trial],
) -> Option<(CandidateId, TrialId)> {
    let c = leaderboard(epochs, rungs, candidates, trials)
        .first()?
        .candidate;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::store::TrialStatus;
    use crate::train::EpochMetrics;

    fn trial(id: i64, candidate: i64, phase: Phase, seed: u64, epochs: usize) -> Trial {
        Trial {
            id: TrialId(id),
            candidate: CandidateId(candidate),
            phase,
            seed,
            budget: epochs,
            max_budget: epochs,
            rung: 0,
            epochs_done: epochs,
            status: TrialStatus::Done,
            device: None,
            batch_size: 8,
            attempts: 1,
            crashes: 0,
            error: None,
            dir: String::new(),
            created: 0.0,
            started: None,
            finished: None,
            train_seconds: 0.0,
            wall_seconds: 0.0,
            score: None,
            test_acc: None,
            parameters: None,
            multiply_adds: None,
            pid: None,
            job: None,
        }
    }

    fn epoch(trial: i64, val: f64, test: Option<f64>) -> Epoch {
        Epoch {
            trial: TrialId(trial),
            metrics: EpochMetrics {
                epoch: 0,
                lr: 0.1,
                train_loss: 1.0,
                train_acc: 0.5,
                val_loss: Some(1.0),
                val_acc: Some(val),
                test_loss: test.map(|_| 1.0),
                test_acc: test,
                images_per_sec: 1.0,
                epoch_seconds: 1.0,
            },
        }
    }

    /// Two candidates with final trials: the one with the better mean validation accuracy
    /// stands first and wins, whatever their test accuracies say.
    #[test]
    fn the_test_set_decides_nothing() {
        let trials = vec![
            trial(1, 1, Phase::Final, 1, 1),
            trial(2, 1, Phase::Final, 2, 1),
            trial(3, 2, Phase::Final, 1, 1),
            trial(4, 2, Phase::Final, 2, 1),
            trial(5, 3, Phase::Search, 0, 1),
        ];
        let mut epochs = Epochs::new();
        for (t, val, test) in [
            (1, 0.60, 0.90),
            (2, 0.62, 0.91),
            (3, 0.70, 0.10),
            (4, 0.68, 0.12),
            (5, 0.99, 0.99),
        ] {
            epochs.insert(TrialId(t), vec![epoch(t, val, Some(test))]);
        }
        let ids = [CandidateId(1), CandidateId(2), CandidateId(3)];
        let board = leaderboard(&epochs, &[1], &ids, &trials);
        let order: Vec<i64> = board.iter().map(|s| s.candidate.0).collect();
        assert_eq!(
            order,
            [2, 1, 3],
            "finals by mean validation, then the search"
        );
        assert!((board[0].final_score().unwrap() - 0.69).abs() < 1e-12);
        assert_eq!(
            winner(&epochs, &[1], &ids, &trials).map(|(c, _)| c),
            Some(CandidateId(2))
        );
        // Without a validation accuracy an epoch has no score: it can neither be promoted
        // nor ranked.
        let mut blind = epoch(6, 0.5, Some(0.9));
        blind.metrics.val_acc = None;
        assert_eq!(blind.score(), None);
        assert_eq!(promoted(7, 3), 2);
        assert_eq!(
            by_score(Some(0.5), None),
            Ordering::Less,
            "scored trials first"
        );
    }
}
