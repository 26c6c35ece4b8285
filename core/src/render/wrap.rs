//! Wide pictures wrap onto further lines, as text does.
//!
//! A picture whose drawing is wider than [`MAX_LINE_WIDTH`] is cut between columns into parts of
//! about equal width, each laid out on its own and drawn below the previous one. A part starts
//! with faded copies ("ghosts") of the earlier values it reads: the state the main line ended
//! with on the line above, and any block or state that a skip connection brings across the cut
//! (Adams–Bashforth 3 reads the two previous blocks). Cuts go after a state, never after a
//! block, so every line starts from a named value; a topology that would need more than
//! [`MAX_GHOSTS`] copies at some cut (DenseNet's concatenations read every earlier map) stays
//! on one line.

use super::layout::{layout, main_nodes, Layout};
use crate::topology::{NodeKind, Topology};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use std::collections::HashMap;

/// The widest a drawing gets before it wraps.
pub(super) const MAX_LINE_WIDTH: f64 = 1200.0;

/// The most earlier values a wrapped line may repeat at its start.
pub(super) const MAX_GHOSTS: usize = 6;

/// One line of a picture as drawn: its topology (a part of the whole for a wrapped picture),
/// its layout, and which of its nodes are ghosts (copies of values drawn on an earlier line).
pub(super) struct DrawnLine {
    pub topo: Topology,
    pub lay: Layout,
    pub ghosts: Vec<bool>,
}

/// The lines `topo` is drawn on: one, or the parts of a wrapped picture, each laid out.
pub(super) fn drawn_lines(topo: &Topology) -> Vec<DrawnLine> {
    let full = layout(topo);
    match wrap(topo, &full) {
        Some(lines) => lines,
        None => vec![DrawnLine {
            ghosts: vec![false; topo.graph.node_count()],
            topo: topo.clone(),
            lay: full,
        }],
    }
}

/// The lines of `topo` when its layout `lay` is too wide for one, else `None`.
fn wrap(topo: &Topology, lay: &Layout) -> Option<Vec<DrawnLine>> {
    let width = lay.max_x - lay.min_x;
    if width <= MAX_LINE_WIDTH {
        return None;
    }
    let g = &topo.graph;
    // The layout's columns, indexed like the graph's nodes.
    let col: Vec<usize> = lay.nodes.iter().map(|p| p.col).collect();
    let ncols = col.iter().copied().max()? + 1;
    let mut main_at: Vec<Option<NodeIndex>> = vec![None; ncols];
    for n in main_nodes(topo, &col) {
        main_at[col[n.index()]] = Some(n);
    }
    // The right edge of each column.
    let mut right = vec![f64::MIN; ncols];
    for (i, p) in lay.nodes.iter().enumerate() {
        right[col[i]] = right[col[i]].max(p.x + p.hw);
    }
    // Each node's value is read up to the column of its latest reader: it crosses every cut
    // from its own column to that one. A cut may come after a state on the main line, never
    // after a block, where few enough values cross it; decided once per column.
    let mut crossing = vec![0usize; ncols];
    for n in g.node_indices() {
        let last = g.neighbors(n).map(|m| col[m.index()]).max().unwrap_or(0);
        for k in &mut crossing[col[n.index()]..last.max(col[n.index()])] {
            *k += 1;
        }
    }
    let valid: Vec<bool> = (0..ncols)
        .map(|c| {
            main_at[c].is_some_and(|n| !matches!(g[n].kind, NodeKind::Block { .. }))
                && crossing[c] <= MAX_GHOSTS
        })
        .collect();
    // Equal shares of the width; one more line when the ghosts push a line past the limit.
    let first_try = (width / MAX_LINE_WIDTH).ceil() as usize;
    for parts in first_try..first_try + 4 {
        let target = width / parts as f64;
        let mut cuts = Vec::new();
        let mut last: Option<usize> = None;
        for k in 1..parts {
            let want = lay.min_x + k as f64 * target;
            let first = last.map_or(1, |c| c + 2);
            let best = (first..ncols.saturating_sub(1))
                .filter(|&c| valid[c])
                .min_by(|&a, &b| (right[a] - want).abs().total_cmp(&(right[b] - want).abs()))?;
            cuts.push(best);
            last = Some(best);
        }
        let mut out = Vec::new();
        let mut lo = 0;
        for hi in cuts.iter().copied().chain([ncols - 1]) {
            out.push(part(topo, &col, &main_at, lo, hi));
            lo = hi + 1;
        }
        let widest = out
            .iter()
            .map(|l| l.lay.max_x - l.lay.min_x)
            .fold(0.0, f64::max);
        if widest <= MAX_LINE_WIDTH {
            return Some(out);
        }
    }
    None
}

/// The part of `topo` in columns `lo..=hi`, with ghosts of the earlier values it reads, laid
/// out.
fn part(
    topo: &Topology,
    col: &[usize],
    main_at: &[Option<NodeIndex>],
    lo: usize,
    hi: usize,
) -> DrawnLine {
    let g = &topo.graph;
    let inside = |n: NodeIndex| (lo..=hi).contains(&col[n.index()]);
    let mut graph = DiGraph::new();
    let mut map: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut ghosts = Vec::new();
    // Ghosts first, in the original order, then the part's own nodes.
    for n in g.node_indices() {
        if col[n.index()] < lo && g.neighbors(n).any(inside) {
            map.insert(n, graph.add_node(g[n].clone()));
            ghosts.push(true);
        }
    }
    for n in g.node_indices().filter(|&n| inside(n)) {
        map.insert(n, graph.add_node(g[n].clone()));
        ghosts.push(false);
    }
    for e in g.edge_references() {
        if inside(e.target()) {
            if let (Some(&s), Some(&t)) = (map.get(&e.source()), map.get(&e.target())) {
                graph.add_edge(s, t, e.weight().clone());
            }
        }
    }
    let pick = |c: Option<usize>, fallback: NodeIndex| {
        c.and_then(|c| main_at.get(c).copied().flatten())
            .and_then(|n| map.get(&n).copied())
            .unwrap_or(fallback)
    };
    let first = NodeIndex::new(0);
    let last = NodeIndex::new(graph.node_count().saturating_sub(1));
    let topo = Topology {
        name: topo.name.clone(),
        steps: topo.steps,
        reading: topo.reading,
        input: pick(
            lo.checked_sub(1),
            map.get(&topo.input).copied().unwrap_or(first),
        ),
        output: pick(Some(hi), map.get(&topo.output).copied().unwrap_or(last)),
        graph,
        learnables: topo.learnables.clone(),
    };
    DrawnLine {
        lay: layout(&topo),
        topo,
        ghosts,
    }
}
