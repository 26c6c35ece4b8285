//! SVG drawings of the exploring views ([`super::explore`]): parallel coordinates and the
//! trials' timeline. The look follows [`super::chart`]; every mark carries a `<title>` (the
//! page turns titles into instant tooltips) and candidates carry `data-cand` (a click shows
//! their details).

use super::chart::{esc, Axis, INK, PALETTE};
use super::explore::{AxisKind, Bar, Parallel};
use crate::search::store::{Phase, TrialStatus};
use std::fmt::Write;

const W: f64 = 1080.0;
const SOFT: &str = "#546e7a";
const FRAME: &str = "#90a4ae";
const LABEL_CHARS: usize = 16;

/// A colour on a blue–green–yellow ramp for `t` in 0..=1 (viridis' ends and middle).
pub(crate) fn ramp(t: f64) -> String {
    const STOPS: [(f64, f64, f64); 3] = [
        (68.0, 1.0, 84.0),
        (33.0, 145.0, 140.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (a, b, u) = if t < 0.5 {
        (STOPS[0], STOPS[1], t * 2.0)
    } else {
        (STOPS[1], STOPS[2], t * 2.0 - 1.0)
    };
    let mix = |x: f64, y: f64| (x + (y - x) * u).round() as u8;
    format!(
        "#{:02x}{:02x}{:02x}",
        mix(a.0, b.0),
        mix(a.1, b.1),
        mix(a.2, b.2)
    )
}

fn cut(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        s.chars().take(n - 1).chain(['…']).collect()
    } else {
        s.to_string()
    }
}

fn header(s: &mut String, h: f64, class: &str, title: &str, subtitle: &str) {
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="chart {class}" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="DejaVu Sans, Arial, sans-serif" role="img" aria-label="{}">
<rect width="100%" height="100%" fill="white"/>
<text x="20" y="28" font-size="17" font-weight="bold" fill="{INK}">{}</text>
<text x="20" y="48" font-size="12.5" fill="{SOFT}">{}</text>
"##,
        esc(title),
        esc(title),
        esc(subtitle)
    );
}

