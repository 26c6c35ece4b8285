//! `report.html`: one self-contained page (inline CSS, inline SVG charts, topology pictures as
//! `data:` URIs, a few lines of inline script that check the page rendered), readable from
//! the file system without a server or a network.

use super::chart::{self, esc, Chart, Key, Line, Mark, Shape, PALETTE};
use super::format::{comparison_lines, count, estimate_lines, final_text, pct, rate, rung_text};
use super::model::{first_rung_scores, Correlation, Loaded, Report, Row};
use crate::search::ids::CandidateId;
use crate::search::store::{Phase, TrialStatus};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// The most events listed (the latest ones); the JSON file has them all.
const MAX_EVENTS: usize = 500;

/// Standard base64 (RFC 4648, with padding).
pub(crate) fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `2025-03-01 14:05:09 UTC` from seconds since the Unix epoch.
pub(crate) fn utc(t: f64) -> String {
    let secs = t.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// A topology picture of a leaderboard row.
pub(crate) struct Picture {
    pub rank: usize,
    pub name: String,
    /// The SVG, when there is one.
    pub svg: Option<String>,
    /// Where it comes from, or why there is none.
    pub source: String,
}

/// The picture of `row`: its trial directories' `topology.svg` (best trial first), else the
/// spec unrolled again with its parameter values.
pub(crate) fn picture(dir: &Path, l: &Loaded, row: &Row) -> Picture {
    let mut trials: Vec<&crate::search::store::Trial> = l
        .trials
        .iter()
        .filter(|t| t.candidate == row.candidate)
        .collect();
    trials.sort_by_key(|t| Some(t.id) != row.best_trial);
    let found = trials.iter().find_map(|t| {
        let rel = Path::new(&t.dir).join("topology.svg");
        let text = std::fs::read_to_string(dir.join(&rel)).ok()?;
        text.contains("<svg")
            .then(|| (text, rel.display().to_string()))
    });
    let (svg, source) = match found {
        Some((svg, rel)) => (Some(svg), rel),
        None => match regenerate(l, row) {
            Ok((svg, steps)) => (
                Some(svg),
                format!("drawn from its spec at {steps} steps (no topology.svg in its trials)"),
            ),
            Err(e) => (None, format!("no picture: {e}")),
        },
    };
    Picture {
        rank: row.rank,
        name: row.name.clone(),
        svg,
        source,
    }
}

/// Why a candidate's topology cannot be drawn again.
#[derive(Debug, thiserror::Error)]
enum PictureError {
    #[error("candidate {0} is not in the store")]
    Missing(CandidateId),
    #[error(transparent)]
    Spec(#[from] optarch_core::error::SpecError),
    #[error(transparent)]
    Setup(#[from] crate::train::SetupError),
}

fn regenerate(l: &Loaded, row: &Row) -> Result<(String, usize), PictureError> {
    let c = l
        .candidate(row.candidate)
        .ok_or(PictureError::Missing(row.candidate))?;
    let spec = optarch_core::spec::load_str(&format!("{}.yaml", c.name), &c.spec_yaml)?;
    // The first stage's step count of the search's architecture, as the trials drew it.
    let steps = l.config.train.arch.first_stage_steps()?;
    let topo = optarch_core::topology::unroll(&spec, steps, &c.overrides)?;
    Ok((optarch_core::render::to_svg(&topo), steps))
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

fn f3(v: Option<f64>) -> String {
    v.map(|v| format!("{v:+.3}")).unwrap_or_else(|| "-".into())
}

fn rung_color(i: usize) -> String {
    if i == 0 {
        "#90a4ae".into()
    } else {
        PALETTE[(i - 1) % PALETTE.len()].into()
    }
}

/// Validation accuracy against epoch of every search trial, coloured by the highest rung it
/// reached, with the rung budgets marked.
fn search_curves(l: &Loaded, rep: &Report) -> String {
    let rungs = &rep.schedule.rungs;
    let mut c = Chart::new(
        "Learning curves: search trials",
        "validation accuracy after each epoch; colour = highest ASHA rung reached; dashed = ended in a fault",
        "epoch",
        "validation accuracy (%)",
    );
    c.x_from_zero = true;
    let mut reached_rungs = std::collections::BTreeSet::new();
    for t in l.trials.iter().filter(|t| t.phase == Phase::Search) {
        let eps = l.epochs.get(&t.id).map(Vec::as_slice).unwrap_or(&[]);
        let points: Vec<(f64, f64)> = eps
            .iter()
            .filter_map(|e| Some(((e.epoch + 1) as f64, 100.0 * e.score()?)))
            .collect();
        if points.is_empty() {
            continue;
        }
        let reached = rungs
            .iter()
            .rposition(|b| eps.iter().any(|e| e.epoch + 1 == *b))
            .unwrap_or(0);
        reached_rungs.insert(reached);
        c.lines.push(Line {
            color: rung_color(reached),
            points,
            width: if reached + 1 == rungs.len() { 2.2 } else { 1.4 },
            opacity: 0.8,
            dashed: t.status.is_final(),
            title: format!("trial {} · {}", t.id, l.candidate_name(t.candidate)),
        });
    }
    for (i, b) in rungs.iter().enumerate() {
        c.vlines.push((*b as f64, format!("rung {}", i + 1)));
    }
    for i in reached_rungs {
        c.legend.push(Key::Line(
            format!(
                "reached rung {} ({} ep)",
                i + 1,
                rungs.get(i).copied().unwrap_or(0)
            ),
            rung_color(i),
        ));
    }
    chart::draw(&c)
}

/// Validation accuracy against epoch of every final trial, one colour per finalist.
fn final_curves(l: &Loaded, rep: &Report) -> String {
    let mut c = Chart::new(
        "Learning curves: finalists re-trained with several seeds",
        "validation accuracy after each epoch; one colour per candidate, one line per seed",
        "epoch",
        "validation accuracy (%)",
    );
    c.x_from_zero = true;
    let finalists: Vec<&Row> = rep
        .leaderboard
        .iter()
        .filter(|r| {
            l.trials
                .iter()
                .any(|t| t.candidate == r.candidate && t.phase == Phase::Final)
        })
        .collect();
    for (k, r) in finalists.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()].to_string();
        for t in l
            .trials
            .iter()
            .filter(|t| t.candidate == r.candidate && t.phase == Phase::Final)
        {
            let points: Vec<(f64, f64)> = l
                .epochs
                .get(&t.id)
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .filter_map(|e| Some(((e.epoch + 1) as f64, 100.0 * e.score()?)))
                .collect();
            c.lines.push(Line {
                color: color.clone(),
                points,
                width: 1.6,
                opacity: 0.85,
                dashed: t.status.is_final(),
                title: format!("trial {} · {} · seed {}", t.id, r.name, t.seed),
            });
        }
        c.legend
            .push(Key::Line(format!("#{} {}", r.rank, r.name), color));
    }
    chart::draw(&c)
}

/// Two series against a per-candidate x: first-rung validation accuracy (every candidate)
/// and mean final validation accuracy with ± one standard deviation (finalists, references).
fn accuracy_scatter(
    rep: &Report,
    title: &str,
    subtitle: &str,
    x_label: &str,
    x_of: impl Fn(&Row) -> Option<f64>,
    first: &BTreeMap<CandidateId, f64>,
    labelled: usize,
) -> String {
    let mut c = Chart::new(title, subtitle, x_label, "accuracy (%)");
    let rungs = &rep.schedule.rungs;
    let label =
        |r: &Row| (rep.leaderboard.len() <= 20 || r.rank <= labelled).then(|| r.name.clone());
    let mut early = Vec::new();
    let mut fin = Vec::new();
    for r in &rep.leaderboard {
        let Some(x) = x_of(r) else { continue };
        if let Some(y) = first.get(&r.candidate) {
            early.push(Mark {
                x,
                y: 100.0 * y,
                err: None,
                label: label(r),
                title: format!(
                    "#{} {}: {} ({x_label} {x:.4})",
                    r.rank,
                    r.name,
                    pct(Some(*y))
                ),
            });
        }
        if let Some(f) = &r.final_val {
            fin.push(Mark {
                x,
                y: 100.0 * f.mean,
                err: f.std.map(|s| 100.0 * s),
                label: label(r),
                title: format!("#{} {}: {}", r.rank, r.name, final_text(r)),
            });
        }
    }
    let e0 = rungs.first().copied().unwrap_or(0);
    c.scatter(
        &format!("val. after {e0} ep (rung 1)"),
        PALETTE[0],
        Shape::Circle,
        early,
    );
    if !fin.is_empty() {
        c.scatter("final val., mean ± sd", PALETTE[1], Shape::Diamond, fin);
    }
    let xs: Vec<f64> = rep
        .leaderboard
        .iter()
        .filter_map(&x_of)
        .filter(|x| *x > 0.0)
        .collect();
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(*x), b.max(*x)));
    c.x_log = x_label == "parameters" && lo > 0.0 && hi / lo > 8.0;
    chart::draw(&c)
}

