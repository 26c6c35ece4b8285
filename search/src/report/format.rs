//! How the report writes its numbers and rows, for the terminal and the page alike.

use super::model::{Best, Correlation, FinalStats, Report, Row};
use super::stats::Interval;

/// `1 epoch`, `3 epochs`.
pub(crate) fn epochs_text(n: usize) -> String {
    format!("{n} epoch{}", if n == 1 { "" } else { "s" })
}

/// `91.23 %`, or `-`.
pub(crate) fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2} %", 100.0 * v))
        .unwrap_or_else(|| "-".into())
}

/// `84.33 ± 1.53 % (n=3)`, or `-`.
pub(crate) fn stats_text(f: Option<&FinalStats>) -> String {
    match f {
        Some(f) => match f.std {
            Some(sd) => format!("{:.2} ± {:.2} % (n={})", 100.0 * f.mean, 100.0 * sd, f.n),
            None => format!("{:.2} % (n=1)", 100.0 * f.mean),
        },
        None => "-".into(),
    }
}

/// A row's final validation accuracy over seeds, marking references.
pub(crate) fn final_text(r: &Row) -> String {
    let s = stats_text(r.final_val.as_ref());
    if r.reference {
        format!("{s} (reference)")
    } else {
        s
    }
}

/// A paired difference in points with its interval, and whether it is resolved.
pub(crate) fn interval_text(i: &Interval) -> String {
    format!(
        "{:+.2} points, 95 % interval [{:+.2}, {:+.2}] over {} paired seeds: {}",
        100.0 * i.mean,
        100.0 * i.lo,
        100.0 * i.hi,
        i.n,
        if i.resolved() {
            "resolved"
        } else {
            "not resolved at this budget (the interval contains 0)"
        }
    )
}

/// The unbiased estimate, in lines: the winner's test accuracy and the references'.
pub(crate) fn estimate_lines(rep: &Report) -> Vec<String> {
    let Some(e) = &rep.estimate else {
        return vec!["test set: not evaluated yet (the final trials have not ended)".into()];
    };
    let mut out = vec![format!(
        "unbiased estimate (test set, never used to choose): {} {}",
        e.winner,
        stats_text(e.test.as_ref())
    )];
    for v in &e.references {
        let who = if v.challenger == e.winner {
            String::new()
        } else {
            format!(
                "{} (the best finalist that is no reference, {}) ",
                v.challenger,
                stats_text(v.challenger_test.as_ref())
            )
        };
        out.push(format!(
            "  {who}against {} {}: {}",
            v.reference,
            stats_text(v.test.as_ref()),
            v.difference
                .as_ref()
                .map(interval_text)
                .unwrap_or_else(|| "fewer than 2 seeds in common, no interval".into())
        ));
    }
    out
}

pub(crate) fn rate(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_else(|| "-".into())
}

pub(crate) fn rung_text(r: &Row, rungs: usize) -> String {
    match (r.highest_rung, r.rung_epochs) {
        (Some(i), Some(e)) => format!("{}/{} ({e} ep)", i + 1, rungs),
        _ => "-".into(),
    }
}

/// `v` with its digits grouped by thousands (`269,722`), `-` for none.
pub fn count(v: Option<i64>) -> String {
    v.map(|n| {
        let digits = n.unsigned_abs().to_string();
        let mut out = String::from(if n < 0 { "-" } else { "" });
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    })
    .unwrap_or_else(|| "-".into())
}

fn best_text(b: &Option<Best>) -> String {
    match b {
        Some(b) => format!(
            "{} (trial {}): val {} after {}",
            b.name,
            b.trial,
            pct(Some(b.score)),
            epochs_text(b.epochs)
        ),
        None => "none yet".into(),
    }
}

