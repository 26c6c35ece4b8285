//! The SVG writer: draws a [`Layout`](super::layout::Layout) with a title and a legend.

use super::layout::{
    edge_style, label_area, state_text, text_width, EdgeStyle, Layout, Shape, EDGE_FONT, NAME_FONT,
    NODE_FONT, SIGMA_FONT,
};
use super::wrap::{drawn_lines, DrawnLine};
use super::{xml_escape, INK};
use crate::topology::{NodeKind, Topology};

/// The font stack written into the SVG; the PNG rasteriser ships DejaVu Sans itself.
pub(super) const FONT_FAMILY: &str = "'DejaVu Sans', Arial, Helvetica, sans-serif";

const MARGIN: f64 = 16.0;
const TITLE_FONT: f64 = 16.0;
const FACTS_FONT: f64 = 11.0;
const LEGEND_FONT: f64 = 10.5;
const HEADER: f64 = 60.0;

const POSITIVE: &str = "#37474f";
const NEGATIVE: &str = "#c62828";
const LEARNABLE: &str = "#6a1b9a";

fn colour(style: EdgeStyle) -> &'static str {
    match style {
        EdgeStyle::Positive => POSITIVE,
        EdgeStyle::Negative => NEGATIVE,
        EdgeStyle::Learnable => LEARNABLE,
    }
}

fn marker_id(style: EdgeStyle) -> &'static str {
    match style {
        EdgeStyle::Positive => "arrow-pos",
        EdgeStyle::Negative => "arrow-neg",
        EdgeStyle::Learnable => "arrow-learn",
    }
}

/// Arrowheads of arcs: as transparent as the arcs.
fn arc_marker_id(style: EdgeStyle) -> &'static str {
    match style {
        EdgeStyle::Positive => "arc-arrow-pos",
        EdgeStyle::Negative => "arc-arrow-neg",
        EdgeStyle::Learnable => "arc-arrow-learn",
    }
}