const CSS: &str = "
body { font-family: 'DejaVu Sans', Arial, Helvetica, sans-serif; color: #263238; margin: 0;
       background: #f5f7f8; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; background: white; }
h1 { font-size: 26px; margin: 8px 0 4px; }
h2 { font-size: 20px; margin: 36px 0 8px; border-bottom: 1px solid #cfd8dc; padding-bottom: 4px; }
p, li { line-height: 1.45; }
.muted { color: #607d8b; font-size: 14px; }
table { border-collapse: collapse; font-size: 13.5px; margin: 8px 0; }
th, td { border-bottom: 1px solid #eceff1; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #eceff1; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.top td { background: #f1f8e9; }
svg.chart { max-width: 100%; height: auto; display: block; margin: 12px 0; }
figure { margin: 16px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eceff1; }
figcaption { font-size: 13px; color: #546e7a; }
pre { background: #f5f7f8; padding: 10px; overflow-x: auto; font-size: 12.5px; }
.verdict { font-weight: bold; }
#render-check { font-size: 12px; color: #90a4ae; margin-top: 32px; }
";

/// Checks, once loaded, that every image decoded and every chart has a size, and writes the
/// result into `#render-check` (headless browsers read it back in the tests).
const CHECK_SCRIPT: &str = "
window.addEventListener('load', function () {
  var bad = [];
  var imgs = Array.prototype.slice.call(document.images);
  imgs.forEach(function (im, i) {
    if (!(im.complete && im.naturalWidth > 0 && im.naturalHeight > 0)) { bad.push('image ' + (im.alt || i)); }
  });
  var svgs = Array.prototype.filter.call(document.querySelectorAll('svg'), function (s) {
    return !(s.parentElement && s.parentElement.closest('svg'));
  });
  svgs.forEach(function (s, i) {
    var r = s.getBoundingClientRect(), b = s.getBBox();
    if (!(r.width > 0 && r.height > 0 && b.width > 0 && b.height > 0)) { bad.push('chart ' + i); }
  });
  var out = document.getElementById('render-check');
  out.textContent = bad.length ? 'FAILED: ' + bad.join(', ')
    : 'ok ' + imgs.length + ' images, ' + svgs.length + ' charts';
});
";

fn leaderboard_table(rep: &Report, s: &mut String) {
    let rungs = rep.schedule.rungs.len();
    s.push_str(
        "<table><tr><th>rank</th><th>name</th><th>origin</th><th>params</th>\
         <th>parameters</th><th>highest rung</th><th>val acc</th><th>final val acc</th>\
         <th>contraction</th><th>asymptotic</th><th>div/oom/fail</th><th>epochs</th></tr>\n",
    );
    for r in &rep.leaderboard {
        let _ = writeln!(
            s,
            "<tr{}><td class=num>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td>\
             <td>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>\
             <td class=num>{}</td><td class=num>{}/{}/{}</td><td class=num>{}</td></tr>",
            if r.rank == 1 { " class=top" } else { "" },
            r.rank,
            esc(&r.name),
            esc(&r.origin),
            esc(&r.params_text()),
            count(r.parameters),
            rung_text(r, rungs),
            pct(r.score),
            esc(&final_text(r)),
            rate(r.contraction),
            rate(r.asymptotic),
            r.diverged,
            r.oom,
            r.failed,
            r.epochs
        );
    }
    s.push_str("</table>\n");
}

fn correlation_table(rep: &Report, s: &mut String) {
    s.push_str(
        "<table><tr><th>rate</th><th>accuracy</th><th>n</th><th>Kendall τ-b</th>\
         <th>p (τ)</th><th>Spearman ρ</th><th>reading</th></tr>\n",
    );
    for c in &rep.correlations {
        let p = c
            .p_value
            .map(|p| format!("{p:.3}"))
            .unwrap_or_else(|| "-".into());
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td>\
             <td class=num>{p}</td><td class=num>{}</td><td>{}</td></tr>",
            esc(&c.rate),
            esc(&c.accuracy),
            c.n,
            f3(c.kendall_tau),
            f3(c.spearman_rho),
            esc(&verdict(c))
        );
    }
    s.push_str("</table>\n");
}

fn rung_table(rep: &Report, s: &mut String) {
    s.push_str(
        "<table><tr><th>rung</th><th>epochs</th><th>trials scored</th><th>promoted</th>\
         <th>best</th><th>median</th><th>Kendall τ with the next rung (n)</th></tr>\n",
    );
    for r in &rep.rungs {
        let _ = writeln!(
            s,
            "<tr><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>\
             <td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>\
             <td class=num>{} ({})</td></tr>",
            r.rung + 1,
            r.epochs,
            r.reached,
            r.promoted
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            pct(r.best),
            pct(r.median),
            f3(r.tau_next),
            r.n_next
        );
    }
    s.push_str("</table>\n");
}

fn faults_and_events(rep: &Report, s: &mut String) {
    if rep.faults.is_empty() {
        s.push_str("<p>No trial ended in a fault.</p>\n");
    } else {
        s.push_str(
            "<table><tr><th>trial</th><th>candidate</th><th>phase</th><th>status</th>\
             <th>attempts</th><th>epochs</th><th>error</th></tr>\n",
        );
        for f in &rep.faults {
            let _ = writeln!(
                s,
                "<tr><td class=num>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=num>{}</td>\
                 <td class=num>{}</td><td>{}</td></tr>",
                f.trial,
                esc(&f.candidate),
                f.phase.as_str(),
                f.status.as_str(),
                f.attempts,
                f.epochs_done,
                esc(f.error.as_deref().unwrap_or(""))
            );
        }
        s.push_str("</table>\n");
    }
    let skip = rep.events.len().saturating_sub(MAX_EVENTS);
    let _ = writeln!(
        s,
        "<h3>Event log</h3><p class=muted>{} events{}; times in seconds since the search was \
         created.</p>",
        rep.events.len(),
        if skip > 0 {
            format!(", the last {MAX_EVENTS} shown (leaderboard.json has all)")
        } else {
            String::new()
        }
    );
    if !rep.events.is_empty() {
        s.push_str("<table><tr><th>at (s)</th><th>trial</th><th>message</th></tr>\n");
        for e in rep.events.iter().skip(skip) {
            let _ = writeln!(
                s,
                "<tr><td class=num>{:.1}</td><td class=num>{}</td><td>{}</td></tr>",
                e.at,
                e.trial.map(|t| t.to_string()).unwrap_or_default(),
                esc(&e.message)
            );
        }
        s.push_str("</table>\n");
    }
}

/// The whole page.
pub(crate) fn page(l: &Loaded, rep: &Report, pictures: &[Picture], dir_name: &str) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>optarch search report: {}</title><style>{CSS}</style></head><body><main>\n\
         <h1>Search report: {}</h1>\n<p class=muted>{} · status {} · created {} · driver time \
         {:.0} s · rungs at {} epochs · {} candidates, {} trials</p>\n",
        esc(&rep.experiment),
        esc(&rep.experiment),
        esc(dir_name),
        esc(&rep.status),
        utc(rep.created),
        rep.wall_seconds,
        rep.schedule
            .rungs
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        rep.leaderboard.len(),
        l.trials.len()
    );

    s.push_str(
        "<nav class=muted><a href=\"#estimate\">test estimate</a> · <a href=\"#baseline\">baseline</a> · <a href=\"#leaderboard\">leaderboard</a> · \
         <a href=\"#hypothesis\">rate against accuracy</a> · <a href=\"#size\">size</a> · \
         <a href=\"#curves\">learning curves</a> · <a href=\"#rungs\">rungs</a> · \
         <a href=\"#topologies\">topologies</a> · <a href=\"#faults\">faults and events</a> · \
         <a href=\"#configuration\">configuration</a></nav>\n",
    );
    s.push_str(
        "<h2 id=estimate>The winner on the test set</h2>\n<p class=muted>Every decision of the \
         search (promotions, finalists, the winner, the export, this page's order) reads \
         validation accuracy only; the test set is evaluated only by the final trials, and \
         reported here as the unbiased estimate of the winner's accuracy, with the named \
         references trained on the same seeds. A difference whose 95 % interval (Student's t \
         over the paired seeds) contains 0 is not resolved at this budget.</p>\n<ul>\n",
    );
    for line in estimate_lines(rep) {
        let _ = writeln!(s, "<li>{}</li>", esc(line.trim_start()));
    }
    s.push_str("</ul>\n");
    s.push_str("<h2 id=baseline>Search against random search at equal budget</h2>\n<ul>\n");
    for line in comparison_lines(rep) {
        let _ = writeln!(s, "<li>{}</li>", esc(&line));
    }
    s.push_str(
        "</ul>\n<p class=muted>Epochs count every trained epoch of the phase; the random \
         baseline trains each of its trials for the full budget. The search is worth its \
         machinery when its best beats the baseline's at no more epochs.</p>\n",
    );

    s.push_str(
        "<h2 id=leaderboard>Leaderboard</h2>\n<p class=muted>Validation accuracy only: \
         candidates with final trials first, by mean validation accuracy over the seeds (± \
         sample standard deviation); then by the highest rung reached and the validation \
         accuracy there; then baseline-only candidates.</p>\n",
    );
    leaderboard_table(rep, &mut s);

    let first = first_rung_scores(l, &rep.schedule);
    s.push_str(
        "<h2 id=hypothesis>Hypothesis: a faster optimizer makes a better network</h2>\n<p>The paper behind \
         optarch conjectures that networks designed from faster optimization methods are more \
         accurate. Each candidate's <em>contraction</em> is the worst-case factor by which its \
         method shrinks the error per step on quadratics (from the spec's theory): smaller is \
         faster. So the hypothesis predicts a <strong>negative</strong> rank correlation between \
         contraction and accuracy: Kendall's τ and Spearman's ρ below zero support it, above \
         zero contradict it. The first-rung accuracies compare every candidate at the same \
         budget; the finalists' mean validation accuracies are more reliable but fewer. The p-value is the chance of a correlation at least this strong \
         if rate and accuracy were unrelated (exact for up to 8 candidates, else a normal \
         approximation).</p>\n",
    );
    let k = pictures.len();
    s.push_str(&accuracy_scatter(
        rep,
        "Accuracy against theoretical convergence rate",
        "x = worst-case contraction on quadratics (smaller = faster method); a falling cloud supports the hypothesis",
        "contraction",
        |r| r.contraction,
        &first,
        k,
    ));
    correlation_table(rep, &mut s);

    s.push_str("<h2 id=size>Accuracy against size</h2>\n");
    s.push_str(&accuracy_scatter(
        rep,
        "Accuracy against parameters",
        "every candidate after the first rung, and the finalists",
        "parameters",
        |r| r.parameters.map(|p| p as f64),
        &first,
        k,
    ));

    s.push_str("<h2 id=curves>Learning curves</h2>\n");
    s.push_str(&search_curves(l, rep));
    s.push_str(&final_curves(l, rep));

    s.push_str(
        "<h2 id=rungs>ASHA rungs</h2>\n<p class=muted>A trial is scored at a rung when it has trained \
         that rung's epochs; the best fraction of each rung is promoted to the next. Kendall's \
         τ between consecutive rungs shows how well short runs rank candidates.</p>\n",
    );
    rung_table(rep, &mut s);

    let _ = writeln!(s, "<h2 id=topologies>Topologies of the top {k}</h2>");
    for p in pictures {
        match &p.svg {
            Some(svg) => {
                let _ = writeln!(
                    s,
                    "<figure><img alt=\"topology of {}\" src=\"data:image/svg+xml;base64,{}\">\
                     <figcaption>#{} {}: {}</figcaption></figure>",
                    esc(&p.name),
                    base64(svg.as_bytes()),
                    p.rank,
                    esc(&p.name),
                    esc(&p.source)
                );
            }
            None => {
                let _ = writeln!(s, "<p>#{} {}: {}</p>", p.rank, esc(&p.name), esc(&p.source));
            }
        }
    }

    s.push_str("<h2 id=faults>Faults</h2>\n");
    faults_and_events(rep, &mut s);

    let statuses: Vec<String> = [
        TrialStatus::Pending,
        TrialStatus::Running,
        TrialStatus::Done,
        TrialStatus::Diverged,
        TrialStatus::Oom,
        TrialStatus::Failed,
    ]
    .iter()
    .map(|st| {
        format!(
            "{} {}",
            l.trials.iter().filter(|t| t.status == *st).count(),
            st.as_str()
        )
    })
    .collect();
    let _ = writeln!(
        s,
        "<h2 id=configuration>Configuration</h2>\n<p class=muted>Trials: {}.</p>\n<details><summary>search \
         configuration (YAML)</summary><pre>{}</pre></details>",
        statuses.join(", "),
        esc(&l.experiment.config_yaml)
    );
    let _ = write!(
        s,
        "<div id=\"render-check\">render check not run (JavaScript is off)</div>\n\
         <script>{CHECK_SCRIPT}</script>\n</main></body></html>\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, enc) in cases {
            assert_eq!(base64(plain.as_bytes()), enc, "{plain}");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0.0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400.0), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_735_689_599.5), "2024-12-31 23:59:59 UTC");
    }
}
