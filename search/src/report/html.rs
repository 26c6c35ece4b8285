//! `report.html`: one self-contained page (inline CSS, inline SVG charts, topology pictures as
//! `data:` URIs, a few lines of inline script that check the page rendered), readable from
//! the file system without a server or a network.

use super::chart::{self, esc, Chart, Key, Line, Mark, Shape, PALETTE};
use super::explore::{self, Parallel};
use super::format::{
    comparison_lines, count, estimate_lines, f3, final_text, or_dash, p3, pct, rate, rung_text,
    verdict,
};
use super::model::{first_rung_scores, Loaded, Report, Row};
use super::views;
use crate::search::ids::{CandidateId, TrialId};
use crate::search::store::{Phase, TrialStatus};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// The most events listed (the latest ones); the JSON file has them all.
const MAX_EVENTS: usize = 500;

/// Standard base64 (RFC 4648, with padding).
pub fn base64(data: &[u8]) -> String {
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
    pub candidate: CandidateId,
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
        candidate: row.candidate,
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
    // The first stage's step count of the candidate's architecture, as the trials drew it.
    let arch = c.arch.as_ref().unwrap_or(&l.config.train.arch);
    let steps = arch.first_stage_steps()?;
    let topo = optarch_core::topology::unroll(&spec, steps, &c.overrides)?;
    Ok((optarch_core::render::to_svg(&topo), steps))
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
main { max-width: 1320px; margin: 0 auto; padding: 24px 32px 64px; background: white; }
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
#render-check, #selftest { font-size: 12px; color: #90a4ae; margin-top: 8px; }
.scroll { overflow-x: auto; max-width: 100%; }
.scroll.tall { max-height: 75vh; overflow-y: auto; }
.scroll.tall thead th { position: sticky; top: 0; z-index: 1; }
#board { font-size: 13px; }
#board th { cursor: pointer; user-select: none; white-space: nowrap; }
#board th[aria-sort=ascending]::after { content: ' ▲'; font-size: 10px; }
#board th[aria-sort=descending]::after { content: ' ▼'; font-size: 10px; }
#board td { white-space: nowrap; }
#board td.wrap { white-space: normal; min-width: 80px; max-width: 220px; overflow-wrap: anywhere; }
#board tbody tr { cursor: pointer; }
#board tbody tr:hover td { background: #e3f2fd; }
#board tbody tr.sel td { background: #bbdefb; }
.tools { display: flex; gap: 16px; align-items: center; flex-wrap: wrap; margin: 8px 0; }
#filter { font: inherit; font-size: 14px; padding: 4px 8px; width: 320px; max-width: 100%;
          border: 1px solid #b0bec5; border-radius: 4px; }
#detail { border: 1px solid #90caf9; background: #f8fbff; padding: 8px 16px 16px; margin: 12px 0; }
#detail h3 { margin: 8px 0 4px; }
#detail .minis { display: flex; flex-wrap: wrap; gap: 12px; }
#detail figure img { max-height: 420px; }
#tip { position: fixed; z-index: 10; pointer-events: none; background: #263238; color: white;
       font-size: 12.5px; padding: 4px 8px; border-radius: 4px; max-width: 420px; }
[data-cand] { cursor: pointer; }
svg.parallel polyline:hover { stroke-width: 4; stroke-opacity: 1; }
td .bar { display: inline-block; height: 10px; background: #1565c0; margin-right: 6px;
          vertical-align: middle; }
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

/// A sort key for a cell: the number, or empty when there is none (sorted last).
fn key(v: Option<f64>) -> String {
    v.filter(|v| v.is_finite())
        .map(|v| format!("{v}"))
        .unwrap_or_default()
}