fn dash(style: EdgeStyle) -> &'static str {
    match style {
        EdgeStyle::Negative => " stroke-dasharray=\"5 3\"",
        _ => "",
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `3 steps · 3 blocks · residual reading`.
pub(super) fn facts(topo: &Topology) -> String {
    format!(
        "{} · {} · {} reading",
        plural(topo.steps, "step", "steps"),
        plural(topo.block_count(), "block", "blocks"),
        topo.reading
    )
}

/// `name — 3 steps · 3 blocks · residual reading`.
pub(super) fn caption(topo: &Topology) -> String {
    format!("{} — {}", topo.name, facts(topo))
}

/// A text element centred on `x` with its baseline at `y`.
fn text(out: &mut String, x: f64, y: f64, size: f64, extra: &str, s: &str) {
    out.push_str(&format!(
        "<text x=\"{x:.1}\" y=\"{y:.1}\" font-size=\"{size}\" text-anchor=\"middle\"{extra}>{}</text>\n",
        xml_escape(s)
    ));
}

/// An edge label on a white backdrop so it stays readable over lines.
fn edge_label(out: &mut String, (x, y): (f64, f64), label: &str, style: EdgeStyle) {
    let area = label_area(label, (x, y));
    out.push_str(&format!(
        "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"2\" \
         fill=\"#ffffff\" fill-opacity=\"0.85\"/>\n",
        x - area.hw,
        y - area.hh,
        2.0 * area.hw,
        2.0 * area.hh
    ));
    let extra = format!(" fill=\"{}\"", colour(style));
    text(out, x, y + 0.35 * EDGE_FONT, EDGE_FONT, &extra, label);
}

/// Draws the symbol of a node kind centred at `(x, y)`; used by nodes and by the legend.
fn node_shape(out: &mut String, kind: &NodeKind, x: f64, y: f64, hw: f64, hh: f64, shape: Shape) {
    let (fill, stroke) = match kind {
        NodeKind::Input | NodeKind::Output => ("#e3f2fd", "#1565c0"),
        NodeKind::Block { .. } => ("#ffe0b2", "#e65100"),
        NodeKind::Combine => ("#ffffff", "#455a64"),
        NodeKind::Concat => ("#e8f5e9", "#2e7d32"),
    };
    match shape {
        Shape::Ellipse => out.push_str(&format!(
            "<ellipse cx=\"{x:.1}\" cy=\"{y:.1}\" rx=\"{hw:.1}\" ry=\"{hh:.1}\" fill=\"{fill}\" \
             stroke=\"{stroke}\" stroke-width=\"1.4\"/>\n"
        )),
        Shape::Rect => {
            let r = if matches!(kind, NodeKind::Block { .. }) {
                5.0
            } else {
                2.0
            };
            out.push_str(&format!(
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" rx=\"{r}\" \
                 fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"1.4\"/>\n",
                x - hw,
                y - hh,
                2.0 * hw,
                2.0 * hh
            ))
        }
    }
}

fn arrow_marker(out: &mut String, id: &str, style: EdgeStyle, size: f64, opacity: f64) {
    out.push_str(&format!(
        "<marker id=\"{id}\" viewBox=\"0 0 10 10\" refX=\"9\" refY=\"5\" \
         markerWidth=\"{size}\" markerHeight=\"{size}\" markerUnits=\"userSpaceOnUse\" overflow=\"visible\" \
         orient=\"auto\"><path d=\"M0,1 L10,5 L0,9 z\" fill=\"{}\" fill-opacity=\"{opacity}\"/>\
         </marker>\n",
        colour(style)
    ));
}

/// A legend entry: a symbol and its explanation.
enum Entry {
    Node(NodeKind, Shape, &'static str, &'static str),
    Edge(EdgeStyle, &'static str),
    /// A faded value: repeated from the line above in a wrapped picture.
    Ghost,
}

impl Entry {
    fn text(&self) -> &'static str {
        match self {
            Entry::Node(.., l) | Entry::Edge(_, l) => l,
            Entry::Ghost => "faded: repeated from the line above",
        }
    }

    fn width(&self) -> f64 {
        LEGEND_SYMBOL + 6.0 + text_width(self.text(), LEGEND_FONT) + 18.0
    }
}

const LEGEND_SYMBOL: f64 = 34.0;
const LEGEND_ROW: f64 = 24.0;

/// The legend entries for what `topo` contains.
fn legend_entries(topo: &Topology) -> Vec<Entry> {
    let g = &topo.graph;
    let has = |f: &dyn Fn(&NodeKind) -> bool| g.node_weights().any(|n| f(&n.kind));
    let styles: Vec<EdgeStyle> = g.edge_weights().map(|e| edge_style(&e.coef)).collect();
    let mut entries = Vec::new();
    if has(&|k| matches!(k, NodeKind::Block { .. })) {
        let block = NodeKind::Block { step: 0, slot: 0 };
        entries.push(Entry::Node(block, Shape::Rect, "B", "learned block"));
    }
    if has(&|k| matches!(k, NodeKind::Combine)) {
        entries.push(Entry::Node(
            NodeKind::Combine,
            Shape::Ellipse,
            "Σ",
            "weighted sum",
        ));
    }
    if has(&|k| matches!(k, NodeKind::Concat)) {
        entries.push(Entry::Node(
            NodeKind::Concat,
            Shape::Rect,
            "cat",
            "concatenation",
        ));
    }
    if !styles.is_empty() {
        entries.push(Entry::Edge(
            EdgeStyle::Positive,
            "coefficient (unlabelled: 1)",
        ));
    }
    if styles.contains(&EdgeStyle::Negative) {
        entries.push(Entry::Edge(EdgeStyle::Negative, "negative"));
    }
    if styles.contains(&EdgeStyle::Learnable) {
        entries.push(Entry::Edge(EdgeStyle::Learnable, "learnable"));
    }
    entries
}

/// Draws the legend in rows no wider than `width`, starting at `top`; returns its height.
fn legend(out: &mut String, entries: &[Entry], left: f64, top: f64, width: f64) -> f64 {
    if entries.is_empty() {
        return 0.0;
    }
    let (mut x, mut y) = (left, top + LEGEND_ROW / 2.0);
    out.push_str("<g class=\"legend\">\n");
    for entry in entries {
        let w = entry.width();
        if x > left && x + w > left + width {
            x = left;
            y += LEGEND_ROW;
        }
        let cx = x + LEGEND_SYMBOL / 2.0;
        match entry {
            Entry::Node(kind, shape, glyph, _) => {
                let (hw, hh) = if *shape == Shape::Ellipse {
                    (9.0, 9.0)
                } else {
                    (13.0, 9.0)
                };
                node_shape(out, kind, cx, y, hw, hh, *shape);
                text(out, cx, y + 3.5, 10.0, &format!(" fill=\"{INK}\""), glyph);
            }
            Entry::Ghost => {
                out.push_str(&format!("<g opacity=\"{GHOST_OPACITY}\">\n"));
                node_shape(out, &NodeKind::Combine, cx, y, 9.0, 9.0, Shape::Ellipse);
                text(out, cx, y + 3.5, 10.0, &format!(" fill=\"{INK}\""), "Σ");
                out.push_str("</g>\n");
            }
            Entry::Edge(style, _) => {
                out.push_str(&format!(
                    "<path d=\"M{:.1},{y:.1} L{:.1},{y:.1}\" fill=\"none\" stroke=\"{}\" \
                     stroke-width=\"1.5\"{} marker-end=\"url(#{})\"/>\n",
                    x,
                    x + LEGEND_SYMBOL,
                    colour(*style),
                    dash(*style),
                    marker_id(*style)
                ));
            }
        }
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"{LEGEND_FONT}\" fill=\"{INK}\">{}</text>\n",
            x + LEGEND_SYMBOL + 6.0,
            y + 0.35 * LEGEND_FONT,
            xml_escape(entry.text())
        ));
        x += w;
    }
    out.push_str("</g>\n");
    y + LEGEND_ROW / 2.0 - top
}

