//! Which candidate to start next: grid, random, or regularised evolution (Real et al., 2019,
//! "Regularized evolution for image classifier architecture search").
//!
//! Every choice is a function of the seed, the pool and the history of earlier choices, never of
//! a generator's hidden state, so a resumed search chooses exactly what the killed one would
//! have.

use super::candidate::Candidate;
use super::config::StrategyKind;
use super::rank;
use crate::data::rng::{derive_seed, SplitMix64};
use std::borrow::Borrow;

/// An earlier choice: the pool index and its score at the first rung (when known).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Past {
    pub index: usize,
    pub score: Option<f64>,
}

/// The strategy's settings.
#[derive(Clone, Debug)]
pub(crate) struct Strategy {
    pub kind: StrategyKind,
    pub population: usize,
    pub sample: usize,
    pub seed: u64,
}

fn l1(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() {
        return f64::INFINITY;
    }
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum()
}

impl Strategy {
    /// The pool order random choices follow (a seeded permutation).
    fn order(&self, n: usize, stream: u64) -> Vec<usize> {
        SplitMix64::new(derive_seed(&[self.seed, stream])).permutation(n)
    }

    /// The next pool index, or `None` when every member has been chosen.
    pub(crate) fn next<C: Borrow<Candidate>>(&self, pool: &[C], history: &[Past]) -> Option<usize> {
        let taken: std::collections::BTreeSet<usize> = history.iter().map(|p| p.index).collect();
        let free = |i: &usize| !taken.contains(i);
        match self.kind {
            StrategyKind::Grid => (0..pool.len()).find(free),
            StrategyKind::Random => self.order(pool.len(), 0x5241_4e44).into_iter().find(free),
            StrategyKind::Evolution => self.evolve(pool, history, &free),
        }
    }

    fn evolve<C: Borrow<Candidate>>(
        &self,
        pool: &[C],
        history: &[Past],
        free: &dyn Fn(&usize) -> bool,
    ) -> Option<usize> {
        let random = || {
            self.order(pool.len(), 0x4556_4f4c)
                .into_iter()
                .find(|i| free(i))
        };
        // The population: the most recent `population` choices with a score (aging: the
        // oldest leaves first, whatever its score).
        let scored: Vec<&Past> = history.iter().filter(|p| p.score.is_some()).collect();
        if history.len() < self.population || scored.len() < self.sample.max(1) {
            return random();
        }
        let population = &scored[scored.len().saturating_sub(self.population)..];
        let mut rng = SplitMix64::new(derive_seed(&[self.seed, 0x5455_524e, history.len() as u64]));
        let parent = (0..self.sample.max(1))
            .filter_map(|_| population.get(rng.below(population.len() as u64) as usize))
            .max_by(|a, b| rank::by_score(b.score, a.score))?;
        let p: &Candidate = pool.get(parent.index)?.borrow();
        // Mutation: the nearest free member of the parent's family (ties broken at random).
        let mut best: Vec<usize> = Vec::new();
        let mut best_d = f64::INFINITY;
        for (i, m) in pool.iter().map(Borrow::borrow).enumerate() {
            let m: &Candidate = m;
            if !free(&i) || m.family != p.family {
                continue;
            }
            let d = l1(&m.features, &p.features);
            if d < best_d - 1e-12 {
                best_d = d;
                best.clear();
                best.push(i);
            } else if (d - best_d).abs() <= 1e-12 {
                best.push(i);
            }
        }
        if best.is_empty() {
            return random();
        }
        best.get(rng.below(best.len() as u64) as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                name: format!("c{i}"),
                origin: "test".into(),
                family: "f".into(),
                spec_yaml: String::new(),
                overrides: Default::default(),
                features: vec![i as f64],
                topo_hash: i.to_string(),
                spec_hash: String::new(),
                contraction: None,
                asymptotic: None,
                reference: false,
                arch: None,
            })
            .collect()
    }

    fn s(kind: StrategyKind) -> Strategy {
        Strategy {
            kind,
            population: 3,
            sample: 2,
            seed: 1,
        }
    }

    #[test]
    fn grid_and_random_visit_every_member_once() {
        let pool = line(6);
        for kind in [StrategyKind::Grid, StrategyKind::Random] {
            let mut h = Vec::new();
            while let Some(i) = s(kind).next(&pool, &h) {
                h.push(Past {
                    index: i,
                    score: None,
                });
            }
            let mut seen: Vec<usize> = h.iter().map(|p| p.index).collect();
            if kind == StrategyKind::Grid {
                assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
            }
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2, 3, 4, 5]);
        }
        // Random is seeded: the same seed, the same order; another seed, another order.
        let a = s(StrategyKind::Random).order(20, 0);
        assert_eq!(a, s(StrategyKind::Random).order(20, 0));
        let mut other = s(StrategyKind::Random);
        other.seed = 2;
        assert_ne!(a, other.order(20, 0));
    }

    #[test]
    fn evolution_mutates_the_tournament_winner_to_its_nearest_neighbour() {
        let pool = line(10);
        // Population 3, all scored; member 4 is by far the best, so any tournament that
        // includes it picks it, and its free neighbours are 3 and 5.
        let h = vec![
            Past {
                index: 0,
                score: Some(0.1),
            },
            Past {
                index: 4,
                score: Some(0.9),
            },
            Past {
                index: 9,
                score: Some(0.2),
            },
        ];
        let mut strategy = s(StrategyKind::Evolution);
        strategy.sample = 3;
        let mut children = std::collections::BTreeSet::new();
        for seed in 0..20 {
            strategy.seed = seed;
            let c = strategy.next(&pool, &h).unwrap();
            children.insert(c);
        }
        // With a tournament of 3 draws from 3, 4 is drawn most of the time; whatever wins, the
        // child is a free nearest neighbour of a population member.
        assert!(
            children.iter().all(|c| [1, 3, 5, 8].contains(c)),
            "{children:?}"
        );
        assert!(children.contains(&3) || children.contains(&5));
        // Before the population is full, choices are random.
        assert!(strategy.next(&pool, &h[..1]).is_some());
    }
}