/// The page's interactions: instant tooltips (every chart mark's `<title>`), sorting and
/// filtering the leaderboard, a candidate's details on a click (its best trial's loss and
/// accuracy curves, its topology picture). With `#run-selftest` in the address it also exercises
/// them and writes the outcome into `#selftest` (the browser tests read it back).
const INTERACT_SCRIPT: &str = r#"
(function () {
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var tip = document.getElementById('tip');
  Array.prototype.forEach.call(document.querySelectorAll('svg.chart title'), function (t) {
    var p = t.parentNode;
    if (p && p.tagName !== 'svg') { p.setAttribute('data-tip', t.textContent); p.removeChild(t); }
  });
  document.addEventListener('mouseover', function (e) {
    var el = e.target.closest && e.target.closest('[data-tip]');
    if (!el) { tip.hidden = true; return; }
    tip.textContent = el.getAttribute('data-tip');
    tip.hidden = false;
    tip.style.left = Math.max(4, Math.min(e.clientX + 14, window.innerWidth - tip.offsetWidth - 8)) + 'px';
    tip.style.top = Math.max(4, Math.min(e.clientY + 14, window.innerHeight - tip.offsetHeight - 8)) + 'px';
  });

  var board = document.getElementById('board'), body = board.tBodies[0];
  var rows = function () { return Array.prototype.slice.call(body.rows); };
  var sorted = { col: 0, dir: 1 };
  function value(row, col, num) {
    var c = row.cells[col], v = c.getAttribute('data-v');
    if (num) { return v === null || v === '' ? NaN : parseFloat(v); }
    return (v === null ? c.textContent : v).toLowerCase();
  }
  function sortBy(th) {
    var col = th.cellIndex, num = th.hasAttribute('data-num');
    var dir = sorted.col === col ? -sorted.dir : (th.hasAttribute('data-asc') ? 1 : -1);
    sorted = { col: col, dir: dir };
    var rs = rows();
    rs.sort(function (a, b) {
      var x = value(a, col, num), y = value(b, col, num);
      if (num) {
        if (isNaN(x) || isNaN(y)) { return isNaN(x) - isNaN(y); }
        return dir * (x - y) || value(a, 0, true) - value(b, 0, true);
      }
      return dir * (x < y ? -1 : x > y ? 1 : 0);
    });
    rs.forEach(function (r) { body.appendChild(r); });
    Array.prototype.forEach.call(board.tHead.rows[0].cells, function (h) { h.removeAttribute('aria-sort'); });
    th.setAttribute('aria-sort', dir > 0 ? 'ascending' : 'descending');
  }
  Array.prototype.forEach.call(board.tHead.rows[0].cells, function (th) {
    th.addEventListener('click', function () { sortBy(th); });
  });
  board.tHead.rows[0].cells[0].setAttribute('aria-sort', 'ascending');

  var filter = document.getElementById('filter'), shown = document.getElementById('shown');
  filter.addEventListener('input', function () {
    var q = filter.value.trim().toLowerCase(), n = 0;
    rows().forEach(function (r) {
      var ok = !q || r.textContent.toLowerCase().indexOf(q) >= 0;
      r.hidden = !ok;
      if (ok) { n++; }
    });
    shown.textContent = n + ' of ' + body.rows.length + ' candidates';
  });

  var NS = 'http://www.w3.org/2000/svg';
  function el(name, attrs, text) {
    var e = document.createElementNS(NS, name);
    for (var k in attrs) { e.setAttribute(k, attrs[k]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }
  // A small chart of columns `cols` of a trial's epochs.
  function mini(trial, title, cols, names, scale) {
    var W = 440, H = 240, L = 56, R = 16, T = 34, B = 38, pw = W - L - R, ph = H - T - B;
    var series = cols.map(function (c) {
      return trial.e.filter(function (r) { return r[c] !== null; }).map(function (r) { return [r[0], r[c] * scale]; });
    });
    var xs = [], ys = [];
    series.forEach(function (s) { s.forEach(function (p) { xs.push(p[0]); ys.push(p[1]); }); });
    var svg = el('svg', { width: W, height: H, viewBox: '0 0 ' + W + ' ' + H, 'class': 'mini',
      'font-family': 'DejaVu Sans, Arial, sans-serif' });
    svg.appendChild(el('text', { x: L, y: 20, 'font-size': 14, 'font-weight': 'bold', fill: '#263238' }, title));
    if (!xs.length) {
      svg.appendChild(el('text', { x: W / 2, y: H / 2, 'font-size': 13, 'text-anchor': 'middle', fill: '#546e7a' }, 'no epochs recorded'));
      return svg;
    }
    var x0 = 0, x1 = Math.max.apply(null, xs), y0 = Math.min.apply(null, ys), y1 = Math.max.apply(null, ys);
    if (y1 - y0 < 1e-9) { y0 -= 0.5; y1 += 0.5; }
    var pad = 0.05 * (y1 - y0); y0 -= pad; y1 += pad;
    var px = function (v) { return L + pw * (v - x0) / Math.max(x1 - x0, 1e-9); };
    var py = function (v) { return T + ph * (1 - (v - y0) / (y1 - y0)); };
    svg.appendChild(el('rect', { x: L, y: T, width: pw, height: ph, fill: 'none', stroke: '#90a4ae' }));
    for (var i = 0; i <= 4; i++) {
      var v = y0 + (y1 - y0) * i / 4;
      svg.appendChild(el('line', { x1: L, x2: L + pw, y1: py(v), y2: py(v), stroke: '#eceff1' }));
      svg.appendChild(el('text', { x: L - 6, y: py(v) + 4, 'font-size': 11, 'text-anchor': 'end', fill: '#455a64' }, v.toPrecision(3)));
    }
    var step = Math.max(1, Math.ceil(x1 / 8));
    for (var e = step; e <= x1; e += step) {
      svg.appendChild(el('text', { x: px(e), y: T + ph + 16, 'font-size': 11, 'text-anchor': 'middle', fill: '#455a64' }, String(e)));
    }
    svg.appendChild(el('text', { x: L + pw / 2, y: H - 6, 'font-size': 12, 'text-anchor': 'middle', fill: '#263238' }, 'epoch'));
    var colors = ['#1565c0', '#ef6c00'];
    series.forEach(function (s, k) {
      if (!s.length) { return; }
      svg.appendChild(el('polyline', { points: s.map(function (p) { return px(p[0]).toFixed(1) + ',' + py(p[1]).toFixed(1); }).join(' '),
        fill: 'none', stroke: colors[k], 'stroke-width': 2 }));
      s.forEach(function (p) {
        svg.appendChild(el('circle', { cx: px(p[0]), cy: py(p[1]), r: 3, fill: colors[k],
          'data-tip': names[k] + ', epoch ' + p[0] + ': ' + p[1].toPrecision(4) }));
      });
      svg.appendChild(el('line', { x1: L + pw - 120, x2: L + pw - 100, y1: T + 14 + 16 * k, y2: T + 14 + 16 * k, stroke: colors[k], 'stroke-width': 3 }));
      svg.appendChild(el('text', { x: L + pw - 95, y: T + 18 + 16 * k, 'font-size': 11.5, fill: '#263238' }, names[k]));
    });
    return svg;
  }

  var detail = document.getElementById('detail');
  function show(id) {
    var c = data.candidates[id];
    if (!c) { return; }
    detail.textContent = '';
    var h = document.createElement('h3');
    h.textContent = '#' + c.rank + ' ' + c.name;
    var info = document.createElement('p');
    info.className = 'muted';
    info.textContent = c.info;
    detail.appendChild(h);
    detail.appendChild(info);
    var minis = document.createElement('div');
    minis.className = 'minis';
    var t = c.best === null ? null : data.trials[String(c.best)];
    if (t) {
      var p = document.createElement('p');
      p.className = 'muted';
      p.textContent = 'Its best trial, ' + t.id + ' (' + t.phase + ', seed ' + t.seed + '):';
      detail.appendChild(p);
      minis.appendChild(mini(t, 'Loss', [1, 3], ['train', 'validation'], 1));
      minis.appendChild(mini(t, 'Accuracy (%)', [2, 4], ['train', 'validation'], 100));
    }
    detail.appendChild(minis);
    var fig = document.querySelector('main > figure[data-cand="' + id + '"]');
    if (fig) {
      detail.appendChild(fig.cloneNode(true));
    } else {
      var q = document.createElement('p');
      q.className = 'muted';
      q.textContent = 'No topology picture on this page: it draws the top ' + data.top_k +
        ' (optarch report --top-k N draws more).';
      detail.appendChild(q);
    }
    detail.hidden = false;
    rows().forEach(function (r) { r.classList.toggle('sel', r.getAttribute('data-cand') === id); });
  }
  document.addEventListener('click', function (e) {
    var t = e.target.closest && e.target.closest('[data-cand]');
    if (t && !t.closest('#detail')) { show(t.getAttribute('data-cand')); }
  });

  function selftest() {
    var bad = [], notes = [];
    var th = board.querySelector('th[data-key="score"]'), col = th.cellIndex;
    var numbers = function () {
      return rows().map(function (r) { return value(r, col, true); }).filter(function (v) { return !isNaN(v); });
    };
    th.click();
    var v = numbers();
    for (var i = 1; i < v.length; i++) { if (v[i] > v[i - 1]) { bad.push('val acc not descending after a click'); break; } }
    th.click();
    v = numbers();
    for (i = 1; i < v.length; i++) { if (v[i] < v[i - 1]) { bad.push('val acc not ascending after a second click'); break; } }
    if (isNaN(value(rows()[0], col, true)) && v.length) { bad.push('a row without a value sorted first'); }
    board.querySelector('th[data-key="rank"]').click();
    if (value(rows()[0], 0, true) !== 1) { bad.push('rank 1 not first again'); }
    notes.push('sorted ' + rows().length + ' rows');

    var name = rows()[0].cells[1].textContent;
    filter.value = name;
    filter.dispatchEvent(new Event('input'));
    var vis = rows().filter(function (r) { return !r.hidden; });
    if (!vis.length || vis.some(function (r) { return r.textContent.toLowerCase().indexOf(name.toLowerCase()) < 0; })) {
      bad.push('filter');
    }
    notes.push('filter kept ' + vis.length);
    filter.value = '';
    filter.dispatchEvent(new Event('input'));
    if (rows().some(function (r) { return r.hidden; })) { bad.push('an empty filter hides rows'); }

    var mark = document.querySelector('svg.chart circle[data-tip]');
    if (!mark) {
      bad.push('no chart mark has a tooltip');
    } else {
      var b = mark.getBoundingClientRect();
      mark.dispatchEvent(new MouseEvent('mouseover', { bubbles: true, clientX: b.left + 1, clientY: b.top + 1 }));
      if (tip.hidden || tip.textContent !== mark.getAttribute('data-tip')) { bad.push('hover shows no tooltip'); }
      notes.push('hover "' + tip.textContent.slice(0, 24) + '"');
    }

    rows()[0].click();
    if (detail.hidden || detail.textContent.indexOf(name) < 0) { bad.push('a click on rank 1 shows nothing'); }
    var minis = detail.querySelectorAll('svg.mini polyline').length;
    if (!minis) { bad.push('no curves in the details'); }
    notes.push('details with ' + minis + ' curves and ' + detail.querySelectorAll('img').length + ' picture');

    var width = document.documentElement.scrollWidth;
    if (width > window.innerWidth + 1) { bad.push('the page is ' + width + ' px wide in a ' + window.innerWidth + ' px window'); }
    var wrap = board.parentNode;
    if (window.innerWidth >= 1400 && wrap.scrollWidth > wrap.clientWidth + 1) {
      bad.push('the leaderboard needs ' + wrap.scrollWidth + ' px, has ' + wrap.clientWidth);
    }
    var out = document.getElementById('selftest');
    out.textContent = bad.length ? 'FAILED: ' + bad.join('; ') : 'ok: ' + notes.join(', ') + ', window ' + window.innerWidth + ' px';
  }
  if (location.hash === '#run-selftest') { selftest(); }
})();
"#;

/// The leaderboard as a table the page's script sorts (a click on a heading; numbers sort
/// from their `data-v`), filters and opens (a click on a row shows the candidate).
fn leaderboard_table(rep: &Report, s: &mut String) {
    let rungs = rep.schedule.rungs.len();
    let _ = writeln!(
        s,
        "<div class=tools><input id=filter type=search placeholder=\"filter: name, origin, parameter…\" \
         aria-label=\"filter the leaderboard\"><span id=shown class=muted>{} candidates</span>\
         <span class=muted>click a heading to sort, a row for the candidate's curves and topology</span></div>",
        rep.leaderboard.len()
    );
    // (heading, sort key, first click sorts ascending)
    let heads = [
        ("rank", "rank", true),
        ("name", "name", true),
        ("origin", "origin", true),
        ("params", "params", true),
        ("parameters", "parameters", true),
        ("highest rung", "rung", false),
        ("val acc", "score", false),
        ("final val acc", "final", false),
        ("contraction", "contraction", true),
        ("asymptotic", "asymptotic", true),
        ("div/oom/fail", "faults", false),
        ("epochs", "epochs", false),
    ];
    // A long leaderboard scrolls in its own box, its headings in view.
    let tall = if rep.leaderboard.len() > 30 {
        " tall"
    } else {
        ""
    };
    let _ = write!(s, "<div class=\"scroll{tall}\"><table id=board><thead><tr>");
    for (i, (h, k, asc)) in heads.iter().enumerate() {
        let num = !matches!(i, 1..=3);
        let _ = write!(
            s,
            "<th data-key={k}{}{}>{h}</th>",
            if num { " data-num" } else { "" },
            if *asc { " data-asc" } else { "" }
        );
    }
    s.push_str("</tr></thead><tbody>\n");
    for r in &rep.leaderboard {
        let _ = writeln!(
            s,
            "<tr data-cand={}{}><td class=num data-v={}>{}</td><td class=wrap>{}</td><td class=wrap>{}</td>\
             <td class=wrap>{}</td><td class=num data-v=\"{}\">{}</td>\
             <td data-v=\"{}\">{}</td><td class=num data-v=\"{}\">{}</td>\
             <td class=\"num wrap\" data-v=\"{}\">{}</td><td class=num data-v=\"{}\">{}</td>\
             <td class=num data-v=\"{}\">{}</td><td class=num data-v={}>{}/{}/{}</td>\
             <td class=num data-v={}>{}</td></tr>",
            r.candidate.0,
            if r.rank == 1 { " class=top" } else { "" },
            r.rank,
            r.rank,
            esc(&r.name),
            esc(&r.origin),
            esc(&r.params_text()),
            key(r.parameters.map(|p| p as f64)),
            count(r.parameters),
            key(r.highest_rung.map(|h| h as f64)),
            rung_text(r, rungs),
            key(r.score),
            pct(r.score),
            key(r.final_val.as_ref().map(|f| f.mean)),
            esc(&final_text(r)),
            key(r.contraction),
            rate(r.contraction),
            key(r.asymptotic),
            rate(r.asymptotic),
            r.diverged + r.oom + r.failed,
            r.diverged,
            r.oom,
            r.failed,
            r.epochs,
            r.epochs
        );
    }
    s.push_str("</tbody></table></div>\n<div id=detail hidden></div>\n");
}

/// The unit in which to show `seconds` of a search: (name, seconds per unit).
fn time_unit(seconds: f64) -> (&'static str, f64) {
    if seconds > 7200.0 {
        ("hours", 3600.0)
    } else if seconds > 120.0 {
        ("minutes", 60.0)
    } else {
        ("seconds", 1.0)
    }
}

/// Each finished trial's best validation accuracy and the best so far, against the epochs the
/// phase had trained (`time`: against the time since the search was created), for the search
/// and the random baseline.
fn history_chart(l: &Loaded, time: bool) -> String {
    let phases = [
        (Phase::Search, PALETTE[0], Shape::Circle, "search"),
        (
            Phase::Baseline,
            "#78909c",
            Shape::Diamond,
            "random baseline",
        ),
    ];
    let histories: Vec<_> = phases.iter().map(|p| explore::history(l, p.0)).collect();
    let latest = histories
        .iter()
        .flatten()
        .map(|p| p.seconds)
        .fold(0.0, f64::max);
    let (unit, div) = time_unit(latest);
    let x_label = if time {
        format!("{unit} since the search was created")
    } else {
        "epochs trained by the phase".to_string()
    };
    let mut c = Chart::new(
        if time {
            "Optimization history against time"
        } else {
            "Optimization history against epochs"
        },
        "a point per finished trial (its best validation accuracy, where it last finished); line: the phase's best so far",
        &x_label,
        "validation accuracy (%)",
    );
    c.x_from_zero = true;
    for ((phase, color, shape, name), points) in phases.iter().zip(&histories) {
        if points.is_empty() {
            continue;
        }
        let x = |p: &explore::HistoryPoint| if time { p.seconds / div } else { p.epochs };
        let mut step: Vec<(f64, f64)> = Vec::new();
        for p in points {
            if let Some(b) = p.best {
                if let Some(&(_, prev)) = step.last() {
                    step.push((x(p), prev));
                }
                step.push((x(p), 100.0 * b));
            }
        }
        c.lines.push(Line {
            color: color.to_string(),
            points: step,
            width: 2.0,
            opacity: 0.9,
            dashed: false,
            title: format!("best so far ({name})"),
        });
        let marks = points
            .iter()
            .filter_map(|p| {
                let score = p.score?;
                Some(Mark {
                    x: x(p),
                    y: 100.0 * score,
                    err: None,
                    label: None,
                    title: format!(
                        "trial {} · {}: {:.2} % ({} {:.0} s after the start, {} epochs)",
                        p.trial,
                        l.candidate_name(p.candidate),
                        100.0 * score,
                        phase.as_str(),
                        p.seconds,
                        p.epochs
                    ),
                })
            })
            .collect();
        c.scatter(name, color, *shape, marks);
    }
    chart::draw(&c)
}

/// First-rung validation accuracy against a cost, the Pareto front (no candidate both cheaper
/// and more accurate) marked and labelled.
fn pareto_chart(
    rep: &Report,
    first: &BTreeMap<CandidateId, f64>,
    title: &str,
    x_label: &str,
    x_of: impl Fn(&Row) -> Option<f64>,
) -> String {
    let e0 = rep.schedule.rungs.first().copied().unwrap_or(0);
    let mut c = Chart::new(
        title,
        &format!("validation accuracy after {e0} epochs (rung 1, every candidate at the same budget); diamonds and line: the Pareto front"),
        x_label,
        "validation accuracy (%)",
    );
    let rows: Vec<(&Row, f64, f64)> = rep
        .leaderboard
        .iter()
        .filter_map(|r| Some((r, x_of(r)?, *first.get(&r.candidate)?)))
        .collect();
    let pts: Vec<(f64, f64)> = rows.iter().map(|(_, x, y)| (*x, *y)).collect();
    let front = explore::pareto_front(&pts);
    let mark = |(r, x, y): &(&Row, f64, f64), label: bool| Mark {
        x: *x,
        y: 100.0 * y,
        err: None,
        label: label.then(|| r.name.clone()),
        title: format!(
            "#{} {}: {:.2} % at {} {}",
            r.rank,
            r.name,
            100.0 * y,
            chart::compact(*x),
            x_label
        ),
    };
    let others: Vec<Mark> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| !front.contains(i))
        .map(|(_, r)| mark(r, false))
        .collect();
    let on_front: Vec<Mark> = front.iter().map(|&i| mark(&rows[i], true)).collect();
    let mut step: Vec<(f64, f64)> = Vec::new();
    for &i in &front {
        let (x, y) = (rows[i].1, 100.0 * rows[i].2);
        if let Some(&(_, prev)) = step.last() {
            step.push((x, prev));
        }
        step.push((x, y));
    }
    c.lines.push(Line {
        color: PALETTE[1].to_string(),
        points: step,
        width: 1.5,
        opacity: 0.8,
        dashed: true,
        title: "Pareto front".into(),
    });
    // The front's labels first: they get the free places.
    c.scatter("on the Pareto front", PALETTE[1], Shape::Diamond, on_front);
    c.scatter("dominated", PALETTE[0], Shape::Circle, others);
    let xs: Vec<f64> = pts.iter().map(|p| p.0).filter(|x| *x > 0.0).collect();
    let (lo, hi) = xs
        .iter()
        .fold((f64::INFINITY, 0.0f64), |(a, b), x| (a.min(*x), b.max(*x)));
    c.x_log = lo > 0.0 && hi / lo > 8.0;
    chart::draw(&c)
}

/// Each axis' η² as a bar, most important first.
fn importance_table(p: &Parallel, s: &mut String) {
    let mut axes: Vec<_> = p.axes.iter().collect();
    axes.sort_by(|a, b| {
        b.importance
            .unwrap_or(-1.0)
            .total_cmp(&a.importance.unwrap_or(-1.0))
    });
    s.push_str(
        "<table class=importance><thead><tr><th>parameter</th><th>η²: share of the first-rung \
         accuracy's variance it explains alone</th><th>candidates</th></tr></thead><tbody>\n",
    );
    for a in axes {
        let cell = match a.importance {
            Some(v) => format!(
                "<span class=bar style=\"width:{:.0}px\"></span>{v:.2}",
                (240.0 * v).max(1.0)
            ),
            None => "– (fewer than 3 candidates, or no variance)".into(),
        };
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{cell}</td><td class=num>{}</td></tr>",
            esc(&a.name),
            a.n
        );
    }
    s.push_str("</tbody></table>\n");
}