/// How arcs are stroked: thinner and fainter as they multiply.
struct ArcLook {
    width: f64,
    opacity: f64,
    head: f64,
}

/// How faded a ghost (a value repeated from the line above) is drawn.
const GHOST_OPACITY: f64 = 0.45;

/// Vertical space between the lines of a wrapped picture.
const LINE_GAP: f64 = 28.0;

/// Draws one line of a picture (`lay`, the layout of `topo`) shifted by `(dx, dy)`; ghost
/// nodes (copies of values drawn on the line above) are faded and say so in their tooltips.
fn draw(
    body: &mut String,
    topo: &Topology,
    lay: &Layout,
    ghosts: &[bool],
    look: &ArcLook,
    (dx, dy): (f64, f64),
) {
    let g = &topo.graph;
    let (arc_w, arc_opacity) = (look.width, look.opacity);
    body.push_str(&format!("<g transform=\"translate({dx:.1},{dy:.1})\">\n"));
    let edge_title = |e: petgraph::graph::EdgeIndex| -> String {
        match g.edge_endpoints(e) {
            Some((s, t)) => {
                let coef = g
                    .edge_weight(e)
                    .map(|w| topo.coef_label(&w.coef))
                    .unwrap_or_default();
                format!("{} → {} (× {coef})", g[s].label(), g[t].label())
            }
            None => String::new(),
        }
    };
    body.push_str("<g class=\"arcs\" fill=\"none\">\n");
    for a in &lay.arcs {
        body.push_str(&format!(
            "<path d=\"M{:.1},{:.1} C{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}\" stroke=\"{}\" \
             stroke-width=\"{arc_w}\" stroke-opacity=\"{arc_opacity}\"{} \
             marker-end=\"url(#{})\"><title>{}</title></path>\n",
            a.from.0,
            a.from.1,
            a.from.0,
            a.ctrl_y,
            a.to.0,
            a.ctrl_y,
            a.to.0,
            a.to.1,
            colour(a.style),
            dash(a.style),
            arc_marker_id(a.style),
            xml_escape(&edge_title(a.edge))
        ));
    }
    body.push_str("</g>\n<g class=\"edges\" fill=\"none\">\n");
    for l in &lay.lines {
        body.push_str(&format!(
            "<path d=\"M{:.1},{:.1} L{:.1},{:.1}\" stroke=\"{}\" stroke-width=\"1.5\"{} \
             marker-end=\"url(#{})\"><title>{}</title></path>\n",
            l.from.0,
            l.from.1,
            l.to.0,
            l.to.1,
            colour(l.style),
            dash(l.style),
            marker_id(l.style),
            xml_escape(&edge_title(l.edge))
        ));
    }
    body.push_str("</g>\n<g class=\"nodes\">\n");
    for idx in g.node_indices() {
        let (node, p) = (&g[idx], &lay.nodes[idx.index()]);
        let mut tip = node.label();
        if !node.names.is_empty() && !matches!(node.kind, NodeKind::Combine | NodeKind::Concat) {
            tip.push_str(&format!(" ({})", node.names.join(", ")));
        }
        let ghost = ghosts.get(idx.index()).copied().unwrap_or(false);
        if ghost {
            tip.push_str(" (repeated from the line above)");
        }
        let fade = if ghost {
            format!(" opacity=\"{GHOST_OPACITY}\"")
        } else {
            String::new()
        };
        body.push_str(&format!("<g{fade}><title>{}</title>\n", xml_escape(&tip)));
        node_shape(body, &node.kind, p.x, p.y, p.hw, p.hh, p.shape);
        let fill = format!(" fill=\"{INK}\"");
        match &node.kind {
            NodeKind::Input | NodeKind::Output => text(
                body,
                p.x,
                p.y + 0.35 * NODE_FONT,
                NODE_FONT,
                &fill,
                &node.label(),
            ),
            NodeKind::Block { .. } => text(
                body,
                p.x,
                p.y + 0.35 * NODE_FONT,
                NODE_FONT,
                &format!("{fill} font-weight=\"bold\""),
                &node.label(),
            ),
            NodeKind::Combine | NodeKind::Concat => {
                let (glyph, size) = match node.kind {
                    NodeKind::Combine => ("Σ", SIGMA_FONT),
                    _ => ("cat", NAME_FONT),
                };
                if node.names.is_empty() {
                    text(body, p.x, p.y + 0.36 * size, size, &fill, glyph);
                } else {
                    text(body, p.x, p.y - 2.0, size, &fill, glyph);
                    let name = state_text(&node.names);
                    text(body, p.x, p.y + 10.5, NAME_FONT, &fill, &name);
                }
            }
        }
        body.push_str("</g>\n");
    }
    body.push_str("</g>\n<g class=\"labels\">\n");
    for l in &lay.lines {
        if let Some(label) = &l.label {
            edge_label(body, l.label_at, label, l.style);
        }
    }
    for a in &lay.arcs {
        if let Some(label) = &a.label {
            edge_label(body, a.label_at, label, a.style);
        }
    }
    body.push_str("</g>\n</g>\n");
}

