//! The report's views for exploring a search, as plain data: the optimisation history (best so
//! far against epochs and time), Pareto fronts, the parallel-coordinates axes with each
//! parameter's importance, and the trials' timeline in lanes. The HTML writer draws them.

use super::model::{first_rung_scores, Loaded, Report};
use crate::search::ids::{CandidateId, TrialId};
use crate::search::store::{Phase, TrialStatus};
use std::collections::BTreeMap;

/// A trial in the optimisation history, placed where it last finished.
#[derive(Clone, Debug)]
pub(crate) struct HistoryPoint {
    pub trial: TrialId,
    pub candidate: CandidateId,
    /// Epochs the phase had trained when the trial last finished (its own included).
    pub epochs: f64,
    /// Seconds since the search was created.
    pub seconds: f64,
    /// Its best validation accuracy (`None` when it never scored: a fault).
    pub score: Option<f64>,
    /// The best score of the phase so far.
    pub best: Option<f64>,
}

/// The finished trials of `phase` in the order they finished, with the phase's cumulative
/// epochs and best score so far. Running trials are left out until they finish.
pub(crate) fn history(l: &Loaded, phase: Phase) -> Vec<HistoryPoint> {
    let mut done: Vec<_> = l
        .trials
        .iter()
        .filter(|t| t.phase == phase && t.status != TrialStatus::Running)
        .filter_map(|t| Some((t.finished?, t)))
        .collect();
    done.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
    let (mut epochs, mut best) = (0usize, None::<f64>);
    done.into_iter()
        .map(|(finished, t)| {
            let rows = l.epochs.get(&t.id).map(Vec::as_slice).unwrap_or(&[]);
            epochs += rows.len();
            let score = rows.iter().filter_map(|e| e.score()).reduce(f64::max);
            if let Some(s) = score {
                best = Some(best.map_or(s, |b| b.max(s)));
            }
            HistoryPoint {
                trial: t.id,
                candidate: t.candidate,
                epochs: epochs as f64,
                seconds: (finished - l.experiment.created).max(0.0),
                score,
                best,
            }
        })
        .collect()
}

/// The indices of the points no other point beats on both counts (smaller cost, higher
/// accuracy), by increasing cost. Points with a non-finite coordinate are never on it.
pub(crate) fn pareto_front(points: &[(f64, f64)]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    // By cost, then the more accurate first: a point is on the front when it beats the best
    // accuracy of every cheaper point.
    order.sort_by(|&a, &b| {
        points[a]
            .0
            .total_cmp(&points[b].0)
            .then(points[b].1.total_cmp(&points[a].1))
    });
    let mut front = Vec::new();
    let mut best = f64::NEG_INFINITY;
    for i in order {
        if points[i].1 > best {
            best = points[i].1;
            front.push(i);
        }
    }
    front
}

/// What an axis of the parallel coordinates holds.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum AxisKind {
    /// Names; a candidate's value is the index of its name.
    Category(Vec<String>),
    /// Numbers, on a log scale when they are positive and span more than a factor of 20.
    Number { log: bool },
}

/// One axis of the parallel coordinates.
#[derive(Clone, Debug)]
pub(crate) struct PcAxis {
    pub name: String,
    pub kind: AxisKind,
    /// One value per candidate of [`Parallel::candidates`] (`None`: the candidate has none).
    pub values: Vec<Option<f64>>,
    /// The share of the score's variance this axis explains alone ([`eta_squared`]), over
    /// the candidates that have a value; `None` with fewer than 3 of them or no variance.
    pub importance: Option<f64>,
    /// The candidates it was computed over.
    pub n: usize,
}

/// The parallel coordinates: every candidate scored at the first rung, its family, its
/// parameters, its rate and size, and that score.
#[derive(Clone, Debug)]
pub(crate) struct Parallel {
    /// (candidate, leaderboard rank, name), best score first.
    pub candidates: Vec<(CandidateId, usize, String)>,
    /// The first-rung validation accuracy of each candidate.
    pub score: Vec<f64>,
    /// The axes before the score's.
    pub axes: Vec<PcAxis>,
    /// The epochs of the first rung.
    pub epochs: usize,
}