/// `v` rounded to 4 decimals for the page's data (`None` for what is not finite).
fn r4(v: f64) -> Option<f64> {
    v.is_finite().then(|| (v * 1e4).round() / 1e4)
}

/// What the page's script needs to show a candidate: its summary and its best trial's
/// epochs (`[epoch, train loss, train acc, val loss, val acc]`), as JSON safe inside a
/// `<script>` element.
fn page_data(l: &Loaded, rep: &Report, top_k: usize) -> String {
    let mut cands = serde_json::Map::new();
    let mut trials = serde_json::Map::new();
    let rungs = rep.schedule.rungs.len();
    for r in &rep.leaderboard {
        let info = format!(
            "{} · {} · {} parameters · rung {} · val {} · final {} · {} trials, {} epochs",
            r.origin,
            if r.params.is_empty() {
                "no parameters".to_string()
            } else {
                r.params_text()
            },
            count(r.parameters),
            rung_text(r, rungs),
            pct(r.score),
            final_text(r),
            r.trials,
            r.epochs
        );
        cands.insert(
            r.candidate.0.to_string(),
            serde_json::json!({"rank": r.rank, "name": r.name, "info": info, "best": r.best_trial.map(|t| t.0)}),
        );
        if let Some(t) = r.best_trial {
            trials.insert(t.0.to_string(), trial_data(l, t));
        }
    }
    let data = serde_json::json!({"top_k": top_k, "candidates": cands, "trials": trials});
    data.to_string().replace("</", "<\\/")
}

