//! The leaderboard as terminal text and as CSV.

use super::model::{Best, Report, Row};
use std::fmt::Write;

/// The most leaderboard rows printed on the terminal (the files hold all of them).
pub(super) const TERMINAL_ROWS: usize = 20;

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

/// The terminal leaderboard.
pub(crate) fn terminal(rep: &Report, dir_name: &str) -> String {
    let mut s = String::new();
    let rungs = rep.schedule.rungs.len();
    let _ = writeln!(
        s,
        "{}: experiment `{}` ({}), {} candidates, rungs at {:?} epochs",
        dir_name,
        rep.experiment,
        rep.status,
        rep.leaderboard.len(),
        rep.schedule.rungs
    );
    let header = [
        "rank",
        "name",
        "params",
        "parameters",
        "rung",
        "val acc",
        "test acc",
        "contraction",
        "div/oom/fail",
        "epochs",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rep.leaderboard.iter().take(TERMINAL_ROWS) {
        table.push(vec![
            r.rank.to_string(),
            r.name.clone(),
            if r.params_text().is_empty() {
                "-".into()
            } else {
                r.params_text()
            },
            count(r.parameters),
            rung_text(r, rungs),
            pct(r.score),
            final_text(r),
            rate(r.contraction),
            format!("{}/{}/{}", r.diverged, r.oom, r.failed),
            r.epochs.to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for row in &table {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, v)| {
                // Numbers right-aligned, words left-aligned.
                if matches!(c, 0 | 3 | 9) {
                    format!("{v:>w$}", w = widths[c])
                } else {
                    format!("{v:<w$}", w = widths[c])
                }
            })
            .collect();
        let _ = writeln!(s, "{}", cells.join("  ").trim_end());
    }
    if rep.leaderboard.len() > TERMINAL_ROWS {
        let _ = writeln!(
            s,
            "... {} more in leaderboard.csv",
            rep.leaderboard.len() - TERMINAL_ROWS
        );
    }
    for line in comparison_lines(rep) {
        let _ = writeln!(s, "{line}");
    }
    let faults = rep.faults.len();
    if faults > 0 {
        let _ = writeln!(s, "{faults} trials ended in a fault (see the report)");
    }
    s
}

/// The CSV columns, in order.
pub const CSV_HEADER: &[&str] = &[
    "rank",
    "candidate",
    "name",
    "origin",
    "phases",
    "parameters",
    "multiply_adds",
    "params",
    "highest_rung",
    "rung_epochs",
    "val_acc",
    "final_test_mean",
    "final_test_std",
    "final_n",
    "test_acc",
    "test_from",
    "contraction",
    "asymptotic",
    "trials",
    "diverged",
    "oom",
    "failed",
    "epochs",
];

/// Quotes a CSV field when it holds a comma, a quote or a line break (RFC 4180).
fn field(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", v.replace('"', "\"\""))
    } else {
        v.to_string()
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

/// `leaderboard.csv`: every candidate, accuracies as fractions at full precision, empty
/// fields for missing values.
pub(crate) fn csv(rep: &Report) -> String {
    let mut s = CSV_HEADER.join(",");
    s.push('\n');
    for r in &rep.leaderboard {
        let f = r.final_test.as_ref();
        let cells = [
            r.rank.to_string(),
            r.candidate.to_string(),
            r.name.clone(),
            r.origin.clone(),
            r.phases.clone(),
            opt(r.parameters),
            opt(r.multiply_adds),
            r.params_text(),
            opt(r.highest_rung),
            opt(r.rung_epochs),
            opt(r.score),
            opt(f.map(|f| f.mean)),
            opt(f.and_then(|f| f.std)),
            opt(f.map(|f| f.n)),
            opt(r.test_acc),
            r.test_from.clone().unwrap_or_default(),
            opt(r.contraction),
            opt(r.asymptotic),
            r.trials.to_string(),
            r.diverged.to_string(),
            r.oom.to_string(),
            r.failed.to_string(),
            r.epochs.to_string(),
        ];
        let line: Vec<String> = cells.iter().map(|c| field(c)).collect();
        s.push_str(&line.join(","));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(field("a"), "a");
        assert_eq!(field("beta=0.5, h=1"), "\"beta=0.5, h=1\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(count(Some(272474)), "272,474");
        assert_eq!(count(Some(999)), "999");
        assert_eq!(count(Some(-1234)), "-1,234");
        assert_eq!(count(Some(-123)), "-123");
        assert_eq!(count(None), "-");
    }
}