/// Parallel coordinates: one vertical axis per parameter and the first-rung score last, one
/// line per candidate coloured by that score (the best drawn last, on top).
pub(crate) fn parallel(p: &Parallel) -> String {
    const TOP: f64 = 92.0;
    const PH: f64 = 300.0;
    const MISSING: f64 = TOP + PH + 22.0;
    let h = TOP + PH + 64.0;
    let mut s = String::new();
    header(
        &mut s,
        h,
        "parallel",
        "Parallel coordinates",
        &format!(
            "one line per candidate scored at the first rung ({} epochs), coloured by that validation accuracy; \"–\": no such parameter",
            p.epochs
        ),
    );
    if p.candidates.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="15" text-anchor="middle" fill="{SOFT}">no candidate scored yet</text></svg>"##,
            W / 2.0,
            TOP + PH / 2.0
        );
        return s;
    }
    let n_axes = p.axes.len() + 1;
    // Room on the left for the first axis' labels (names of up to 16 characters).
    let (x0, x1) = (120.0, W - 60.0);
    let ax_x = |i: usize| {
        if n_axes == 1 {
            (x0 + x1) / 2.0
        } else {
            x0 + (x1 - x0) * i as f64 / (n_axes - 1) as f64
        }
    };
    // Each axis maps its values to 0..1 (0 at the bottom).
    struct Scale {
        axis: Option<Axis>,
        categories: usize,
    }
    let scales: Vec<Scale> = p
        .axes
        .iter()
        .map(|a| match &a.kind {
            AxisKind::Category(names) => Scale {
                axis: None,
                categories: names.len(),
            },
            AxisKind::Number { log } => {
                let v: Vec<f64> = a.values.iter().flatten().copied().collect();
                let (lo, hi) = v
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
                        (l.min(*x), h.max(*x))
                    });
                Scale {
                    axis: Some(if *log {
                        Axis::log(lo, hi)
                    } else {
                        Axis::linear(lo, hi, 4.0)
                    }),
                    categories: 0,
                }
            }
        })
        .collect();
    let (slo, shi) = p
        .score
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| {
            (l.min(*x), h.max(*x))
        });
    let score_axis = Axis::linear(100.0 * slo, 100.0 * shi, 5.0);
    let frac = |sc: &Scale, v: f64| match &sc.axis {
        Some(a) => a.frac(v),
        None if sc.categories <= 1 => 0.5,
        None => v / (sc.categories - 1) as f64,
    };
    let y_of = |f: f64| TOP + PH * (1.0 - f);

    // The lines, worst first so the best end on top.
    for (k, (cand, rank, name)) in p.candidates.iter().enumerate().rev() {
        let score = p.score[k];
        let mut pts = Vec::with_capacity(n_axes);
        for (i, (a, sc)) in p.axes.iter().zip(&scales).enumerate() {
            let y = a.values[k].map_or(MISSING, |v| y_of(frac(sc, v)));
            pts.push(format!("{:.1},{y:.1}", ax_x(i)));
        }
        pts.push(format!(
            "{:.1},{:.1}",
            ax_x(n_axes - 1),
            y_of(score_axis.frac(100.0 * score))
        ));
        let t = if shi > slo {
            (score - slo) / (shi - slo)
        } else {
            1.0
        };
        let top = k < 5;
        let _ = writeln!(
            s,
            r##"<polyline data-cand="{}" points="{}" fill="none" stroke="{}" stroke-width="{}" stroke-opacity="{}"><title>#{rank} {}: {:.2} % after {} epochs</title></polyline>"##,
            cand.0,
            pts.join(" "),
            ramp(t),
            if top { 2.4 } else { 1.2 },
            if top { 0.95 } else { 0.55 },
            esc(name),
            100.0 * score,
            p.epochs
        );
    }

    // The axes on top of the lines.
    let tick = |s: &mut String, x: f64, y: f64, label: &str| {
        let _ = writeln!(
            s,
            r##"<line x1="{:.1}" y1="{y:.1}" x2="{x:.1}" y2="{y:.1}" stroke="{FRAME}"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="#455a64" stroke="white" stroke-width="3" paint-order="stroke">{}</text>"##,
            x - 4.0,
            x - 6.0,
            y + 4.0,
            esc(label)
        );
    };
    let axis_line = |s: &mut String, i: usize, name: &str, importance: Option<f64>| {
        let x = ax_x(i);
        let imp = importance.map(|v| format!("η² {v:.2}")).unwrap_or_default();
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="{INK}" stroke-width="1.2"/><text x="{x:.1}" y="{:.1}" font-size="12.5" font-weight="bold" text-anchor="middle" fill="{INK}">{}<title>{}</title></text><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{SOFT}">{imp}</text><text x="{x:.1}" y="{:.1}" font-size="11" text-anchor="middle" fill="{SOFT}">–</text>"##,
            TOP + PH,
            TOP - 24.0,
            esc(&cut(name, LABEL_CHARS)),
            esc(name),
            TOP - 10.0,
            MISSING + 4.0
        );
    };
    for (i, (a, sc)) in p.axes.iter().zip(&scales).enumerate() {
        axis_line(&mut s, i, &a.name, a.importance);
        let x = ax_x(i);
        match (&a.kind, &sc.axis) {
            (AxisKind::Category(names), _) => {
                for (j, n) in names.iter().enumerate() {
                    tick(&mut s, x, y_of(frac(sc, j as f64)), &cut(n, LABEL_CHARS));
                }
            }
            (_, Some(ax)) => {
                for t in ax.thinned(8) {
                    tick(&mut s, x, y_of(ax.frac(t)), &ax.label(t));
                }
            }
            _ => {}
        }
    }
    axis_line(&mut s, n_axes - 1, "val. acc. (%)", None);
    for t in score_axis.thinned(8) {
        tick(
            &mut s,
            ax_x(n_axes - 1),
            y_of(score_axis.frac(t)),
            &score_axis.label(t),
        );
    }
    s.push_str("</svg>\n");
    s
}

fn phase_color(p: Phase) -> &'static str {
    match p {
        Phase::Search => PALETTE[0],
        Phase::Baseline => "#90a4ae",
        Phase::Final => PALETTE[1],
    }
}