fn trial_data(l: &Loaded, id: TrialId) -> serde_json::Value {
    let t = l.trials.iter().find(|t| t.id == id);
    let rows: Vec<serde_json::Value> = l
        .epochs
        .get(&id)
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|e| {
            serde_json::json!([
                e.epoch + 1,
                r4(e.train_loss),
                r4(e.train_acc),
                e.val_loss.and_then(r4),
                e.val_acc.and_then(r4)
            ])
        })
        .collect();
    serde_json::json!({
        "id": id.0,
        "phase": t.map(|t| t.phase.as_str()),
        "seed": t.map(|t| t.seed),
        "e": rows
    })
}

fn correlation_table(rep: &Report, s: &mut String) {
    s.push_str(
        "<table><tr><th>rate</th><th>accuracy</th><th>n</th><th>Kendall τ-b</th>\
         <th>p (τ)</th><th>Spearman ρ</th><th>p (ρ)</th><th>reading</th></tr>\n",
    );
    for c in &rep.correlations {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td>{}</td><td class=num>{}</td><td class=num>{}</td>\
             <td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td>{}</td></tr>",
            esc(&c.rate),
            esc(&c.accuracy),
            c.n,
            f3(c.kendall_tau),
            p3(c.p_value),
            f3(c.spearman_rho),
            p3(c.spearman_p_value),
            esc(&verdict(c))
        );
    }
    s.push_str("</table>\n");
}

