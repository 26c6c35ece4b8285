//! The layered layout behind the SVG and PNG pictures.
//!
//! * Columns: the longest-path layer of each node (input 0, every other node one more than its
//!   latest operand), so a combination sits right after its latest operand and the picture
//!   reads left to right in execution order.
//! * Rows: the main path (traced back from the output through the latest operand of each node)
//!   sits on row 0, a straight line; other nodes of a column go below and above it.
//! * Edges between neighbouring columns are straight; longer ones (skip connections) are arcs
//!   above or below the main line. Each arc goes to the side where fewer arcs already overlap
//!   its span, and is raised one track above every arc of that side that it encloses or whose
//!   label would collide with its own, so nested arcs never share a height.
//!
//! All coordinates are in SVG user units (pixels) with the main line at `y = 0`.

use crate::coef::Coef;
use crate::topology::{NodeKind, Topology};
use petgraph::graph::{EdgeIndex, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use std::collections::HashSet;

/// How an edge is drawn, by its coefficient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EdgeStyle {
    /// A positive constant (1 included).
    Positive,
    /// A negative constant.
    Negative,
    /// A coefficient that depends on learnable parameters.
    Learnable,
}

pub(super) fn edge_style(coef: &Coef) -> EdgeStyle {
    match coef.as_const() {
        Some(c) if c < 0.0 => EdgeStyle::Negative,
        Some(_) => EdgeStyle::Positive,
        None => EdgeStyle::Learnable,
    }
}

/// Font sizes used by the layout and the SVG writer.
pub(super) const NODE_FONT: f64 = 12.0;
pub(super) const NAME_FONT: f64 = 9.5;
pub(super) const SIGMA_FONT: f64 = 13.0;
pub(super) const EDGE_FONT: f64 = 10.0;

const ROW_HEIGHT: f64 = 64.0;
const MIN_GAP: f64 = 26.0;
const FIRST_TRACK: f64 = 16.0;
const TRACK: f64 = 15.0;
const LABEL_PAD: f64 = 10.0;

/// Approximate advance width of `s` in DejaVu Sans at `size` pixels (no font access needed).
pub(super) fn text_width(s: &str, size: f64) -> f64 {
    let em: f64 = s
        .chars()
        .map(|c| match c {
            '0'..='9' => 0.64,
            ' ' | '.' | ',' | ':' | ';' | '·' | 'i' | 'j' | 'l' | '\'' | '|' => 0.32,
            '[' | ']' | '(' | ')' | 'f' | 't' | 'r' => 0.40,
            '-' => 0.36,
            '+' | '=' | '<' | '>' | '×' | '−' => 0.84,
            'A'..='Z' | 'Σ' | 'm' | 'w' => 0.74,
            _ => 0.62,
        })
        .sum();
    em * size
}

/// The outline of a node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Shape {
    Ellipse,
    Rect,
}

/// A placed node: centre `(x, y)` and half extents `(hw, hh)`.
#[derive(Clone, Debug)]
pub(super) struct Placed {
    pub x: f64,
    pub y: f64,
    pub hw: f64,
    pub hh: f64,
    pub shape: Shape,
    pub col: usize,
}

impl Placed {
    /// The vertical distance from the centre to the outline at horizontal offset `dx`.
    fn half_height_at(&self, dx: f64) -> f64 {
        match self.shape {
            Shape::Rect => self.hh,
            Shape::Ellipse => {
                let t = (dx / self.hw).clamp(-1.0, 1.0);
                self.hh * (1.0 - t * t).max(0.0).sqrt()
            }
        }
    }

