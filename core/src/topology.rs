//! Unrolled topologies: the DAG a recurrence becomes after K steps.
//!
//! Nodes are the input, blocks (one per gradient evaluation), weighted combinations,
//! concatenations and the output. Edges run from operand to consumer and carry the operand
//! slot and the coefficient. Nodes are created in execution order, so node indices are a
//! topological order; [`Topology::order`] checks it with petgraph and reports a cycle as an
//! error instead of panicking.

use crate::coef::Coef;
use crate::spec::Reading;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::Serialize;

/// What a node computes.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NodeKind {
    /// The network input `z[0]`.
    Input,
    /// A learned block `B` applied to its single operand; `slot` numbers the distinct gradient
    /// evaluations of step `step` (usually 0).
    Block { step: usize, slot: usize },
    /// A weighted sum `Σ coef_i · operand_i`.
    Combine,
    /// Channel concatenation of the operands in slot order.
    Concat,
    /// The network output (identity on its single operand).
    Output,
}

/// A node of the unrolled graph.
#[derive(Clone, Debug, Serialize)]
pub struct Node {
    pub kind: NodeKind,
    /// The step during which the node is computed (`None` for input and output, and for
    /// values computed by `init`).
    pub step: Option<usize>,
    /// The state values this node holds, e.g. `["z[3]", "y[2]"]` (empty for anonymous values).
    pub names: Vec<String>,
}

impl Node {
    /// A short label for pictures: `x`, `B3`, `B3.1`, `z[4]`, `cat`, `out`.
    pub fn label(&self) -> String {
        match &self.kind {
            NodeKind::Input => "x".into(),
            NodeKind::Output => "out".into(),
            NodeKind::Block { step, slot: 0 } => format!("B{step}"),
            NodeKind::Block { step, slot } => format!("B{step}.{slot}"),
            NodeKind::Combine => self.names.first().cloned().unwrap_or_else(|| "Σ".into()),
            NodeKind::Concat => self.names.first().cloned().unwrap_or_else(|| "cat".into()),
        }
    }
}

/// An operand edge.
#[derive(Clone, Debug, Serialize)]
pub struct Edge {
    /// Position of the operand in its consumer (concatenation order, summation order).
    pub slot: usize,
    /// The coefficient (1 for block inputs, concatenation and output edges).
    pub coef: Coef,
}

/// Which instance of a learnable parameter a scalar is.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "per", rename_all = "snake_case")]
pub enum Instance {
    /// One scalar shared by every step.
    Shared,
    /// One scalar per step.
    Step { k: i64 },
    /// One scalar per edge of a history sum: step `k`, source index `j`.
    Edge { k: i64, j: i64 },
}

/// A learnable scalar that appears in some coefficient.
#[derive(Clone, Debug, Serialize)]
pub struct Learnable {
    /// Stable, sanitised name (letters, digits, `_`), usable as a VarStore path component.
    pub name: String,
    /// The parameter of the spec it comes from.
    pub param: String,
    pub instance: Instance,
    /// Its initial value.
    pub init: f64,
}

/// An unrolled spec.
#[derive(Clone, Debug)]
pub struct Topology {
    pub name: String,
    pub steps: usize,
    pub reading: Reading,
    pub graph: DiGraph<Node, Edge>,
    pub input: NodeIndex,
    pub output: NodeIndex,
    pub learnables: Vec<Learnable>,
}

impl Topology {
    /// Number of learned blocks.
    pub fn block_count(&self) -> usize {
        self.graph
            .node_weights()
            .filter(|n| matches!(n.kind, NodeKind::Block { .. }))
            .count()
    }

    /// The operands of `node`, sorted by slot.
    pub fn operands(&self, node: NodeIndex) -> Vec<(NodeIndex, &Edge)> {
        let mut ops: Vec<(NodeIndex, &Edge)> = self
            .graph
            .edges_directed(node, Direction::Incoming)
            .map(|e| (e.source(), e.weight()))
            .collect();
        ops.sort_by_key(|(_, e)| e.slot);
        ops
    }

    /// Nodes in execution (topological) order.
    pub fn order(&self) -> Result<Vec<NodeIndex>, crate::error::SpecError> {
        petgraph::algo::toposort(&self.graph, None).map_err(|cycle| {
            crate::error::SpecError::internal(format!(
                "the unrolled graph has a cycle through node {}",
                self.graph[cycle.node_id()].label()
            ))
        })
    }

    /// Human-readable coefficient of an edge.
    pub fn coef_label(&self, coef: &Coef) -> String {
        coef.display_with(&|id| {
            self.learnables.get(id).map(|l| l.name.clone()).unwrap_or_else(|| format!("p{id}"))
        })
    }
}
