//! What the driver shows: a bar for the search and a spinner per worker on a terminal, plain
//! lines otherwise.

use super::plan::State;
use crate::search::config::SearchConfig;
use crate::search::ids::{CandidateId, TrialId};
use crate::search::store::Trial;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;

/// The display: bars on a terminal, lines otherwise.
pub(super) struct Display {
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    workers: Vec<ProgressBar>,
    total: u64,
}

impl Display {
    pub(super) fn new(slots: usize, total: u64) -> Display {
        if !std::io::stderr().is_terminal() {
            return Display {
                multi: None,
                overall: None,
                workers: Vec::new(),
                total,
            };
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{prefix:>8} [{bar:30.cyan/blue}] {pos}/{len} epochs {elapsed_precise} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        let overall = multi.add(
            ProgressBar::new(total)
                .with_style(style)
                .with_prefix("search"),
        );
        let wstyle = ProgressStyle::with_template("{prefix:>8} {spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let workers = (0..slots)
            .map(|i| {
                multi.add(
                    ProgressBar::new_spinner()
                        .with_style(wstyle.clone())
                        .with_prefix(format!("worker {i}")),
                )
            })
            .collect();
        Display {
            multi: Some(multi),
            overall: Some(overall),
            workers,
            total,
        }
    }

    pub(super) fn line(&self, msg: &str) {
        match &self.multi {
            Some(m) => {
                let _ = m.println(msg);
            }
            None => eprintln!("{msg}"),
        }
    }

    pub(super) fn update(&mut self, epochs: u64, best: &str, busy: &[(usize, String)]) {
        if let Some(o) = &self.overall {
            if epochs > self.total {
                self.total = epochs;
                o.set_length(epochs);
            }
            o.set_position(epochs);
            o.set_message(best.to_string());
        }
        for (i, w) in self.workers.iter().enumerate() {
            match busy.iter().find(|(s, _)| *s == i) {
                Some((_, m)) => {
                    w.set_message(m.clone());
                    w.tick();
                }
                None => w.set_message("idle"),
            }
        }
    }

    pub(super) fn finish(&self) {
        for w in &self.workers {
            w.finish_and_clear();
        }
        if let Some(o) = &self.overall {
            o.finish();
        }
    }
}

/// Epochs a search will train, roughly: the rungs' shares, the baseline, the finalists.
pub(super) fn estimate(cfg: &SearchConfig, rungs: &[usize], pool: usize) -> u64 {
    let n = cfg.budget.trials.min(pool) as f64;
    let eta = cfg.budget.eta.max(2) as f64;
    let mut prev = 0usize;
    let mut search = 0.0;
    for (k, &b) in rungs.iter().enumerate() {
        search += (n / eta.powi(k as i32)).max(1.0).floor() * (b - prev) as f64;
        prev = b;
    }
    let base = if cfg.baseline { search } else { 0.0 };
    // The references train their seeds beside the top k: counted apart, so an upper bound
    // where a reference is among the top k (the science campaign's first estimate left them
    // out and came to 113 epochs where it trained 181).
    let finalists = cfg.finalists.top_k + cfg.finalists.references.len();
    let finals = (finalists * cfg.finalists.seeds * cfg.budget.max_epochs) as f64;
    (search + base + finals) as u64
}

/// The names of the candidates, for lines and bars.
pub(super) struct Names(pub HashMap<CandidateId, String>);

impl Names {
    fn of(&self, c: CandidateId) -> &str {
        self.0.get(&c).map(String::as_str).unwrap_or("?")
    }

    /// The line of a trial that ended.
    pub(super) fn ended(&self, t: &Trial) -> String {
        format!(
            "trial {:>3} {:<28} {:<8} epochs {}/{} {}",
            t.id,
            self.of(t.candidate),
            t.status.as_str(),
            t.epochs_done,
            t.budget,
            t.score
                .map(|a| format!("score {:.2} %", 100.0 * a))
                .unwrap_or_default()
        )
    }

    /// The best candidate so far, for the search bar.
    pub(super) fn best(&self, state: &State, rungs: &[usize]) -> String {
        state
            .ranking(rungs)
            .first()
            .map(|(c, p)| {
                // Rungs are counted from 1 wherever people read them (report, events).
                let at = p
                    .rung
                    .map(|r| format!("rung {}", r + 1))
                    .unwrap_or_else(|| format!("{} epochs", p.epochs));
                format!("best {} {:.2} % ({at})", self.of(*c), 100.0 * p.score)
            })
            .unwrap_or_default()
    }

    /// What each busy worker does.
    pub(super) fn busy(
        &self,
        state: &State,
        busy: &BTreeMap<usize, TrialId>,
    ) -> Vec<(usize, String)> {
        busy.iter()
            .map(|(&s, &id)| {
                let m = match state.trials.iter().find(|t| t.id == id) {
                    Some(t) => format!(
                        "trial {id} {} {} epoch {}/{}",
                        t.phase.as_str(),
                        self.of(t.candidate),
                        t.epochs_done,
                        t.budget
                    ),
                    None => format!("trial {id}"),
                };
                (s, m)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::estimate;
    use crate::search::config;
    use std::path::Path;

    #[test]
    fn the_estimate_counts_the_references_beside_the_top_k() {
        let yaml = "name: e
budget: {min_epochs: 1, max_epochs: 9, eta: 3, trials: 16}
finalists: {top_k: 3, seeds: 3, references: [gradient_descent, nesterov]}
baseline: false
candidates: [{spec: heavy_ball.yaml}]
";
        let cfg = config::parse(Path::new("e.yaml"), yaml).unwrap();
        let rungs = cfg.budget.rungs();
        assert_eq!(rungs, [1, 3, 9]);
        // Rungs: 16 trials × 1 epoch, 5 × 2 more, 1 × 6 more = 32; finals (3 + 2) × 3 × 9 = 135.
        assert_eq!(estimate(&cfg, &rungs, 20), 32 + 135);
        // With the baseline on, it trains as many epochs as the search.
        let on = config::parse(Path::new("e.yaml"), &yaml.replace("false", "true")).unwrap();
        assert_eq!(estimate(&on, &rungs, 20), 32 + 32 + 135);
    }
}
