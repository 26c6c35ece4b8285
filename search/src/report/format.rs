//! How the report writes its numbers and rows, for the terminal and the page alike.

use super::model::{Best, Report, Row};

/// `91.23 %`, or `-`.
pub(crate) fn pct(v: Option<f64>) -> String {
    v.map(|v| format!("{:.2} %", 100.0 * v))
        .unwrap_or_else(|| "-".into())
}

/// `84.33 ± 1.53 % (n=3)`, or the single value.
pub(crate) fn final_text(r: &Row) -> String {
    match &r.final_test {
        Some(f) => match f.std {
            Some(sd) => format!("{:.2} ± {:.2} % (n={})", 100.0 * f.mean, 100.0 * sd, f.n),
            None => format!("{:.2} % (n=1)", 100.0 * f.mean),
        },
        None => match (&r.test_from, r.test_acc) {
            (Some(from), Some(v)) => format!("{:.2} % ({from})", 100.0 * v),
            _ => "-".into(),
        },
    }
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

pub(crate) fn count(v: Option<i64>) -> String {
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
            "{} (trial {}): val {}, test {} after {} epochs",
            b.name,
            b.trial,
            pct(Some(b.score)),
            pct(Some(b.test_acc)),
            b.epochs
        ),
        None => "none yet".into(),
    }
}

/// The comparison lines: search against the random baseline at equal budget, and the finals.
pub(crate) fn comparison_lines(rep: &Report) -> Vec<String> {
    let b = &rep.budget;
    let mut out = vec![
        format!(
            "search   ({} trials, {} epochs): best {}",
            b.search.trials,
            b.search.epochs,
            best_text(&rep.comparison.search)
        ),
        format!(
            "baseline (random search, {} trials, {} epochs): best {}",
            b.baseline.trials,
            b.baseline.epochs,
            best_text(&rep.comparison.baseline)
        ),
    ];
    if let (Some(s), Some(r)) = (&rep.comparison.search, &rep.comparison.baseline) {
        out.push(format!(
            "search − baseline: {:+.2} points validation, {:+.2} points test",
            100.0 * (s.score - r.score),
            100.0 * (s.test_acc - r.test_acc)
        ));
    }
    if b.finals.trials > 0 {
        out.push(format!(
            "finals   ({} trials, {} epochs): best {}",
            b.finals.trials,
            b.finals.epochs,
            match &rep.comparison.finals {
                Some((name, f)) => format!(
                    "{name}: test {:.2}{} % over {} seeds",
                    100.0 * f.mean,
                    f.std
                        .map(|s| format!(" ± {:.2}", 100.0 * s))
                        .unwrap_or_default(),
                    f.n
                ),
                None => "none finished yet".into(),
            }
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
