//! Hand-written SVG charts for the HTML report: line charts (learning curves) and scatter
//! plots with labelled points and error bars. Linear axes with "nice" ticks (1, 2, 2.5, 5 ×
//! 10ⁿ), or a logarithmic x axis; the look (fonts, colours, legend on the right) follows
//! `optarch_core::render::chart`.

use std::fmt::Write;

pub(crate) use optarch_core::render::{INK, PALETTE};

const W: f64 = 860.0;
const H: f64 = 480.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 220.0;
const TOP: f64 = 64.0;
const BOTTOM: f64 = 56.0;
const SOFT: &str = "#546e7a";
const GRID: &str = "#eceff1";
const FRAME: &str = "#90a4ae";
/// The longest point label drawn (longer names are cut, the tooltip has them whole).
const LABEL_CHARS: usize = 22;

/// Escapes text for XML character data and attribute values (the pictures' own escaping).
pub(crate) use optarch_core::render::xml_escape as esc;

/// A polyline.
pub(crate) struct Line {
    pub color: String,
    pub points: Vec<(f64, f64)>,
    pub width: f64,
    pub opacity: f64,
    pub dashed: bool,
    /// Tooltip.
    pub title: String,
}

/// Marker shapes.
#[derive(Clone, Copy)]
pub(crate) enum Shape {
    Circle,
    Diamond,
}

/// A scatter point.
pub(crate) struct Mark {
    pub x: f64,
    pub y: f64,
    /// Half-height of a vertical error bar.
    pub err: Option<f64>,
    /// Drawn beside the point.
    pub label: Option<String>,
    /// Tooltip.
    pub title: String,
}

/// Points of one colour and shape.
pub(crate) struct Scatter {
    pub color: String,
    pub shape: Shape,
    pub marks: Vec<Mark>,
}

/// A legend entry.
pub(crate) enum Key {
    Line(String, String),
    Marker(String, String, Shape),
}

/// A chart: lines and scatters on shared axes.
pub(crate) struct Chart {
    pub title: String,
    pub subtitle: String,
    pub x_label: String,
    pub y_label: String,
    pub x_log: bool,
    /// Start a linear x axis at 0 (epochs).
    pub x_from_zero: bool,
    pub lines: Vec<Line>,
    pub scatters: Vec<Scatter>,
    /// Dashed vertical markers with a label at the top.
    pub vlines: Vec<(f64, String)>,
    pub legend: Vec<Key>,
}

impl Chart {
    /// Adds points of one colour and shape, with their legend entry.
    pub(super) fn scatter(&mut self, label: &str, color: &str, shape: Shape, marks: Vec<Mark>) {
        self.legend
            .push(Key::Marker(label.into(), color.into(), shape));
        self.scatters.push(Scatter {
            color: color.into(),
            shape,
            marks,
        });
    }

    pub(super) fn new(title: &str, subtitle: &str, x_label: &str, y_label: &str) -> Chart {
        Chart {
            title: title.into(),
            subtitle: subtitle.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            x_log: false,
            x_from_zero: false,
            lines: Vec::new(),
            scatters: Vec::new(),
            vlines: Vec::new(),
            legend: Vec::new(),
        }
    }
}

/// An axis: the data range mapped onto pixels, and its ticks.
pub(super) struct Axis {
    lo: f64,
    hi: f64,
    log: bool,
    ticks: Vec<f64>,
    decimals: usize,
    /// Decimals of the compact labels (`68.02k`): the fewest that tell every tick apart.
    compact_decimals: usize,
}