    /// The point of the outline in direction `(dx, dy)` from the centre.
    fn boundary_towards(&self, dx: f64, dy: f64) -> (f64, f64) {
        let len = (dx * dx + dy * dy).sqrt();
        if len < 1e-9 {
            return (self.x, self.y);
        }
        let (ux, uy) = (dx / len, dy / len);
        let t = match self.shape {
            Shape::Rect => {
                let tx = if ux.abs() > 1e-9 {
                    self.hw / ux.abs()
                } else {
                    f64::INFINITY
                };
                let ty = if uy.abs() > 1e-9 {
                    self.hh / uy.abs()
                } else {
                    f64::INFINITY
                };
                tx.min(ty)
            }
            Shape::Ellipse => {
                let a = ux / self.hw;
                let b = uy / self.hh;
                1.0 / (a * a + b * b).sqrt()
            }
        };
        (self.x + ux * t, self.y + uy * t)
    }
}

/// An axis-aligned box: centre `(x, y)` and half extents `(hw, hh)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Area {
    pub x: f64,
    pub y: f64,
    pub hw: f64,
    pub hh: f64,
}

impl Area {
    fn overlaps(&self, o: &Area) -> bool {
        (self.x - o.x).abs() < self.hw + o.hw && (self.y - o.y).abs() < self.hh + o.hh
    }

    /// Whether the segment `p`–`q` passes through the box (Liang–Barsky clipping).
    fn crossed_by(&self, p: (f64, f64), q: (f64, f64)) -> bool {
        let (dx, dy) = (q.0 - p.0, q.1 - p.1);
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for (d, near, far) in [
            (dx, self.x - self.hw - p.0, self.x + self.hw - p.0),
            (dy, self.y - self.hh - p.1, self.y + self.hh - p.1),
        ] {
            if d.abs() < 1e-12 {
                if near > 0.0 || far < 0.0 {
                    return false;
                }
            } else {
                let (a, b) = (near / d, far / d);
                lo = lo.max(a.min(b));
                hi = hi.min(a.max(b));
                if lo > hi {
                    return false;
                }
            }
        }
        true
    }
}

/// The white backdrop of an edge label centred at `at`, as the SVG writer draws it.
pub(super) fn label_area(label: &str, at: (f64, f64)) -> Area {
    Area {
        x: at.0,
        y: at.1,
        hw: (text_width(label, EDGE_FONT) + 4.0) / 2.0,
        hh: (EDGE_FONT + 3.0) / 2.0,
    }
}

/// How far above its line a straight edge's label sits.
const LINE_LABEL_RISE: f64 = 8.0;

/// A straight edge between neighbouring columns.
#[derive(Clone, Debug)]
pub(super) struct Line {
    pub edge: EdgeIndex,
    pub from: (f64, f64),
    pub to: (f64, f64),
    pub label: Option<String>,
    /// Where the label's centre goes (chosen clear of other labels, nodes and edges).
    pub label_at: (f64, f64),
    pub style: EdgeStyle,
}

impl Line {
    /// The label's place at fraction `t` of the line, `rise` above it.
    fn label_spot(&self, t: f64, rise: f64) -> (f64, f64) {
        (
            self.from.0 + t * (self.to.0 - self.from.0),
            self.from.1 + t * (self.to.1 - self.from.1) - rise,
        )
    }
}

/// A skip connection drawn as a cubic arc `from → to` with both control points at `ctrl_y`.
#[derive(Clone, Debug)]
pub(super) struct Arc {
    pub edge: EdgeIndex,
    pub from: (f64, f64),
    pub to: (f64, f64),
    pub ctrl_y: f64,
    pub label: Option<String>,
    /// Where the label's centre goes: on the arc, at its apex unless that spot is taken.
    pub label_at: (f64, f64),
    pub style: EdgeStyle,
}

impl Arc {
    /// The point of the arc at parameter `t` in [0, 1].
    pub fn point(&self, t: f64) -> (f64, f64) {
        let u = 1.0 - t;
        let (w0, w1, w2, w3) = (u * u * u, 3.0 * u * u * t, 3.0 * u * t * t, t * t * t);
        (
            (w0 + w1) * self.from.0 + (w2 + w3) * self.to.0,
            w0 * self.from.1 + (w1 + w2) * self.ctrl_y + w3 * self.to.1,
        )
    }
}