fn rung_table(rep: &Report, s: &mut String) {
    s.push_str(
        "<table><tr><th>rung</th><th>epochs</th><th>share of a full run</th>\
         <th>trials scored</th><th>promoted</th><th>best</th><th>median</th>\
         <th>Kendall τ with the next rung (n)</th>\
         <th>Kendall τ with the finals' ranking (n)</th></tr>\n",
    );
    for r in &rep.rungs {
        let _ = writeln!(
            s,
            "<tr><td class=num>{}</td><td class=num>{}</td><td class=num>{:.0} %</td>\
             <td class=num>{}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{}</td>\
             <td class=num>{} ({})</td><td class=num>{} ({})</td></tr>",
            r.rung + 1,
            r.epochs,
            100.0 * r.share,
            r.reached,
            or_dash(r.promoted),
            pct(r.best),
            pct(r.median),
            f3(r.tau_next),
            r.n_next,
            f3(r.tau_final),
            r.n_final
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
        "<nav class=muted><a href=\"#estimate\">test estimate</a> · <a href=\"#baseline\">baseline</a> · \
         <a href=\"#leaderboard\">leaderboard</a> · <a href=\"#history\">history</a> · \
         <a href=\"#hypothesis\">rate against accuracy</a> · <a href=\"#parameters\">parameters</a> · \
         <a href=\"#size\">size</a> · <a href=\"#curves\">learning curves</a> · \
         <a href=\"#timeline\">timeline</a> · <a href=\"#rungs\">rungs</a> · \
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

    s.push_str(
        "<h2 id=history>Optimization history</h2>\n<p class=muted>How the search found its \
         best, against the epochs it spent and against time, beside the random baseline: a \
         search worth its machinery climbs faster at the same budget.</p>\n",
    );
    s.push_str(&history_chart(l, false));
    s.push_str(&history_chart(l, true));

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

    let par = explore::parallel(l, rep);
    s.push_str(
        "<h2 id=parameters>Parameters</h2>\n<p class=muted>Every candidate scored at the first \
         rung as a line through its family, its parameter values, its rate and size, and its \
         accuracy (hover a line for its name, click it for its details). Under each axis' name, \
         and in the table, η² (the correlation ratio): the share of the accuracy's variance \
         between the groups of that axis alone (its values, or five bins of equal size). It \
         reads one parameter at a time, not their interactions, and with few candidates it is \
         noisy.</p>\n",
    );
    s.push_str(&views::parallel(&par));
    importance_table(&par, &mut s);

    s.push_str(
        "<h2 id=size>Accuracy against size</h2>\n<p class=muted>The Pareto front: the \
         candidates no other beats on both accuracy and size at the same budget.</p>\n",
    );
    s.push_str(&pareto_chart(
        rep,
        &first,
        "Accuracy against parameters",
        "parameters",
        |r| r.parameters.map(|p| p as f64),
    ));
    s.push_str(&pareto_chart(
        rep,
        &first,
        "Accuracy against multiply-adds",
        "multiply-adds per image",
        |r| r.multiply_adds.map(|p| p as f64),
    ));

    s.push_str("<h2 id=curves>Learning curves</h2>\n");
    s.push_str(&search_curves(l, rep));
    s.push_str(&final_curves(l, rep));

    s.push_str(
        "<h2 id=timeline>Timeline</h2>\n<p class=muted>When each trial ran, in as many rows as \
         trials ran at once (hover a bar for the trial, click it for the candidate).</p>\n",
    );
    let names = |c: CandidateId| l.candidate_name(c);
    s.push_str(&views::timeline(&explore::timeline(l), &names));

    s.push_str(
        "<h2 id=rungs>ASHA rungs</h2>\n<p class=muted>A trial is scored at a rung when it has trained \
         that rung's epochs; the best fraction of each rung is promoted to the next. Kendall's \
         τ between consecutive rungs shows how well short runs rank candidates, and τ with the \
         finals' ranking (mean final validation accuracy, over the candidates with both) how \
         well a rung, at its share of a full run's epochs, predicts the full-budget order.</p>\n",
    );
    rung_table(rep, &mut s);

    let _ = writeln!(s, "<h2 id=topologies>Topologies of the top {k}</h2>");
    for p in pictures {
        match &p.svg {
            Some(svg) => {
                let _ = writeln!(
                    s,
                    "<figure data-cand={}><img alt=\"topology of {}\" src=\"data:image/svg+xml;base64,{}\">\
                     <figcaption>#{} {}: {}</figcaption></figure>",
                    p.candidate.0,
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
         <div id=selftest></div><div id=tip hidden></div>\n\
         <script type=\"application/json\" id=\"report-data\">{}</script>\n\
         <script>{CHECK_SCRIPT}</script>\n<script>{INTERACT_SCRIPT}</script>\n</main></body></html>\n",
        page_data(l, rep, pictures.len())
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