impl Axis {
    /// A linear axis spanning `lo..hi` with about `target` ticks at round values.
    pub(super) fn linear(lo: f64, hi: f64, target: f64) -> Axis {
        let (mut lo, mut hi) = if lo.is_finite() && hi.is_finite() {
            (lo, hi)
        } else {
            (0.0, 1.0)
        };
        if hi - lo <= f64::EPSILON * lo.abs().max(1.0) {
            let d = if lo == 0.0 { 1.0 } else { lo.abs() * 0.05 };
            lo -= d;
            hi += d;
        }
        let raw = (hi - lo) / target;
        let mag = 10f64.powf(raw.log10().floor());
        let f = raw / mag;
        let step = mag
            * if f <= 1.0 {
                1.0
            } else if f <= 2.0 {
                2.0
            } else if f <= 2.5 {
                2.5
            } else if f <= 5.0 {
                5.0
            } else {
                10.0
            };
        let first = (lo / step).floor();
        let last = (hi / step).ceil();
        let ticks: Vec<f64> = (0..=((last - first) as i64).max(1))
            .map(|i| (first + i as f64) * step)
            .collect();
        let power = step.log10().floor();
        let mut decimals = (-power).max(0.0) as usize;
        // 2.5, 0.25, ...: one decimal more (25 and 250 need none).
        if power <= 0.0 && ((step / 10f64.powf(power)) - 2.5).abs() < 1e-9 {
            decimals += 1;
        }
        Axis {
            lo: first * step,
            hi: ticks.last().copied().unwrap_or(last * step),
            log: false,
            ticks,
            decimals,
            compact_decimals: 1,
        }
        .with_distinct_labels()
    }

    /// Chooses the compact labels' decimals so that no two ticks read the same (`68k 68k
    /// 68.1k` becomes `68k 68.02k 68.04k`).
    fn with_distinct_labels(mut self) -> Axis {
        for d in 1..=6 {
            self.compact_decimals = d;
            let labels: Vec<String> = self.ticks.iter().map(|t| self.label(*t)).collect();
            if labels.windows(2).all(|w| w[0] != w[1]) {
                break;
            }
        }
        self
    }