/// The comparison lines: search against the random baseline at equal budget, and the finals.
pub(crate) fn comparison_lines(rep: &Report) -> Vec<String> {
    let b = &rep.budget;
    let baseline = if rep.schedule.baseline || b.baseline.trials > 0 {
        format!(
            "baseline (random search, {} trials, {} epochs): best {}",
            b.baseline.trials,
            b.baseline.epochs,
            best_text(&rep.comparison.baseline)
        )
    } else {
        "baseline (random search): off (`baseline: false`)".into()
    };
    let mut out = vec![
        format!(
            "search   ({} trials, {} epochs): best {}",
            b.search.trials,
            b.search.epochs,
            best_text(&rep.comparison.search)
        ),
        baseline,
    ];
    if let (Some(s), Some(r)) = (&rep.comparison.search, &rep.comparison.baseline) {
        out.push(format!(
            "search − baseline: {:+.2} points validation",
            100.0 * (s.score - r.score)
        ));
    }
    if b.finals.trials > 0 {
        out.push(format!(
            "finals   ({} trials, {} epochs): best {}",
            b.finals.trials,
            b.finals.epochs,
            match &rep.comparison.finals {
                Some((name, f)) => format!("{name}: val {}", stats_text(Some(f))),
                None => "none finished yet".into(),
            }
        ));
    }
    out
}

/// In words: what a rank correlation between rate and accuracy says about the hypothesis.
pub(crate) fn verdict(c: &Correlation) -> String {
    let Some(tau) = c.kendall_tau else {
        return "not enough data (at least two candidates with different rates and accuracies)"
            .into();
    };
    let strength = match c.p_value {
        Some(p) if p < 0.05 => "significantly (p < 0.05)",
        _ => "weakly, not significantly",
    };
    if tau < 0.0 {
        format!("supports the hypothesis {strength}: the faster the method, the more accurate the network")
    } else if tau > 0.0 {
        format!("contradicts the hypothesis {strength}: the faster the method, the less accurate the network")
    } else {
        "no relation between rate and accuracy".into()
    }
}

/// A signed value to three places, `-` where there is none.
pub(crate) fn f3(v: Option<f64>) -> String {
    v.map(|v| format!("{v:+.3}")).unwrap_or_else(|| "-".into())
}

/// A count, `-` where there is none.
pub(crate) fn or_dash(v: Option<usize>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// A p-value to three places, `-` where there is none.
pub(crate) fn p3(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}

/// What a study of the search reads, in lines: every candidate with final trials on validation
/// and test, the rank correlations between convergence rate and accuracy, and how well each
/// ASHA rung predicted the next and the full-budget ranking (docs/SCIENCE.md prints these).
pub(crate) fn study_lines(rep: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let finals: Vec<&Row> = rep
        .leaderboard
        .iter()
        .filter(|r| r.final_val.is_some())
        .collect();
    if !finals.is_empty() {
        out.push("finals (mean ± sample std over seeds; the test set chose nothing):".into());
        let w = finals
            .iter()
            .map(|r| r.name.chars().count())
            .max()
            .unwrap_or(0);
        for r in finals {
            out.push(format!(
                "  {:<w$}  val {}  test {}{}",
                r.name,
                stats_text(r.final_val.as_ref()),
                stats_text(r.final_test.as_ref()),
                if r.reference { "  (reference)" } else { "" }
            ));
        }
    }
    if !rep.correlations.is_empty() {
        out.push(
            "rate against accuracy (a smaller rate is a faster method; τ < 0 favours the \
             hypothesis):"
                .into(),
        );
        for c in &rep.correlations {
            out.push(format!(
                "  {} vs {}: n = {}, Kendall τ {} (p {}), Spearman ρ {} (p {}): {}",
                c.rate,
                c.accuracy,
                c.n,
                f3(c.kendall_tau),
                p3(c.p_value),
                f3(c.spearman_rho),
                p3(c.spearman_p_value),
                verdict(c)
            ));
        }
    }
    out.push("ASHA rungs (Kendall τ with the next rung, and with the finals' ranking):".into());
    for r in &rep.rungs {
        out.push(format!(
            "  rung {} ({}, {:.0} % of a full run): {} scored, {} promoted; \
             τ next {} (n = {}), τ finals {} (n = {})",
            r.rung + 1,
            epochs_text(r.epochs),
            100.0 * r.share,
            r.reached,
            or_dash(r.promoted),
            f3(r.tau_next),
            r.n_next,
            f3(r.tau_final),
            r.n_final
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(count(Some(272474)), "272,474");
        assert_eq!(count(Some(999)), "999");
        assert_eq!(count(Some(-1234)), "-1,234");
        assert_eq!(count(Some(-123)), "-123");
        assert_eq!(count(None), "-");
    }
}