/// The whole layout.
#[derive(Clone, Debug)]
pub(super) struct Layout {
    /// Indexed like the graph's nodes.
    pub nodes: Vec<Placed>,
    pub lines: Vec<Line>,
    pub arcs: Vec<Arc>,
    /// Extent of the drawing (labels included).
    pub min_x: f64,
    pub max_x: f64,
    pub min_y: f64,
    pub max_y: f64,
}

/// The longest-path column of every node, indexed by node index.
pub(super) fn columns(topo: &Topology) -> Vec<usize> {
    let g = &topo.graph;
    let order: Vec<NodeIndex> = match petgraph::algo::toposort(g, None) {
        Ok(order) => order,
        // A cycle is a bug elsewhere; draw it in creation order rather than fail.
        Err(_) => g.node_indices().collect(),
    };
    let mut col = vec![0usize; g.node_count()];
    let mut done = vec![false; g.node_count()];
    for n in order {
        let c = g
            .neighbors_directed(n, Direction::Incoming)
            .filter(|m| done[m.index()])
            .map(|m| col[m.index()] + 1)
            .max()
            .unwrap_or(0);
        col[n.index()] = c;
        done[n.index()] = true;
    }
    col
}

/// The main path, output back to a source, through the latest operand (lowest slot on ties).
pub(super) fn main_nodes(topo: &Topology, col: &[usize]) -> Vec<NodeIndex> {
    let g = &topo.graph;
    let mut path = Vec::new();
    if g.node_weight(topo.output).is_none() {
        return path;
    }
    let mut cur = topo.output;
    path.push(cur);
    while path.len() <= g.node_count() {
        let best = topo
            .operands(cur)
            .into_iter()
            .filter(|(m, _)| col[m.index()] < col[cur.index()])
            .max_by(|(a, ea), (b, eb)| {
                col[a.index()]
                    .cmp(&col[b.index()])
                    .then(eb.slot.cmp(&ea.slot))
            });
        match best {
            Some((m, _)) => {
                cur = m;
                path.push(cur);
            }
            None => break,
        }
    }
    path.reverse();
    path
}

/// The edges `(operand, consumer)` of the main path.
pub(super) fn main_path(topo: &Topology) -> HashSet<(NodeIndex, NodeIndex)> {
    let col = columns(topo);
    main_nodes(topo, &col)
        .windows(2)
        .map(|w| (w[0], w[1]))
        .collect()
}

/// The text drawn in a weighted sum or concatenation under its symbol.
pub(super) fn state_text(names: &[String]) -> String {
    names.join("=")
}

fn node_extent(kind: &NodeKind, label: &str, names: &[String]) -> (f64, f64, Shape) {
    match kind {
        NodeKind::Input | NodeKind::Output => (
            (text_width(label, NODE_FONT) / 2.0 + 11.0).max(20.0),
            14.0,
            Shape::Ellipse,
        ),
        NodeKind::Block { .. } => (
            (text_width(label, NODE_FONT) * 1.08 / 2.0 + 8.0).max(17.0),
            14.0,
            Shape::Rect,
        ),
        NodeKind::Combine if names.is_empty() => (11.0, 11.0, Shape::Ellipse),
        NodeKind::Combine => {
            let w = text_width(&state_text(names), NAME_FONT);
            ((w / 2.0 + 8.0).max(17.0), 17.0, Shape::Ellipse)
        }
        NodeKind::Concat if names.is_empty() => (15.0, 11.0, Shape::Rect),
        NodeKind::Concat => {
            let w = text_width(&state_text(names), NAME_FONT);
            ((w / 2.0 + 5.0).max(15.0), 16.0, Shape::Rect)
        }
    }
}

/// A skip connection before placement.
struct PendingArc {
    edge: EdgeIndex,
    src: NodeIndex,
    dst: NodeIndex,
    a: usize,
    b: usize,
    label: Option<String>,
    label_w: f64,
    style: EdgeStyle,
    above: bool,
    level: usize,
}