    /// A logarithmic axis over positive `lo..hi`: a tick at every decade, and at 2 and 5 × 10ⁿ
    /// when the axis spans at most four decades; an axis within one decade gets 1–9 × 10ⁿ, or
    /// round linear ticks when even those miss it.
    pub(super) fn log(lo: f64, hi: f64) -> Axis {
        let (lo, hi) = if lo > 0.0 && hi >= lo && hi.is_finite() {
            (lo, hi)
        } else {
            (1.0, 10.0)
        };
        let (d0, d1) = (
            lo.log10().floor(),
            hi.log10().ceil().max(lo.log10().floor() + 1.0),
        );
        let within = |mults: &[f64]| {
            let mut ticks = Vec::new();
            for d in d0 as i64..=d1 as i64 {
                for m in mults {
                    let v = m * 10f64.powi(d as i32);
                    if v >= lo / 1.0001 && v <= hi * 1.0001 {
                        ticks.push(v);
                    }
                }
            }
            ticks
        };
        let mut ticks = if d1 - d0 > 4.0 {
            within(&[1.0])
        } else {
            within(&[1.0, 2.0, 5.0])
        };
        if ticks.len() < 2 {
            ticks = within(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
        }
        if ticks.len() < 2 {
            ticks = Axis::linear(lo, hi, 3.0)
                .ticks
                .into_iter()
                .filter(|t| *t >= lo && *t <= hi)
                .collect();
        }
        let (lo, hi) = (lo / 1.15, hi * 1.15);
        Axis {
            lo,
            hi,
            log: true,
            ticks,
            decimals: 0,
            compact_decimals: 1,
        }
        .with_distinct_labels()
    }

    /// The ticks, every second one dropped until at most `max` are left.
    pub(super) fn thinned(&self, max: usize) -> Vec<f64> {
        let mut t = self.ticks.clone();
        while t.len() > max.max(2) {
            t = t.into_iter().step_by(2).collect();
        }
        t
    }

    /// The position of `v` as a fraction of the axis (0 at `lo`, 1 at `hi`).
    pub(super) fn frac(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.lo);
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    pub(super) fn label(&self, v: f64) -> String {
        if self.log || (self.decimals == 0 && self.hi.abs().max(self.lo.abs()) >= 10_000.0) {
            compact_to(v, self.compact_decimals)
        } else {
            format!("{v:.*}", self.decimals)
        }
    }
}

/// `1200` → `1.2k`, `3400000` → `3.4M`.
pub(crate) fn compact(v: f64) -> String {
    compact_to(v, 1)
}

/// [`compact`] with up to `decimals` decimals, trailing zeros dropped (`68.02k`, `68k`).
fn compact_to(v: f64, decimals: usize) -> String {
    let a = v.abs();
    let (x, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s}{suffix}")
}

fn marker(out: &mut String, shape: Shape, x: f64, y: f64, color: &str, title: &str) {
    let t = if title.is_empty() {
        String::new()
    } else {
        format!("<title>{}</title>", esc(title))
    };
    let _ = match shape {
        Shape::Circle => writeln!(
            out,
            r##"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="{color}" fill-opacity="0.85" stroke="white" stroke-width="1">{t}</circle>"##
        ),
        Shape::Diamond => writeln!(
            out,
            r##"<path d="M{x:.1},{:.1} L{:.1},{y:.1} L{x:.1},{:.1} L{:.1},{y:.1} Z" fill="{color}" fill-opacity="0.9" stroke="white" stroke-width="1">{t}</path>"##,
            y - 6.5,
            x + 6.5,
            y + 6.5,
            x - 6.5
        ),
    };
}

/// The plotting area: the two axes and the pixels they map to.
struct Frame {
    ax: Axis,
    ay: Axis,
    /// Plot width and height in pixels.
    pw: f64,
    ph: f64,
}

impl Frame {
    /// Axes that fit every point, error bar and marker of `c`, and whether it has any data.
    fn fit(c: &Chart) -> (Frame, bool) {
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let mut xs: Vec<f64> = Vec::new();
        let mut ys: Vec<f64> = Vec::new();
        for l in &c.lines {
            for (x, y) in &l.points {
                xs.push(*x);
                ys.push(*y);
            }
        }
        for s in &c.scatters {
            for m in &s.marks {
                xs.push(m.x);
                ys.push(m.y + m.err.unwrap_or(0.0));
                ys.push(m.y - m.err.unwrap_or(0.0));
            }
        }
        xs.extend(c.vlines.iter().map(|v| v.0));
        xs.retain(|v| v.is_finite() && (!c.x_log || *v > 0.0));
        ys.retain(|v| v.is_finite());
        let range = |v: &[f64]| {
            v.iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
                    (a.min(*x), b.max(*x))
                })
        };
        let (x0, x1) = range(&xs);
        let (y0, y1) = range(&ys);
        // A little room around the data, so no point sits on the frame.
        let pad = |lo: f64, hi: f64| (lo - 0.03 * (hi - lo), hi + 0.03 * (hi - lo));
        let ax = if c.x_log {
            Axis::log(x0, x1)
        } else if c.x_from_zero {
            Axis::linear(x0.min(0.0), pad(x0, x1).1, 8.0)
        } else {
            let (a, b) = pad(x0, x1);
            Axis::linear(a, b, 8.0)
        };
        let (ya, yb) = pad(y0, y1);
        let ay = Axis::linear(ya, yb, 6.0);
        (Frame { ax, ay, pw, ph }, !xs.is_empty())
    }

    fn px(&self, v: f64) -> f64 {
        LEFT + self.pw * self.ax.frac(v)
    }

    fn py(&self, v: f64) -> f64 {
        TOP + self.ph * (1.0 - self.ay.frac(v))
    }

    /// The grid, the ticks and their labels, the frame and the axis titles.
    fn axes(&self, c: &Chart, s: &mut String) {
        let (pw, ph) = (self.pw, self.ph);
        for &t in &self.ay.ticks {
            let y = self.py(t);
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{GRID}"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="#455a64">{}</text>"##,
                LEFT + pw,
                LEFT - 7.0,
                y + 4.0,
                self.ay.label(t)
            );
        }
        for &t in &self.ax.ticks {
            let x = self.px(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="{GRID}"/><line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{FRAME}"/><text x="{x:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#455a64">{}</text>"##,
                TOP + ph,
                TOP + ph,
                TOP + ph + 5.0,
                TOP + ph + 19.0,
                self.ax.label(t)
            );
        }
        let _ = write!(
            s,
            r##"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="{FRAME}"/>
<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle" fill="{INK}">{}</text>
<text x="18" y="{:.1}" font-size="13" text-anchor="middle" fill="{INK}" transform="rotate(-90 18 {:.1})">{}</text>
"##,
            LEFT + pw / 2.0,
            H - 12.0,
            esc(&c.x_label),
            TOP + ph / 2.0,
            TOP + ph / 2.0,
            esc(&c.y_label)
        );
    }

    /// Dashed vertical markers with their labels.
    fn vlines(&self, c: &Chart, s: &mut String) {
        for (v, label) in &c.vlines {
            if !v.is_finite() {
                continue;
            }
            let x = self.px(*v);
            let (lx, anchor) = if x > LEFT + 0.9 * self.pw {
                (x - 3.0, "end")
            } else {
                (x + 3.0, "start")
            };
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#b0bec5" stroke-dasharray="4 4"/><text x="{lx:.1}" y="{:.1}" font-size="11" text-anchor="{anchor}" fill="{SOFT}">{}</text>"##,
                TOP + self.ph,
                TOP + 12.0,
                esc(label)
            );
        }
    }

    /// The polylines, each with a dot where it ends.
    fn lines(&self, c: &Chart, s: &mut String) {
        for l in &c.lines {
            let pts: Vec<String> = l
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|(x, y)| format!("{:.1},{:.1}", self.px(*x), self.py(*y)))
                .collect();
            if pts.is_empty() {
                continue;
            }
            let dash = if l.dashed {
                r#" stroke-dasharray="6 3""#
            } else {
                ""
            };
            let _ = writeln!(
                s,
                r##"<polyline points="{}" fill="none" stroke="{}" stroke-width="{}" stroke-opacity="{}"{dash}><title>{}</title></polyline>"##,
                pts.join(" "),
                l.color,
                l.width,
                l.opacity,
                esc(&l.title)
            );
            // A dot where the line ends: where the trial stopped (and all of a one-point line).
            if let Some(last) = pts.last().and_then(|p| p.split_once(',')) {
                let _ = writeln!(
                    s,
                    r##"<circle cx="{}" cy="{}" r="{:.1}" fill="{}" fill-opacity="{}"><title>{}</title></circle>"##,
                    last.0,
                    last.1,
                    l.width + 1.2,
                    l.color,
                    l.opacity,
                    esc(&l.title)
                );
            }
        }
    }

    /// The scatter points with their error bars and labels. A label goes where it overlaps
    /// no point and no label drawn before it (right or left of its point, above or below),
    /// inside the plot; where there is no such place it is left out (the point's tooltip
    /// names it).
    fn scatters(&self, c: &Chart, s: &mut String) {
        let mut placed: Vec<[f64; 4]> = c
            .scatters
            .iter()
            .flat_map(|sc| &sc.marks)
            .filter(|m| m.x.is_finite() && m.y.is_finite())
            .map(|m| {
                let (x, y) = (self.px(m.x), self.py(m.y));
                [x - 5.0, y - 5.0, x + 5.0, y + 5.0]
            })
            .collect();
        for sc in &c.scatters {
            for m in sc
                .marks
                .iter()
                .filter(|m| m.x.is_finite() && m.y.is_finite())
            {
                let (x, y) = (self.px(m.x), self.py(m.y));
                if let Some(e) = m.err.filter(|e| e.is_finite() && *e > 0.0) {
                    let (ya, yb) = (self.py(m.y + e), self.py(m.y - e));
                    let _ = writeln!(
                        s,
                        r##"<path d="M{x:.1},{ya:.1} L{x:.1},{yb:.1} M{:.1},{ya:.1} L{:.1},{ya:.1} M{:.1},{yb:.1} L{:.1},{yb:.1}" stroke="{}" stroke-width="1.3" fill="none"/>"##,
                        x - 4.0,
                        x + 4.0,
                        x - 4.0,
                        x + 4.0,
                        sc.color
                    );
                }
                marker(s, sc.shape, x, y, &sc.color, &m.title);
                if let Some(label) = &m.label {
                    let short: String = if label.chars().count() > LABEL_CHARS {
                        label.chars().take(LABEL_CHARS - 1).chain(['…']).collect()
                    } else {
                        label.clone()
                    };
                    if let Some((lx, ly, anchor)) = self.label_place(x, y, &short, &mut placed) {
                        let _ = writeln!(
                            s,
                            r##"<text x="{lx:.1}" y="{ly:.1}" font-size="11" text-anchor="{anchor}" fill="{INK}">{}</text>"##,
                            esc(&short)
                        );
                    }
                }
            }
        }
    }

    /// Where the label `text` of the point at (`x`, `y`) goes: the first free place, right of
    /// the point first (left first in the plot's right quarter). Records the place taken.
    fn label_place(
        &self,
        x: f64,
        y: f64,
        text: &str,
        placed: &mut Vec<[f64; 4]>,
    ) -> Option<(f64, f64, &'static str)> {
        // DejaVu Sans at 11 px: about 6.4 px a character, 8 px above the baseline.
        let w = 6.4 * text.chars().count() as f64;
        let right_first = x <= LEFT + 0.75 * self.pw;
        let sides: [bool; 2] = [right_first, !right_first];
        for dy in [-7.0, 15.0] {
            for right in sides {
                let (lx, anchor) = if right {
                    (x + 8.0, "start")
                } else {
                    (x - 8.0, "end")
                };
                let ly = y + dy;
                let x0 = if right { lx } else { lx - w };
                let r = [x0, ly - 9.0, x0 + w, ly + 3.0];
                let inside =
                    r[0] >= LEFT && r[2] <= LEFT + self.pw && r[1] >= TOP && r[3] <= TOP + self.ph;
                let free = placed
                    .iter()
                    .all(|p| r[2] <= p[0] || r[0] >= p[2] || r[3] <= p[1] || r[1] >= p[3]);
                if inside && free {
                    placed.push(r);
                    return Some((lx, ly, anchor));
                }
            }
        }
        None
    }

    /// The legend, right of the plot.
    fn legend(&self, c: &Chart, s: &mut String) {
        for (k, key) in c.legend.iter().enumerate() {
            let ly = TOP + 10.0 + 22.0 * k as f64;
            let (x0, x1) = (LEFT + self.pw + 15.0, LEFT + self.pw + 40.0);
            let label = match key {
                Key::Line(label, color) => {
                    let _ = write!(
                        s,
                        r##"<line x1="{x0:.1}" y1="{ly:.1}" x2="{x1:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/>"##
                    );
                    label
                }
                Key::Marker(label, color, shape) => {
                    marker(s, *shape, (x0 + x1) / 2.0, ly, color, "");
                    label
                }
            };
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="12.5" fill="{INK}">{}</text>"##,
                x1 + 6.0,
                ly + 4.0,
                esc(label)
            );
        }
    }
}