/// The correlation ratio η² of `score` grouped by `group`: the share of its variance between
/// the groups. `None` with fewer than 3 values, a single group, or no variance.
pub(crate) fn eta_squared(group: &[usize], score: &[f64]) -> Option<f64> {
    let n = score.len();
    if n < 3 || group.len() != n {
        return None;
    }
    let mean = score.iter().sum::<f64>() / n as f64;
    let total: f64 = score.iter().map(|s| (s - mean).powi(2)).sum();
    if total <= 1e-15 {
        return None;
    }
    let mut sums: BTreeMap<usize, (f64, usize)> = BTreeMap::new();
    for (g, s) in group.iter().zip(score) {
        let e = sums.entry(*g).or_insert((0.0, 0));
        e.0 += s;
        e.1 += 1;
    }
    if sums.len() < 2 {
        return None;
    }
    let between: f64 = sums
        .values()
        .map(|(sum, k)| *k as f64 * (sum / *k as f64 - mean).powi(2))
        .sum();
    Some((between / total).clamp(0.0, 1.0))
}

/// Groups for numbers: each distinct value when there are at most `bins` of them, else
/// `bins` groups of about equal size by rank.
fn number_groups(values: &[f64], bins: usize) -> Vec<usize> {
    let mut distinct: Vec<f64> = values.to_vec();
    distinct.sort_by(f64::total_cmp);
    distinct.dedup();
    if distinct.len() <= bins {
        return values
            .iter()
            .map(|v| distinct.iter().position(|d| d == v).unwrap_or(0))
            .collect();
    }
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut group = vec![0; values.len()];
    for (rank, i) in order.into_iter().enumerate() {
        group[i] = rank * bins / values.len();
    }
    group
}

fn importance(kind: &AxisKind, values: &[Option<f64>], score: &[f64]) -> (Option<f64>, usize) {
    let (v, s): (Vec<f64>, Vec<f64>) = values
        .iter()
        .zip(score)
        .filter_map(|(v, s)| Some(((*v)?, *s)))
        .unzip();
    let groups = match kind {
        AxisKind::Category(_) => v.iter().map(|x| *x as usize).collect(),
        AxisKind::Number { .. } => number_groups(&v, 5),
    };
    (eta_squared(&groups, &s), v.len())
}

fn number_axis(name: &str, values: Vec<Option<f64>>, score: &[f64]) -> Option<PcAxis> {
    let present: Vec<f64> = values.iter().flatten().copied().collect();
    if present.is_empty() {
        return None;
    }
    let (lo, hi) = present
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        });
    let kind = AxisKind::Number {
        log: lo > 0.0 && hi / lo > 20.0,
    };
    let (importance, n) = importance(&kind, &values, score);
    Some(PcAxis {
        name: name.into(),
        kind,
        values,
        importance,
        n,
    })
}

/// A family as people name it: `spec:specs/heavy_ball.yaml` → `heavy_ball`.
fn family_name(family: &str) -> String {
    let f = family.strip_prefix("spec:").unwrap_or(family);
    let f = f.rsplit('/').next().unwrap_or(f);
    f.strip_suffix(".yaml")
        .or_else(|| f.strip_suffix(".yml"))
        .unwrap_or(f)
        .to_string()
}

/// The parallel coordinates of the candidates scored at the first rung.
pub(crate) fn parallel(l: &Loaded, rep: &Report) -> Parallel {
    let first = first_rung_scores(l, &rep.schedule);
    let mut rows: Vec<_> = rep
        .leaderboard
        .iter()
        .filter_map(|r| Some((r, *first.get(&r.candidate)?)))
        .collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.rank.cmp(&b.0.rank)));
    let score: Vec<f64> = rows.iter().map(|(_, s)| *s).collect();
    let mut axes = Vec::new();

    let families: Vec<String> = rows
        .iter()
        .map(|(r, _)| {
            l.candidate(r.candidate)
                .map(|c| family_name(&c.family))
                .unwrap_or_default()
        })
        .collect();
    let mut names: Vec<String> = families.clone();
    names.sort();
    names.dedup();
    if names.len() > 1 {
        let values: Vec<Option<f64>> = families
            .iter()
            .map(|f| names.iter().position(|n| n == f).map(|i| i as f64))
            .collect();
        let kind = AxisKind::Category(names);
        let (importance, n) = importance(&kind, &values, &score);
        axes.push(PcAxis {
            name: "family".into(),
            kind,
            values,
            importance,
            n,
        });
    }
    let mut keys: Vec<&String> = rows.iter().flat_map(|(r, _)| r.params.keys()).collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        let values = rows.iter().map(|(r, _)| r.params.get(k).copied()).collect();
        axes.extend(number_axis(k, values, &score));
    }
    type Of = fn(&super::model::Row) -> Option<f64>;
    let numbers: [(&str, Of); 3] = [
        ("contraction", |r| r.contraction),
        ("parameters", |r| r.parameters.map(|p| p as f64)),
        ("multiply-adds", |r| r.multiply_adds.map(|p| p as f64)),
    ];
    for (name, of) in numbers {
        let values = rows.iter().map(|(r, _)| of(r)).collect();
        axes.extend(number_axis(name, values, &score));
    }
    Parallel {
        candidates: rows
            .iter()
            .map(|(r, _)| (r.candidate, r.rank, r.name.clone()))
            .collect(),
        score,
        axes,
        epochs: rep.schedule.rungs.first().copied().unwrap_or(0),
    }
}

