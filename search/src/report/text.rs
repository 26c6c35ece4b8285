//! The leaderboard as terminal text and as CSV.

use super::format::{
    comparison_lines, count, estimate_lines, final_text, pct, rate, rung_text, study_lines,
};
use super::model::Report;
use std::fmt::Write;

/// The most leaderboard rows printed on the terminal (the files hold all of them).
pub(super) const TERMINAL_ROWS: usize = 20;

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
        "final val acc",
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
    for line in comparison_lines(rep)
        .into_iter()
        .chain(estimate_lines(rep))
        .chain(study_lines(rep))
    {
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
    "final_val_mean",
    "final_val_std",
    "final_n",
    "baseline_val",
    "reference",
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
        let f = r.final_val.as_ref();
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
            opt(r.baseline_val),
            r.reference.to_string(),
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
}
