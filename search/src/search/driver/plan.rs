//! What to run next, read from the store (never from the driver's memory, so a killed driver
//! resumes exactly where it stood), and what to make of a trial process that ended.

use super::R;
use crate::data::rng::derive_seed;
use crate::search::asha::{self, Decision, View};
use crate::search::candidate::Candidate;
use crate::search::config::{Scheduler, SearchConfig, StrategyKind};
use crate::search::executor::{Ended, Lost};
use crate::search::ids::{CandidateId, ExperimentId, TrialId};
use crate::search::rank::{self, Epochs, Point};
use crate::search::store::{NewTrial, Phase, Store, Stored, Trial, TrialStatus};
use crate::search::strategy::{Past, Strategy};
use crate::search::trial;

/// The search's state, as the phases see it.
pub(super) struct State {
    pub trials: Vec<Trial>,
    pub epochs: Epochs,
}

impl State {
    pub(super) fn read(store: &Store) -> R<State> {
        Ok(State {
            trials: store.trials()?,
            epochs: store.all_epochs()?,
        })
    }

    fn view(&self, t: &Trial, rungs: &[usize]) -> View {
        View {
            id: t.id,
            rung: t.rung,
            status: t.status,
            scores: rungs
                .iter()
                .map(|&b| rank::score_after(&self.epochs, t.id, b))
                .collect(),
        }
    }

    fn phase(&self, p: Phase) -> impl Iterator<Item = &Trial> {
        self.trials.iter().filter(move |t| t.phase == p)
    }

    /// The candidates ranked by their search trials, best first.
    pub(super) fn ranking(&self, rungs: &[usize]) -> Vec<(CandidateId, Point)> {
        rank::search_ranking(&self.epochs, rungs, &self.trials)
    }
}

/// What the driver does with a free slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Start this trial.
    Start(TrialId),
    /// Nothing can start until a running trial ends.
    Wait,
    /// Every phase is over.
    Finished,
}

/// The three phases of a search, planned from the store:
///
/// 1. **search**: the strategy proposes candidates at the first rung and successive halving
///    promotes the best;
/// 2. **baseline**: random search at equal budget: candidates drawn at random and trained at
///    the full budget until they have used as many epochs as phase 1 did;
/// 3. **final**: the top-k candidates of phase 1 re-trained at the full budget with `seeds`
///    seeds each.
pub(super) struct Planner<'a> {
    pub cfg: &'a SearchConfig,
    pub store: &'a Store,
    pub exp: ExperimentId,
    /// The candidates, in pool order.
    pub pool: &'a [Stored<CandidateId, Candidate>],
    pub rungs: Vec<usize>,
}

