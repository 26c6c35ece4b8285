//! Line charts (SVG, and PNG through the same rasteriser as topology pictures): the
//! contraction curves of `optarch rate --plot`.

use super::{xml_escape, INK, PALETTE};
use std::fmt::Write;

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    /// y values at x = 1, 2, 3, ...
    pub values: Vec<f64>,
}

/// A line chart with a logarithmic y axis (values ≤ 0 are clipped to the smallest positive one).
pub fn log_line_chart(
    title: &str,
    subtitle: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> String {
    let (w, h) = (860.0f64, 520.0f64);
    let (left, right, top, bottom) = (80.0, 230.0, 70.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let n = series
        .iter()
        .map(|s| s.values.len())
        .max()
        .unwrap_or(1)
        .max(2);
    let positive = series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .filter(|v| *v > 0.0 && v.is_finite());
    let (lo, hi) = positive.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.1, 1.0) };
    let (mut d0, d1) = (lo.log10().floor(), hi.log10().ceil());
    if d1 - d0 < 1.0 {
        d0 -= 1.0;
    }
    let x = |i: f64| left + pw * (i - 1.0) / (n as f64 - 1.0);
    let y = |v: f64| {
        let l = if v > 0.0 && v.is_finite() {
            v.log10()
        } else {
            d0
        };
        top + ph * (1.0 - (l - d0) / (d1 - d0))
    };
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="DejaVu Sans, Arial, sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{left}" y="30" font-size="18" font-weight="bold" fill="{INK}">{}</text>
<text x="{left}" y="52" font-size="13" fill="#546e7a">{}</text>
"##,
        xml_escape(title),
        xml_escape(subtitle)
    );
    // Grid and ticks.
    let decades = (d1 - d0) as i64;
    for i in 0..=decades {
        let d = d0 + i as f64;
        let yy = y(10f64.powf(d));
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#eceff1"/><text x="{:.1}" y="{:.1}" font-size="12" text-anchor="end" fill="#455a64">1e{d}</text>"##,
            left + pw,
            left - 8.0,
            yy + 4.0
        );
    }
    let step = ((n as f64 / 10.0).ceil() as usize).max(1);
    for i in (1..=n).filter(|i| *i == 1 || i % step == 0) {
        let xx = x(i as f64);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="#90a4ae"/><text x="{xx:.1}" y="{:.1}" font-size="12" text-anchor="middle" fill="#455a64">{i}</text>"##,
            top + ph,
            top + ph + 5.0,
            top + ph + 20.0
        );
    }
    let _ = write!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#90a4ae"/>
<text x="{:.1}" y="{:.1}" font-size="13" text-anchor="middle" fill="{INK}">{}</text>
<text x="20" y="{:.1}" font-size="13" text-anchor="middle" fill="{INK}" transform="rotate(-90 20 {:.1})">{}</text>
"##,
        left + pw / 2.0,
        h - 15.0,
        xml_escape(x_label),
        top + ph / 2.0,
        top + ph / 2.0,
        xml_escape(y_label)
    );
    for (k, ser) in series.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let pts: Vec<String> = ser
            .values
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i as f64 + 1.0), y(*v)))
            .collect();
        let ly = top + 10.0 + 22.0 * k as f64;
        let _ = write!(
            s,
            r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2"/>
<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="13" fill="{INK}">{}</text>
"##,
            pts.join(" "),
            left + pw + 15.0,
            left + pw + 40.0,
            left + pw + 46.0,
            ly + 4.0,
            xml_escape(&ser.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_has_every_series_and_parses() {
        let series = vec![
            Series {
                label: "gradient_descent".into(),
                values: (1..=20).map(|n| 0.99f64.powi(n)).collect(),
            },
            Series {
                label: "heavy <ball>".into(),
                values: (1..=20).map(|n| 0.9f64.powi(n)).collect(),
            },
        ];
        let svg = log_line_chart("rates", "κ = 100", "step", "contraction", &series);
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains("heavy &lt;ball&gt;"));
        let png = super::super::svg_to_png(&svg).unwrap();
        assert_eq!(&png[..4], b"\x89PNG");
    }
}