/// An edge between neighbouring columns, drawn straight: (edge, source, target, label, style).
type Straight = (EdgeIndex, NodeIndex, NodeIndex, Option<String>, EdgeStyle);

/// Lays out `topo`: columns and rows, the gaps the labels need, the arcs' sides and tracks,
/// where each arc attaches, and the drawn arcs and lines.
pub(super) fn layout(topo: &Topology) -> Layout {
    let col = columns(topo);
    let ncols = col.iter().copied().max().map_or(0, |c| c + 1);
    let row = rows(topo, &col, ncols);
    let (extents, col_half) = extents(topo, &col, ncols);
    let (mut gap, mut pending, straight) = edges(topo, &col, ncols);
    let xs = widen_for_labels(&mut gap, &mut pending, &col_half);
    let nodes: Vec<Placed> = topo
        .graph
        .node_indices()
        .map(|idx| {
            let (hw, hh, shape) = extents[idx.index()];
            let c = col[idx.index()];
            Placed {
                x: xs.get(c).copied().unwrap_or(0.0),
                y: row[idx.index()] as f64 * ROW_HEIGHT,
                hw,
                hh,
                shape,
                col: c,
            }
        })
        .collect();
    let bands = bands(&nodes, ncols);
    assign_tracks(&mut pending, &xs);
    let (arcs, min_y, max_y) = arcs(&pending, &nodes, &bands);
    let lines = straight
        .into_iter()
        .map(|(edge, s, t, label, style)| {
            let (ps, pt) = (&nodes[s.index()], &nodes[t.index()]);
            let (dx, dy) = (pt.x - ps.x, pt.y - ps.y);
            let (from, to) = (ps.boundary_towards(dx, dy), pt.boundary_towards(-dx, -dy));
            Line {
                edge,
                from,
                to,
                label,
                label_at: (
                    (from.0 + to.0) / 2.0,
                    (from.1 + to.1) / 2.0 - LINE_LABEL_RISE,
                ),
                style,
            }
        })
        .collect();
    let mut lay = Layout {
        nodes,
        lines,
        arcs,
        min_x: 0.0,
        max_x: 0.0,
        min_y,
        max_y,
    };
    place_labels(&mut lay);
    let areas = label_areas(&lay);
    let boxes = lay
        .nodes
        .iter()
        .map(node_area)
        .chain(areas.iter().map(|(_, a)| *a));
    for a in boxes {
        lay.min_x = lay.min_x.min(a.x - a.hw);
        lay.max_x = lay.max_x.max(a.x + a.hw);
        lay.min_y = lay.min_y.min(a.y - a.hh);
        lay.max_y = lay.max_y.max(a.y + a.hh);
    }
    lay
}

/// Which edge a label or a stroke belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Owner {
    Line(usize),
    Arc(usize),
}

/// A drawn edge as a polyline, with its bounding box.
struct Stroke {
    owner: Owner,
    pts: Vec<(f64, f64)>,
    bounds: Area,
}