/// The trials against time, one row per lane (the workers busy at once); colour = phase,
/// red outline = a fault.
pub(crate) fn timeline(
    bars: &[Bar],
    names: &dyn Fn(crate::search::ids::CandidateId) -> String,
) -> String {
    const TOP: f64 = 74.0;
    const LEFT: f64 = 80.0;
    let lanes = bars.iter().map(|b| b.lane + 1).max().unwrap_or(0);
    let lane_h = if lanes > 24 { 8.0 } else { 18.0 };
    let ph = (lanes.max(1) as f64 * lane_h).max(40.0);
    let h = TOP + ph + 70.0;
    let mut s = String::new();
    header(
        &mut s,
        h,
        "timeline",
        "Timeline of trials",
        "one row per worker busy at the same time; colour = phase; red outline = ended in a fault; a trial spans its first start to its last finish",
    );
    let end = bars.iter().map(|b| b.end).fold(0.0, f64::max);
    let (unit, div) = if end > 7200.0 {
        ("hours", 3600.0)
    } else if end > 120.0 {
        ("minutes", 60.0)
    } else {
        ("seconds", 1.0)
    };
    let ax = Axis::linear(0.0, (end / div).max(1e-9), 8.0);
    let pw = W - LEFT - 40.0;
    let px = |v: f64| LEFT + pw * ax.frac(v / div);
    for t in ax.thinned(12) {
        let x = LEFT + pw * ax.frac(t);
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#eceff1"/><text x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#455a64">{}</text>"##,
            TOP + ph,
            TOP + ph + 18.0,
            ax.label(t)
        );
    }
    for lane in 0..lanes {
        if lanes <= 24 {
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end" fill="{SOFT}">worker {}</text>"##,
                LEFT - 8.0,
                TOP + lane_h * (lane as f64 + 0.5) + 4.0,
                lane + 1
            );
        }
    }
    for b in bars {
        let (xa, xb) = (px(b.start), px(b.end));
        let fault = b.status.is_final();
        let _ = writeln!(
            s,
            r##"<rect data-cand="{}" x="{xa:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.85"{}><title>trial {} · {} · {} · {} · {:.0}–{:.0} s{}</title></rect>"##,
            b.candidate.0,
            TOP + lane_h * b.lane as f64 + 1.0,
            (xb - xa).max(1.5),
            lane_h - 2.0,
            phase_color(b.phase),
            if fault {
                r##" stroke="#c62828" stroke-width="1.5""##
            } else {
                ""
            },
            b.trial,
            esc(&names(b.candidate)),
            b.phase.as_str(),
            if b.status == TrialStatus::Running {
                "running"
            } else {
                b.status.as_str()
            },
            b.start,
            b.end,
            if b.place.is_empty() {
                String::new()
            } else {
                format!(" · {}", esc(&b.place))
            }
        );
    }
    if bars.is_empty() {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="15" text-anchor="middle" fill="{SOFT}">no trial started yet</text>"##,
            W / 2.0,
            TOP + ph / 2.0
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="{FRAME}"/><text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle" fill="{INK}">{unit} since the search was created</text>"##,
        LEFT + pw / 2.0,
        h - 20.0
    );
    // The legend, below the axis title's right.
    let mut lx = W - 320.0;
    for p in [Phase::Search, Phase::Baseline, Phase::Final] {
        let _ = writeln!(
            s,
            r##"<rect x="{lx:.1}" y="{:.1}" width="14" height="10" fill="{}"/><text x="{:.1}" y="{:.1}" font-size="12" fill="{INK}">{}</text>"##,
            h - 30.0,
            phase_color(p),
            lx + 18.0,
            h - 21.0,
            p.as_str()
        );
        lx += 90.0;
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ramp_runs_from_purple_to_yellow() {
        assert_eq!(ramp(0.0), "#440154");
        assert_eq!(ramp(1.0), "#fde725");
        assert_eq!(ramp(0.5), "#21918c");
        assert_eq!(ramp(f64::NAN), "#440154");
    }
}
