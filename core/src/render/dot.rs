//! Graphviz DOT output.

use super::layout::{edge_style, main_path, EdgeStyle};
use crate::topology::{NodeKind, Topology};
use petgraph::visit::EdgeRef;

/// Escapes `s` for a double-quoted DOT string (`\` and `"`; newlines become `\n`).
fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c => out.push(c),
        }
    }
    out
}

/// Graphviz DOT for `topo`: left to right, one statement per node (`n<index>`), one per edge.
///
/// Inputs and outputs are ellipses, blocks filled boxes, weighted sums small circles showing
/// `Σ` and the state they hold, concatenations filled boxes showing `cat` and their state.
/// An edge is labelled with its coefficient unless the coefficient is exactly 1; negative
/// constants are drawn red and dashed, coefficients with learnable parameters purple.
/// Edges of the longest path get a high weight so Graphviz keeps that path straight.
pub fn to_dot(topo: &Topology) -> String {
    let g = &topo.graph;
    let mut out = String::new();
    out.push_str(&format!("digraph \"{}\" {{\n", dot_escape(&topo.name)));
    out.push_str(&format!(
        "  graph [rankdir=LR, labelloc=t, fontname=\"DejaVu Sans\", fontsize=14, \
         nodesep=0.25, ranksep=0.3, label=\"{}\"];\n",
        dot_escape(&super::svg::caption(topo))
    ));
    out.push_str("  node [fontname=\"DejaVu Sans\", fontsize=11];\n");
    out.push_str("  edge [fontname=\"DejaVu Sans\", fontsize=9, arrowsize=0.6];\n");
    for idx in g.node_indices() {
        let node = &g[idx];
        let attrs = match &node.kind {
            NodeKind::Input | NodeKind::Output => format!(
                "label=\"{}\", shape=ellipse, style=filled, fillcolor=\"#e3f2fd\", \
                 color=\"#1565c0\"",
                dot_escape(&node.label())
            ),
            NodeKind::Block { .. } => format!(
                "label=\"{}\", shape=box, style=\"rounded,filled\", fillcolor=\"#ffe0b2\", \
                 color=\"#e65100\"",
                dot_escape(&node.label())
            ),
            NodeKind::Combine => {
                let label = if node.names.is_empty() {
                    "Σ".to_string()
                } else {
                    format!("Σ\n{}", node.names.join("\n"))
                };
                format!(
                    "label=\"{}\", shape=circle, margin=0.02, fontsize=9, style=filled, \
                     fillcolor=\"#ffffff\", color=\"#455a64\"",
                    dot_escape(&label)
                )
            }
            NodeKind::Concat => {
                let label = if node.names.is_empty() {
                    "cat".to_string()
                } else {
                    format!("cat\n{}", node.names.join("\n"))
                };
                format!(
                    "label=\"{}\", shape=box, margin=\"0.05,0.02\", fontsize=9, style=filled, \
                     fillcolor=\"#e8f5e9\", color=\"#2e7d32\"",
                    dot_escape(&label)
                )
            }
        };
        out.push_str(&format!("  n{} [{attrs}];\n", idx.index()));
    }
    let on_main = main_path(topo);
    let mut edges: Vec<_> = g.edge_references().collect();
    edges.sort_by_key(|e| (e.target().index(), e.weight().slot, e.source().index()));
    for e in edges {
        let mut attrs = Vec::new();
        let coef = &e.weight().coef;
        if !coef.is_one() {
            attrs.push(format!("label=\"{}\"", dot_escape(&topo.coef_label(coef))));
        }
        match edge_style(coef) {
            EdgeStyle::Positive => {}
            EdgeStyle::Negative => {
                attrs.push("color=\"#c62828\", fontcolor=\"#c62828\", style=dashed".into())
            }
            EdgeStyle::Learnable => attrs.push("color=\"#6a1b9a\", fontcolor=\"#6a1b9a\"".into()),
        }
        if on_main.contains(&(e.source(), e.target())) {
            attrs.push("weight=10".into());
        }
        let attrs = if attrs.is_empty() {
            String::new()
        } else {
            format!(" [{}]", attrs.join(", "))
        };
        out.push_str(&format!(
            "  n{} -> n{}{attrs};\n",
            e.source().index(),
            e.target().index()
        ));
    }
    out.push_str("}\n");
    out
}