impl Stroke {
    fn new(owner: Owner, pts: Vec<(f64, f64)>) -> Stroke {
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in &pts {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        let bounds = Area {
            x: (x0 + x1) / 2.0,
            y: (y0 + y1) / 2.0,
            hw: (x1 - x0) / 2.0 + 0.5,
            hh: (y1 - y0) / 2.0 + 0.5,
        };
        Stroke { owner, pts, bounds }
    }

    fn crosses(&self, area: &Area) -> bool {
        self.bounds.overlaps(area) && self.pts.windows(2).any(|w| area.crossed_by(w[0], w[1]))
    }
}

/// Segments an arc is checked as (its curvature is gentle: 32 chords stay within a pixel).
const ARC_SEGMENTS: usize = 32;

fn strokes(lines: &[Line], arcs: &[Arc]) -> Vec<Stroke> {
    let lines = lines
        .iter()
        .enumerate()
        .map(|(i, l)| Stroke::new(Owner::Line(i), vec![l.from, l.to]));
    let arcs = arcs.iter().enumerate().map(|(i, a)| {
        let pts = (0..=ARC_SEGMENTS)
            .map(|k| a.point(k as f64 / ARC_SEGMENTS as f64))
            .collect();
        Stroke::new(Owner::Arc(i), pts)
    });
    lines.chain(arcs).collect()
}

fn node_area(p: &Placed) -> Area {
    Area {
        x: p.x,
        y: p.y,
        hw: p.hw,
        hh: p.hh,
    }
}

/// What a label would hide or be hidden by. The fields name it in the legibility test's
/// reports; placing labels needs only the kind.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(test), allow(dead_code))]
enum Clash {
    /// Another edge's label.
    Label(Owner),
    /// A node (by index).
    Node(usize),
    /// An edge other than the label's own, running through it.
    Edge(Owner),
}

impl Clash {
    /// How much a clash costs a label's place: hiding a label or a node is worse than an edge
    /// passing under the label's backdrop.
    fn cost(self) -> usize {
        match self {
            Clash::Edge(_) => 1,
            Clash::Label(_) | Clash::Node(_) => 4,
        }
    }