/// A trial on the timeline.
#[derive(Clone, Debug)]
pub(crate) struct Bar {
    pub trial: TrialId,
    pub candidate: CandidateId,
    pub phase: Phase,
    pub status: TrialStatus,
    /// Seconds since the search was created.
    pub start: f64,
    pub end: f64,
    /// The lane: trials in one lane never overlap, so the lanes are the workers that were
    /// busy at once.
    pub lane: usize,
    /// The Slurm job or the device it ran on.
    pub place: String,
}

/// The trials that started, each in the first lane free when it started. A trial still
/// running ends at the latest time the store knows of.
pub(crate) fn timeline(l: &Loaded) -> Vec<Bar> {
    let created = l.experiment.created;
    let latest = l
        .trials
        .iter()
        .flat_map(|t| [t.started, t.finished])
        .flatten()
        .fold(created + l.experiment.wall_seconds, f64::max);
    let mut started: Vec<_> = l
        .trials
        .iter()
        .filter_map(|t| Some((t.started?, t)))
        .collect();
    started.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.id.cmp(&b.1.id)));
    let mut lanes: Vec<f64> = Vec::new();
    let mut out = Vec::new();
    for (start, t) in started {
        let end = match t.status {
            TrialStatus::Running | TrialStatus::Pending => latest,
            _ => t.finished.unwrap_or(latest),
        }
        .max(start);
        let lane = match lanes.iter().position(|free| *free <= start) {
            Some(i) => i,
            None => {
                lanes.push(f64::NEG_INFINITY);
                lanes.len() - 1
            }
        };
        lanes[lane] = end;
        out.push(Bar {
            trial: t.id,
            candidate: t.candidate,
            phase: t.phase,
            status: t.status,
            start: start - created,
            end: end - created,
            lane,
            place: t
                .job
                .as_ref()
                .map(|j| format!("Slurm job {j}"))
                .or_else(|| t.device.clone())
                .unwrap_or_default(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pareto_front_keeps_what_nothing_beats() {
        // (cost, accuracy): 1 beats 3 (cheaper, better); 4 is dearer than 2 but better.
        let p = [
            (5.0, 0.50),
            (1.0, 0.60),
            (2.0, 0.70),
            (3.0, 0.55),
            (4.0, 0.80),
            (f64::NAN, 0.99),
        ];
        assert_eq!(pareto_front(&p), [1, 2, 4]);
        // A tie in cost keeps the more accurate one only.
        assert_eq!(pareto_front(&[(1.0, 0.5), (1.0, 0.6)]), [1]);
        assert!(pareto_front(&[]).is_empty());
    }

    #[test]
    fn eta_squared_is_the_share_of_variance_between_groups() {
        // Groups explain everything, nothing, and half.
        assert_eq!(eta_squared(&[0, 0, 1, 1], &[1.0, 1.0, 3.0, 3.0]), Some(1.0));
        assert_eq!(eta_squared(&[0, 1, 0, 1], &[1.0, 1.0, 3.0, 3.0]), Some(0.0));
        // 1, 2, 3, 4 around 2.5: total 5; group means 1.5 and 3.5: between 2·1 + 2·1 = 4.
        let e = eta_squared(&[0, 0, 1, 1], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!((e - 0.8).abs() < 1e-12, "{e}");
        assert_eq!(eta_squared(&[0, 1], &[1.0, 2.0]), None);
        assert_eq!(eta_squared(&[0, 1, 2], &[1.0, 1.0, 1.0]), None);
        assert_eq!(eta_squared(&[4, 4, 4], &[1.0, 2.0, 3.0]), None, "one group");
    }

    #[test]
    fn numbers_group_by_value_or_by_rank() {
        assert_eq!(number_groups(&[0.5, 0.1, 0.5, 0.9], 5), [1, 0, 1, 2]);
        let g = number_groups(&[6.0, 1.0, 5.0, 2.0, 4.0, 3.0], 2);
        assert_eq!(g, [1, 0, 1, 0, 1, 0]);
    }
}