impl Planner<'_> {
    fn max_budget(&self) -> usize {
        self.cfg.budget.max_epochs
    }

    fn new_trial(
        &self,
        candidate: CandidateId,
        phase: Phase,
        seed: u64,
        rung_budget: usize,
    ) -> R<TrialId> {
        Ok(self.store.insert_trial(
            self.exp,
            &NewTrial {
                candidate,
                phase,
                seed,
                budget: rung_budget,
                max_budget: self.max_budget(),
                rung: 0,
                batch_size: self.cfg.train.optim.batch_size,
            },
        )?)
    }

    fn index_of(&self, candidate: CandidateId) -> Option<usize> {
        self.pool.iter().position(|c| c.id == candidate)
    }

    fn seed(&self) -> u64 {
        self.cfg.train.run.seed
    }

    /// The next trial to start, creating it if needed. `held` are the trials whose processes
    /// the executor still holds.
    pub(super) fn next(&self, held: &[TrialId]) -> R<Next> {
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
            return Ok(Next::Start(t.id));
        }
        match self.search_phase(&state)? {
            // A slot the search cannot use yet takes a baseline trial, as long as the baseline
            // stays within what the search has already spent (which only grows).
            Next::Wait => return Ok(self.baseline(&state)?.map_or(Next::Wait, Next::Start)),
            Next::Start(id) => return Ok(Next::Start(id)),
            Next::Finished => {}
        }
        if let Some(id) = self.baseline(&state)? {
            return Ok(Next::Start(id));
        }
        if let Some(id) = self.finalist(&state)? {
            return Ok(Next::Start(id));
        }
        // The baseline and the finalists run side by side; the search ends when both are in.
        if state
            .trials
            .iter()
            .any(|t| matches!(t.status, TrialStatus::Pending | TrialStatus::Running))
        {
            return Ok(Next::Wait);
        }
        Ok(Next::Finished)
    }

    /// Phase 1: the strategy under successive halving. `Finished` once it has nothing more to
    /// do.
    fn search_phase(&self, state: &State) -> R<Next> {
        let search: Vec<&Trial> = state.phase(Phase::Search).collect();
        let first_rung = self.rungs.first().copied().unwrap_or(self.max_budget());
        let history: Vec<Past> = search
            .iter()
            .filter_map(|t| {
                Some(Past {
                    index: self.index_of(t.candidate)?,
                    score: rank::score_after(&state.epochs, t.id, first_rung),
                })
            })
            .collect();
        let strategy = Strategy {
            kind: self.cfg.strategy.kind,
            population: self.cfg.strategy.population,
            sample: self.cfg.strategy.sample,
            seed: self.seed(),
        };
        let proposal = if search.len() < self.cfg.budget.trials {
            strategy.next(self.pool, &history)
        } else {
            None
        };
        let views: Vec<View> = search.iter().map(|t| state.view(t, &self.rungs)).collect();
        let sync = self.cfg.budget.scheduler == Scheduler::Sha;
        Ok(
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
                        &format!("promoted to rung {} ({budget} epochs)", rung + 1),
                    )?;
                    Next::Start(id)
                }
                Decision::Propose => match proposal.and_then(|i| self.pool.get(i)) {
                    Some(c) => {
                        Next::Start(self.new_trial(c.id, Phase::Search, self.seed(), first_rung)?)
                    }
                    None => Next::Wait,
                },
                Decision::Wait => Next::Wait,
                Decision::Finished => Next::Finished,
            },
        )
    }

    /// Phase 3: the next final trial not yet created: the top-k candidates of the search,
    /// then the named references, each with the same seeds.
    fn finalist(&self, state: &State) -> R<Option<TrialId>> {
        let finals: Vec<&Trial> = state.phase(Phase::Final).collect();
        let mut chosen: Vec<CandidateId> = state
            .ranking(&self.rungs)
            .into_iter()
            .take(self.cfg.finalists.top_k)
            .map(|(c, _)| c)
            .collect();
        if self.cfg.finalists.top_k > 0 {
            for c in self.pool.iter().filter(|c| c.reference) {
                if !chosen.contains(&c.id) {
                    chosen.push(c.id);
                }
            }
        }
        for c in chosen {
            for s in 1..=self.cfg.finalists.seeds as u64 {
                let seed = self.seed().wrapping_add(s);
                if !finals.iter().any(|t| t.candidate == c && t.seed == seed) {
                    return self
                        .new_trial(c, Phase::Final, seed, self.max_budget())
                        .map(Some);
                }
            }
        }
        Ok(None)
    }

    /// Phase 2: a new baseline trial while the baseline has spent less than the search so
    /// far: as many full-budget random trials as the search's epochs buy.
    fn baseline(&self, state: &State) -> R<Option<TrialId>> {
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
            seed: derive_seed(&[self.seed(), 0xBA5E]),
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
        match random.next(self.pool, &hist).and_then(|i| self.pool.get(i)) {
            Some(c) => self
                .new_trial(c.id, Phase::Baseline, self.seed(), self.max_budget())
                .map(Some),
            None => Ok(None),
        }
    }

    /// Records how a trial process ended: a crash is retried (up to `max_attempts`), an
    /// out-of-memory retried once with half the batch; `stopping` marks the trials an
    /// interrupt stopped as resumable.
    pub(super) fn ended(&self, e: &Ended, stopping: bool) -> R<()> {
        let t = self.store.trial(e.trial)?;
        match t.status {
            TrialStatus::Running if stopping => {
                self.store
                    .requeue(t.id, Some("stopped by an interrupt"), true)?;
            }
            TrialStatus::Running => match &e.lost {
                Some(lost) => self.lost(&t, lost)?,
                None => self.crashed(&t, e.code)?,
            },
            TrialStatus::Oom => {
                if t.batch_size == self.cfg.train.optim.batch_size && t.batch_size > 1 {
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

    /// A cluster job that ended without a result, each cause its own: a cancelled job fails
    /// (someone meant it); a time limit, a node failure, Slurm's memory limit or another end
    /// is retried from the trial's last epoch, up to `max_attempts`, like a crash.
    fn lost(&self, t: &Trial, lost: &Lost) -> R<()> {
        if *lost == Lost::Cancelled {
            let msg = format!("{lost}: the trial is failed; `optarch search --resume DIR --retry-failed` runs it again");
            self.store
                .finish_trial(t.id, TrialStatus::Failed, Some(&msg), 0.0)?;
            self.store.event(Some(t.id), &format!("failed: {msg}"))?;
            return Ok(());
        }
        let hint = match lost {
            Lost::TimeLimit => ": raise executor.time_limit",
            Lost::OutOfMemory => ": raise executor.mem",
            _ => "",
        };
        self.retry_or_fail(
            t,
            &lost.to_string(),
            &format!(
                "{lost} at epoch {}, attempt {} of {}: resubmitting; it resumes from its last \
                 epoch",
                t.epochs_done, t.attempts, self.cfg.execution.max_attempts
            ),
            hint,
        )
    }

    /// Retries `t` after a fault `cause` while attempts remain (`retrying` for the log), else
    /// fails it with `hint` after the count.
    fn retry_or_fail(&self, t: &Trial, cause: &str, retrying: &str, hint: &str) -> R<()> {
        if t.crashes + 1 < self.cfg.execution.max_attempts {
            self.store.requeue(t.id, Some(cause), false)?;
            self.store.event(Some(t.id), retrying)?;
        } else {
            let msg = format!(
                "{cause} on each of {} attempts (see {}/log.txt){hint}",
                t.crashes + 1,
                t.dir
            );
            self.store
                .finish_trial(t.id, TrialStatus::Failed, Some(&msg), 0.0)?;
            self.store.event(Some(t.id), &format!("failed: {msg}"))?;
        }
        Ok(())
    }

    /// A trial process that ended without recording how: orphaned (requeued as it was), or
    /// crashed (retried, or failed after `max_attempts`).
    fn crashed(&self, t: &Trial, code: Option<i32>) -> R<()> {
        let how = match code {
            Some(c) => format!("exit status {c}"),
            None => "a signal".to_string(),
        };
        if code == Some(trial::EXIT_ORPHANED) {
            self.store.requeue(t.id, None, true)?;
            return Ok(());
        }
        self.retry_or_fail(
            t,
            &format!("the trial process ended with {how}"),
            &format!(
                "crashed ({how}), attempt {} of {}: retrying",
                t.attempts, self.cfg.execution.max_attempts
            ),
            "",
        )
    }
}