/// Draws the chart as a standalone `<svg>` element.
pub(crate) fn draw(c: &Chart) -> String {
    let (frame, has_data) = Frame::fit(c);
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="DejaVu Sans, Arial, sans-serif" role="img" aria-label="{}">
<rect width="100%" height="100%" fill="white"/>
<text x="{LEFT}" y="28" font-size="17" font-weight="bold" fill="{INK}">{}</text>
<text x="{LEFT}" y="48" font-size="12.5" fill="{SOFT}">{}</text>
"##,
        esc(&c.title),
        esc(&c.title),
        esc(&c.subtitle)
    );
    frame.axes(c, &mut s);
    frame.vlines(c, &mut s);
    frame.lines(c, &mut s);
    frame.scatters(c, &mut s);
    if !has_data {
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" font-size="15" text-anchor="middle" fill="{SOFT}">no data yet</text>"##,
            LEFT + frame.pw / 2.0,
            TOP + frame.ph / 2.0
        );
    }
    frame.legend(c, &mut s);
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_round_and_cover_the_data() {
        let a = Axis::linear(0.31, 0.87, 6.0);
        assert!(a.lo <= 0.31 && a.hi >= 0.87, "{} {}", a.lo, a.hi);
        assert_eq!(a.ticks.first().copied(), Some(a.lo));
        let step = a.ticks[1] - a.ticks[0];
        assert!((step - 0.1).abs() < 1e-12, "{step}");
        assert_eq!(a.label(0.5), "0.5");
        // Steps of 2.5 and 0.25 need a decimal more; steps of 25 none.
        assert_eq!(Axis::linear(0.0, 10.0, 4.0).label(2.5), "2.5");
        assert_eq!(Axis::linear(0.0, 1.0, 4.0).label(0.25), "0.25");
        assert_eq!(Axis::linear(0.0, 100.0, 4.0).label(25.0), "25");
        assert_eq!(Axis::linear(1e6, 1e6, 6.0).label(1e6), "1M");
        // A single value still gets a range.
        let b = Axis::linear(3.0, 3.0, 6.0);
        assert!(b.lo < 3.0 && b.hi > 3.0);
    }

    #[test]
    fn log_ticks_are_1_2_5() {
        let a = Axis::log(150_000.0, 2_100_000.0);
        let labels: Vec<String> = a.ticks.iter().map(|t| a.label(*t)).collect();
        assert_eq!(labels, ["200k", "500k", "1M", "2M"]);
        assert!(a.frac(150_000.0) > 0.0 && a.frac(2_100_000.0) < 1.0);
    }

    #[test]
    fn compact_labels_tell_every_tick_apart() {
        let a = Axis::linear(68_000.0, 68_100.0, 6.0);
        let labels: Vec<String> = a.ticks.iter().map(|t| a.label(*t)).collect();
        assert_eq!(labels[..3], ["68k", "68.02k", "68.04k"], "{labels:?}");
        assert!(labels.windows(2).all(|w| w[0] != w[1]), "{labels:?}");
        assert_eq!(compact(1200.0), "1.2k");
        assert_eq!(compact(3_000_000.0), "3M");
    }

    #[test]
    fn log_axes_tick_every_decade_and_never_have_fewer_than_two_ticks() {
        let a = Axis::log(300.0, 3e8);
        let labels: Vec<String> = a.ticks.iter().map(|t| a.label(*t)).collect();
        assert_eq!(labels, ["1k", "10k", "100k", "1M", "10M", "100M"]);
        // Within one decade: 1–9 × 10ⁿ, else round linear ticks.
        let b = Axis::log(120_000.0, 480_000.0);
        let labels: Vec<String> = b.ticks.iter().map(|t| b.label(*t)).collect();
        assert_eq!(labels, ["200k", "300k", "400k"]);
        let c = Axis::log(150_000.0, 180_000.0);
        assert!(c.ticks.len() >= 2, "{:?}", c.ticks);
        assert!(c.ticks.iter().all(|t| (150_000.0..=180_000.0).contains(t)));
    }

    #[test]
    fn point_labels_never_overlap() {
        let mut c = Chart::new("t", "s", "x", "y");
        let marks = (0..8)
            .map(|i| Mark {
                x: 1.0 + 0.001 * i as f64,
                y: 1.0,
                err: None,
                label: Some(format!("candidate {i}")),
                title: String::new(),
            })
            .chain([0.0, 2.0].map(|v| Mark {
                x: v,
                y: v,
                err: None,
                label: Some(format!("corner {v}")),
                title: String::new(),
            }))
            .collect();
        c.scatter("pts", PALETTE[0], Shape::Circle, marks);
        let svg = draw(&c);
        let placed: Vec<&str> = svg
            .lines()
            .filter(|l| l.starts_with("<text") && l.contains("font-size=\"11\""))
            .collect();
        // Four places around the crowded point, and the corners' own.
        assert_eq!(placed.len(), 6, "{placed:#?}");
        let at: std::collections::BTreeSet<String> = placed
            .iter()
            .map(|l| l.split(" font-size").next().unwrap_or("").to_string())
            .collect();
        assert_eq!(at.len(), placed.len(), "two labels at one place");
    }

    #[test]
    fn charts_escape_text_and_draw_every_point() {
        let mut c = Chart::new("a <b>", "s", "x", "y");
        c.scatters.push(Scatter {
            color: PALETTE[0].into(),
            shape: Shape::Circle,
            marks: (0..3)
                .map(|i| Mark {
                    x: i as f64,
                    y: i as f64 * 2.0,
                    err: Some(0.5),
                    label: Some(format!("p&{i}")),
                    title: String::new(),
                })
                .collect(),
        });
        c.legend
            .push(Key::Marker("pts".into(), PALETTE[0].into(), Shape::Circle));
        let svg = draw(&c);
        assert!(svg.contains("a &lt;b&gt;") && svg.contains("p&amp;2"));
        assert_eq!(svg.matches("<circle").count(), 4, "3 points and the legend");
        assert!(!svg.contains("no data yet"));
        assert!(draw(&Chart::new("e", "", "x", "y")).contains("no data yet"));
    }
}
