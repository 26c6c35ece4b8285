//! Successive halving over epochs: asynchronous (ASHA, Li et al. 2020) or synchronous.
//!
//! A trial that finished rung k (it has trained `rungs[k]` epochs) has a score there. Of the
//! trials that reached rung k, the best ⌊n/η⌋ move on to rung k + 1 (the rung rule and the
//! order of scores are [`super::rank`]'s). ASHA promotes as soon as a trial is in that top
//! part; the synchronous variant waits until every trial of the rung is in. The decision is a
//! pure function of the trials' states, so a resumed driver makes the same decisions as the one
//! that was killed.

use super::ids::TrialId;
use super::rank;
use super::store::TrialStatus;

/// What the scheduler sees of a trial.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct View {
    pub id: TrialId,
    pub rung: usize,
    pub status: TrialStatus,
    /// Score at each rung it finished (index = rung); `None` past its progress.
    pub scores: Vec<Option<f64>>,
}

/// What to do next.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Decision {
    /// Continue trial `id` to rung `rung`.
    Promote { id: TrialId, rung: usize },
    /// Start a new candidate at rung 0.
    Propose,
    /// Nothing to start until a running trial finishes.
    Wait,
    /// The phase is over.
    Finished,
}

/// The score of a trial at rung `k` (`None` for failed or diverged trials, which rank below
/// every score).
fn score(v: &View, k: usize) -> Option<f64> {
    v.scores.get(k).copied().flatten().filter(|s| s.is_finite())
}

/// True when `v` reached rung `k`: it finished it, or it ended (diverged, oom, failed) there.
fn reached(v: &View, k: usize) -> bool {
    v.scores.get(k).copied().flatten().is_some() || (v.rung == k && v.status.is_final())
}

/// The next decision. `rungs` are the rungs' budgets; `can_propose` says whether the strategy
/// has candidates and budget left; `busy` holds the trials that are pending or running.
pub(crate) fn decide(
    rungs: &[usize],
    eta: usize,
    trials: &[View],
    can_propose: bool,
    synchronous: bool,
) -> Decision {
    let busy = |v: &View| matches!(v.status, TrialStatus::Pending | TrialStatus::Running);
    for k in (0..rungs.len().saturating_sub(1)).rev() {
        let mut at: Vec<&View> = trials.iter().filter(|v| reached(v, k)).collect();
        if synchronous {
            let waiting = trials.iter().any(|v| v.rung == k && busy(v));
            if waiting || (k == 0 && can_propose) {
                continue;
            }
        }
        let top = rank::promoted(at.len(), eta);
        at.sort_by(|a, b| rank::by_score(score(a, k), score(b, k)).then(a.id.cmp(&b.id)));
        if let Some(v) = at
            .iter()
            .take(top)
            .find(|v| v.rung == k && v.status == TrialStatus::Done && score(v, k).is_some())
        {
            return Decision::Promote {
                id: v.id,
                rung: k + 1,
            };
        }
    }
    if can_propose {
        Decision::Propose
    } else if trials.iter().any(busy) {
        Decision::Wait
    } else {
        Decision::Finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(id: i64, rung: usize, scores: &[f64]) -> View {
        View {
            id: TrialId(id),
            rung,
            status: TrialStatus::Done,
            scores: scores.iter().map(|s| Some(*s)).collect(),
        }
    }

    #[test]
    fn asha_promotes_the_top_third_as_soon_as_it_can() {
        let rungs = [1, 3, 9];
        // Two results at rung 0: ⌊2/3⌋ = 0, nobody moves yet.
        let t = vec![done(1, 0, &[0.5]), done(2, 0, &[0.7])];
        assert_eq!(decide(&rungs, 3, &t, true, false), Decision::Propose);
        // Three: the best (trial 2) goes to rung 1.
        let mut t = t;
        t.push(done(3, 0, &[0.6]));
        assert_eq!(
            decide(&rungs, 3, &t, true, false),
            Decision::Promote {
                id: TrialId(2),
                rung: 1
            }
        );
        // Once promoted, it is not promoted twice from rung 0.
        t[1] = View {
            id: TrialId(2),
            rung: 1,
            status: TrialStatus::Running,
            scores: vec![Some(0.7)],
        };
        assert_eq!(decide(&rungs, 3, &t, true, false), Decision::Propose);
        assert_eq!(decide(&rungs, 3, &t, false, false), Decision::Wait);
        t[1].status = TrialStatus::Done;
        t[1].scores.push(Some(0.8));
        assert_eq!(decide(&rungs, 3, &t, false, false), Decision::Finished);
    }

    #[test]
    fn higher_rungs_first_and_failures_rank_last() {
        let rungs = [1, 2, 4];
        let mut t: Vec<View> = (0..6).map(|i| done(i, 0, &[0.1 * i as f64])).collect();
        // Trials 5 and 4 were promoted to rung 1 and finished it; with η = 2, ⌊2/2⌋ = 1 may go on.
        t[5] = done(5, 1, &[0.5, 0.55]);
        t[4] = done(4, 1, &[0.4, 0.65]);
        assert_eq!(
            decide(&rungs, 2, &t, true, false),
            Decision::Promote {
                id: TrialId(4),
                rung: 2
            }
        );
        // A diverged trial counts at its rung but never moves on.
        let t = vec![
            View {
                id: TrialId(1),
                rung: 0,
                status: TrialStatus::Diverged,
                scores: vec![None],
            },
            done(2, 0, &[0.2]),
        ];
        assert_eq!(
            decide(&rungs, 2, &t, false, false),
            Decision::Promote {
                id: TrialId(2),
                rung: 1
            }
        );
    }

    #[test]
    fn synchronous_halving_waits_for_the_whole_rung() {
        let rungs = [1, 3];
        let mut t = vec![done(1, 0, &[0.5]), done(2, 0, &[0.7]), done(3, 0, &[0.6])];
        t.push(View {
            id: TrialId(4),
            rung: 0,
            status: TrialStatus::Running,
            scores: vec![None],
        });
        assert_eq!(decide(&rungs, 3, &t, false, true), Decision::Wait);
        t[3] = done(4, 0, &[0.9]);
        // Still proposals to make: the rung is not closed.
        assert_eq!(decide(&rungs, 3, &t, true, true), Decision::Propose);
        assert_eq!(
            decide(&rungs, 3, &t, false, true),
            Decision::Promote {
                id: TrialId(4),
                rung: 1
            }
        );
    }
}