/// A self-drawn SVG picture of `topo`: layers left to right, the main path on a straight line,
/// skip connections as arcs above and below it labelled with their coefficients (coefficient 1
/// is not labelled; negative constants are red and dashed, learnable coefficients purple),
/// a title with the name and the number of steps, and a legend. Labels are placed clear of
/// each other, of nodes and of other edges; a drawing wider than 1,200 px wraps onto further
/// lines that start with faded copies of what they read from the line above (`wrap.rs`).
///
/// Text uses a generic font stack (`DejaVu Sans, Arial, Helvetica, sans-serif`). Nodes and
/// edges carry `<title>` tooltips for viewers that show them.
pub fn to_svg(topo: &Topology) -> String {
    let lines = drawn_lines(topo);
    let wrapped = lines.len() > 1;
    let draw_w = lines
        .iter()
        .map(|l| l.lay.max_x - l.lay.min_x)
        .fold(0.0, f64::max);
    let title_w = text_width(&topo.name, TITLE_FONT) * 1.1;
    let facts_w = text_width(&facts(topo), FACTS_FONT);
    let mut entries = legend_entries(topo);
    if wrapped {
        entries.push(Entry::Ghost);
    }
    let legend_w: f64 = entries.iter().map(Entry::width).sum();
    let content_w = draw_w.max(title_w).max(facts_w).max(legend_w);
    let width = (content_w + 2.0 * MARGIN).ceil();

    let mut body = String::new();
    body.push_str(&format!(
        "<text x=\"{MARGIN}\" y=\"26\" font-size=\"{TITLE_FONT}\" font-weight=\"bold\" \
         fill=\"{INK}\">{}</text>\n",
        xml_escape(&topo.name)
    ));
    body.push_str(&format!(
        "<text x=\"{MARGIN}\" y=\"44\" font-size=\"{FACTS_FONT}\" fill=\"#546e7a\">{}</text>\n",
        xml_escape(&facts(topo))
    ));

    // Stroke weight and transparency of arcs thin out as they multiply.
    let arcs: usize = lines.iter().map(|l| l.lay.arcs.len()).sum();
    let arc_look = match arcs {
        0..=15 => ArcLook {
            width: 1.4,
            opacity: 0.85,
            head: 8.0,
        },
        16..=60 => ArcLook {
            width: 1.1,
            opacity: 0.6,
            head: 7.0,
        },
        _ => ArcLook {
            width: 0.8,
            opacity: 0.4,
            head: 6.0,
        },
    };
    let mut top = HEADER;
    for DrawnLine {
        topo: part,
        lay,
        ghosts,
    } in &lines
    {
        let w = lay.max_x - lay.min_x;
        // A single line is centred; wrapped lines start at the margin, like text.
        let indent = if wrapped {
            0.0
        } else {
            (content_w - w).max(0.0) / 2.0
        };
        let (dx, dy) = (MARGIN - lay.min_x + indent, top - lay.min_y);
        draw(&mut body, part, lay, ghosts, &arc_look, (dx, dy));
        top += lay.max_y - lay.min_y + LINE_GAP;
    }
    let legend_top = top - LINE_GAP + 16.0;
    let legend_h = legend(&mut body, &entries, MARGIN, legend_top, content_w);
    let height = (legend_top + legend_h + MARGIN).ceil();
    let arc_head = arc_look.head;
    let arc_opacity = arc_look.opacity;

    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"{FONT_FAMILY}\">\n"
    ));
    out.push_str(&format!("<title>{}</title>\n", xml_escape(&caption(topo))));
    out.push_str("<defs>\n");
    for style in [
        EdgeStyle::Positive,
        EdgeStyle::Negative,
        EdgeStyle::Learnable,
    ] {
        arrow_marker(&mut out, marker_id(style), style, 8.0, 1.0);
        arrow_marker(
            &mut out,
            arc_marker_id(style),
            style,
            arc_head,
            arc_opacity.max(0.6),
        );
    }
    out.push_str("</defs>\n");
    out.push_str(&format!(
        "<rect x=\"0\" y=\"0\" width=\"{width}\" height=\"{height}\" fill=\"#ffffff\"/>\n"
    ));
    out.push_str(&body);
    out.push_str("</svg>\n");
    out
}