    #[cfg(test)]
    fn describe(self) -> String {
        match self {
            Clash::Label(o) => format!("the label of {o:?}"),
            Clash::Node(i) => format!("node {i}"),
            Clash::Edge(o) => format!("edge {o:?}"),
        }
    }
}

/// What a label at `area` would hide or be hidden by: other labels, nodes, and edges other
/// than its own.
fn clashes(
    area: &Area,
    own: Owner,
    labels: &[(Owner, Area)],
    nodes: &[Placed],
    strokes: &[Stroke],
) -> Vec<Clash> {
    let labels = labels
        .iter()
        .filter(|(o, a)| *o != own && a.overlaps(area))
        .map(|(o, _)| Clash::Label(*o));
    let nodes = nodes
        .iter()
        .enumerate()
        .filter(|(_, p)| node_area(p).overlaps(area))
        .map(|(i, _)| Clash::Node(i));
    let edges = strokes
        .iter()
        .filter(|s| s.owner != own && s.crosses(area))
        .map(|s| Clash::Edge(s.owner));
    labels.chain(nodes).chain(edges).collect()
}

/// The labels as drawn: owner and backdrop.
pub(super) fn label_areas(lay: &Layout) -> Vec<(Owner, Area)> {
    let lines = lay.lines.iter().enumerate().filter_map(|(i, l)| {
        let label = l.label.as_deref()?;
        Some((Owner::Line(i), label_area(label, l.label_at)))
    });
    let arcs = lay.arcs.iter().enumerate().filter_map(|(i, a)| {
        let label = a.label.as_deref()?;
        Some((Owner::Arc(i), label_area(label, a.label_at)))
    });
    lines.chain(arcs).collect()
}

#[cfg(test)]
/// Everything that keeps a picture from being read: labels overlapping each other or a node,
/// and edges running through a label that is not theirs. Empty for a legible layout.
pub(super) fn legibility_faults(lay: &Layout) -> Vec<String> {
    let labels = label_areas(lay);
    let strokes = strokes(&lay.lines, &lay.arcs);
    let mut faults = Vec::new();
    for (own, area) in &labels {
        for c in clashes(area, *own, &labels, &lay.nodes, &strokes) {
            faults.push(format!(
                "label of {own:?} at ({:.0}, {:.0}) meets {}",
                area.x,
                area.y,
                c.describe()
            ));
        }
    }
    faults
}

/// Places every label where it clashes least: a straight edge's above its line (along it, or
/// below it when that is taken), an arc's on the arc, at its apex or as near to it as is free.
/// Straight edges first (they have the least room), then arcs from the shortest.
fn place_labels(lay: &mut Layout) {
    let Layout {
        nodes, lines, arcs, ..
    } = lay;
    let strokes = strokes(lines, arcs);
    let mut placed: Vec<(Owner, Area)> = Vec::new();
    let choose = |own: Owner, label: &str, spots: &[(f64, f64)], placed: &mut Vec<_>| {
        let cost = |at: (f64, f64)| {
            let area = label_area(label, at);
            clashes(&area, own, placed, nodes, &strokes)
                .into_iter()
                .map(Clash::cost)
                .sum::<usize>()
        };
        let mut best = (usize::MAX, spots[0]);
        for &at in spots {
            let c = cost(at);
            if c < best.0 {
                best = (c, at);
            }
            if c == 0 {
                break;
            }
        }
        placed.push((own, label_area(label, best.1)));
        best.1
    };
    const ALONG: [f64; 7] = [0.5, 0.4, 0.6, 0.3, 0.7, 0.22, 0.78];
    for (i, l) in lines.iter_mut().enumerate() {
        let Some(label) = l.label.as_deref() else {
            continue;
        };
        let spots: Vec<(f64, f64)> = [LINE_LABEL_RISE, -LINE_LABEL_RISE]
            .iter()
            .flat_map(|&rise| [0.5, 0.35, 0.65].map(|t| l.label_spot(t, rise)))
            .collect();
        l.label_at = choose(Owner::Line(i), label, &spots, &mut placed);
    }
    for (i, a) in arcs.iter_mut().enumerate() {
        let Some(label) = a.label.as_deref() else {
            continue;
        };
        let spots: Vec<(f64, f64)> = ALONG.iter().map(|&t| a.point(t)).collect();
        a.label_at = choose(Owner::Arc(i), label, &spots, &mut placed);
    }
}

/// Rows: main path on row 0, the rest of each column alternately below and above.
fn rows(topo: &Topology, col: &[usize], ncols: usize) -> Vec<i64> {
    let g = &topo.graph;
    let main = main_nodes(topo, col);
    let on_main: HashSet<NodeIndex> = main.iter().copied().collect();
    let mut row = vec![0i64; g.node_count()];
    let mut used: Vec<usize> = vec![0; ncols];
    for idx in g.node_indices() {
        if on_main.contains(&idx) {
            continue;
        }
        let c = col[idx.index()];
        // A column without a main node (a value the output does not use) starts at row 0.
        let has_main = main.iter().any(|m| col[m.index()] == c);
        let k = used[c] + usize::from(has_main);
        used[c] += 1;
        row[idx.index()] = match k {
            0 => 0,
            k if k % 2 == 1 => k.div_ceil(2) as i64,
            k => -((k / 2) as i64),
        };
    }
    row
}

/// Node extents (half width, half height, shape) and each column's half width.
#[allow(clippy::type_complexity)]
fn extents(topo: &Topology, col: &[usize], ncols: usize) -> (Vec<(f64, f64, Shape)>, Vec<f64>) {
    let g = &topo.graph;
    let mut extents = Vec::with_capacity(g.node_count());
    let mut col_half = vec![0.0f64; ncols];
    for idx in g.node_indices() {
        let node = &g[idx];
        let (hw, hh, shape) = node_extent(&node.kind, &node.label(), &node.names);
        extents.push((hw, hh, shape));
        let c = col[idx.index()];
        col_half[c] = col_half[c].max(hw);
    }
    (extents, col_half)
}

/// The edges, split into straight lines between neighbouring columns and arcs; the gaps
/// between neighbouring columns, wide enough for straight-edge labels.
fn edges(
    topo: &Topology,
    col: &[usize],
    ncols: usize,
) -> (Vec<f64>, Vec<PendingArc>, Vec<Straight>) {
    let label_of = |coef: &Coef| -> Option<String> {
        if coef.is_one() {
            None
        } else {
            Some(topo.coef_label(coef))
        }
    };
    let mut gap = vec![MIN_GAP; ncols.saturating_sub(1)];
    let mut pending = Vec::new();
    let mut straight = Vec::new();
    for e in topo.graph.edge_references() {
        let (s, t) = (e.source(), e.target());
        let (a, b) = (col[s.index()], col[t.index()]);
        let label = label_of(&e.weight().coef);
        let label_w = label.as_deref().map_or(0.0, |l| text_width(l, EDGE_FONT));
        let style = edge_style(&e.weight().coef);
        if b == a + 1 {
            if label.is_some() {
                gap[a] = gap[a].max(label_w + 2.0 * LABEL_PAD);
            }
            straight.push((e.id(), s, t, label, style));
        } else {
            // b <= a only for a cycle; draw it as an arc all the same.
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            pending.push(PendingArc {
                edge: e.id(),
                src: s,
                dst: t,
                a: lo,
                b: hi,
                label,
                label_w,
                style,
                above: true,
                level: 1,
            });
        }
    }
    (gap, pending, straight)
}

/// Column centres for half widths `col_half` and gaps `gap`.
fn centres(col_half: &[f64], gap: &[f64]) -> Vec<f64> {
    let mut xs = Vec::with_capacity(col_half.len());
    let mut x = 0.0;
    for c in 0..col_half.len() {
        if c > 0 {
            x += col_half[c - 1] + gap[c - 1] + col_half[c];
        }
        xs.push(x);
    }
    xs
}

/// Arcs need room for their labels along their span: widens the gaps they cross (shortest arcs
/// first, which orders `pending`) and returns the column centres.
fn widen_for_labels(gap: &mut [f64], pending: &mut [PendingArc], col_half: &[f64]) -> Vec<f64> {
    pending.sort_by_key(|p| (p.b - p.a, p.a, p.edge.index()));
    let mut xs = centres(col_half, gap);
    for p in pending.iter().filter(|p| p.label.is_some() && p.b > p.a) {
        let need = p.label_w + 2.0 * LABEL_PAD;
        let have = xs[p.b] - xs[p.a];
        if have < need {
            let extra = (need - have) / (p.b - p.a) as f64;
            for g in &mut gap[p.a..p.b] {
                *g += extra;
            }
            xs = centres(col_half, gap);
        }
    }
    xs
}

/// The band of each column: the top and bottom of its nodes.
struct Bands {
    top: Vec<f64>,
    bottom: Vec<f64>,
}

fn bands(nodes: &[Placed], ncols: usize) -> Bands {
    let mut b = Bands {
        top: vec![0.0f64; ncols],
        bottom: vec![0.0f64; ncols],
    };
    for p in nodes {
        b.top[p.col] = b.top[p.col].min(p.y - p.hh);
        b.bottom[p.col] = b.bottom[p.col].max(p.y + p.hh);
    }
    b
}

/// Sides and levels: each arc goes to the side with fewer overlapping arcs, one track above
/// every arc it encloses or whose label it would hit.
fn assign_tracks(pending: &mut [PendingArc], xs: &[f64]) {
    let apex_x = |p: &PendingArc| (xs[p.a] + xs[p.b]) / 2.0;
    for i in 0..pending.len() {
        let (done, rest) = pending.split_at_mut(i);
        let Some(cur) = rest.first_mut() else { break };
        let (a, b, label_w) = (cur.a, cur.b, cur.label_w);
        let overlaps = |q: &PendingArc| q.a < b && a < q.b;
        let above_count = done.iter().filter(|q| q.above && overlaps(q)).count();
        let below_count = done.iter().filter(|q| !q.above && overlaps(q)).count();
        let above = above_count <= below_count;
        let cx = (xs[a] + xs[b]) / 2.0;
        let level = done
            .iter()
            .filter(|q| q.above == above)
            .filter(|q| {
                let inside = q.a >= a && q.b <= b;
                let labels_clash =
                    overlaps(q) && (apex_x(q) - cx).abs() < (q.label_w + label_w) / 2.0 + LABEL_PAD;
                inside || labels_clash
            })
            .map(|q| q.level + 1)
            .max()
            .unwrap_or(1);
        cur.above = above;
        cur.level = level;
    }
}

/// Attachment points: on each side of a node, arcs coming in attach on the left half of its
/// outline, arcs going out on the right half, the longest outermost. Returns each arc's offset
/// from its source's and its target's centre.
fn attachments(pending: &[PendingArc], nodes: &[Placed]) -> (Vec<f64>, Vec<f64>) {
    let mut attach: Vec<[Vec<(usize, bool, f64)>; 2]> = vec![[Vec::new(), Vec::new()]; nodes.len()];
    for (i, p) in pending.iter().enumerate() {
        let side = usize::from(!p.above);
        let span = (p.b - p.a) as f64;
        attach[p.src.index()][side].push((i, false, span));
        attach[p.dst.index()][side].push((i, true, span));
    }
    let mut from_dx = vec![0.0f64; pending.len()];
    let mut to_dx = vec![0.0f64; pending.len()];
    for (v, sides) in attach.iter_mut().enumerate() {
        let hw = nodes[v].hw;
        for list in sides.iter_mut() {
            let (mut ins, mut outs): (Vec<_>, Vec<_>) = list.drain(..).partition(|x| x.1);
            // Incoming: longest leftmost. Outgoing: longest rightmost.
            ins.sort_by(|x, y| y.2.total_cmp(&x.2).then(x.0.cmp(&y.0)));
            outs.sort_by(|x, y| x.2.total_cmp(&y.2).then(x.0.cmp(&y.0)));
            let spread = |k: usize, count: usize, lo: f64, hi: f64| {
                if count <= 1 {
                    (lo + hi) / 2.0
                } else {
                    lo + (hi - lo) * k as f64 / (count - 1) as f64
                }
            };
            let (ci, co) = (ins.len(), outs.len());
            for (k, x) in ins.iter().enumerate() {
                to_dx[x.0] = spread(k, ci, -0.72 * hw, -0.12 * hw);
            }
            for (k, x) in outs.iter().enumerate() {
                from_dx[x.0] = spread(k, co, 0.12 * hw, 0.72 * hw);
            }
        }
    }
    (from_dx, to_dx)
}

/// The arcs, drawn on their tracks beyond the bands they span, and the vertical extent of the
/// picture (bands and arcs with their labels).
fn arcs(pending: &[PendingArc], nodes: &[Placed], bands: &Bands) -> (Vec<Arc>, f64, f64) {
    let (from_dx, to_dx) = attachments(pending, nodes);
    let mut arcs = Vec::with_capacity(pending.len());
    let mut min_y = bands.top.iter().copied().fold(0.0, f64::min);
    let mut max_y = bands.bottom.iter().copied().fold(0.0, f64::max);
    for (i, p) in pending.iter().enumerate() {
        let (s, t) = (&nodes[p.src.index()], &nodes[p.dst.index()]);
        let sign = if p.above { -1.0 } else { 1.0 };
        let from = (s.x + from_dx[i], s.y + sign * s.half_height_at(from_dx[i]));
        let to = (t.x + to_dx[i], t.y + sign * t.half_height_at(to_dx[i]));
        let offset = FIRST_TRACK + (p.level - 1) as f64 * TRACK;
        let apex_y = if p.above {
            bands.top[p.a..=p.b]
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                - offset
        } else {
            bands.bottom[p.a..=p.b]
                .iter()
                .copied()
                .fold(f64::NEG_INFINITY, f64::max)
                + offset
        };
        let ctrl_y = (8.0 * apex_y - from.1 - to.1) / 6.0;
        min_y = min_y.min(apex_y - EDGE_FONT);
        max_y = max_y.max(apex_y + EDGE_FONT);
        arcs.push(Arc {
            edge: p.edge,
            from,
            to,
            ctrl_y,
            label: p.label.clone(),
            label_at: ((from.0 + to.0) / 2.0, apex_y),
            style: p.style,
        });
    }
    (arcs, min_y, max_y)
}
