//! Unrolled topologies: the DAG a recurrence becomes after K steps.
//!
//! Nodes are the input, blocks (one per gradient evaluation), weighted combinations,
//! concatenations and the output. Edges run from operand to consumer and carry the operand
//! slot and the coefficient. Nodes are created in execution order, so node indices are a
//! topological order; [`Topology::order`] checks it with petgraph and reports a cycle as an
//! error instead of panicking.

use crate::coef::Coef;
pub use crate::spec::eval::Instance;
use crate::spec::eval::{Evaluator, Registry, Space};
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
            self.learnables
                .get(id)
                .map(|l| l.name.clone())
                .unwrap_or_else(|| format!("p{id}"))
        })
    }

    /// A canonical description of the computation: nodes in topological order, each with its
    /// kind and its operands (as positions in that order) with their coefficients. Two specs
    /// that unroll to the same computation (after constant folding and pruning) describe the
    /// same; a search trains such candidates once.
    pub fn canonical(&self) -> Result<String, SpecError> {
        use std::fmt::Write as _;
        let order = self.order()?;
        let mut pos = vec![usize::MAX; self.graph.node_count()];
        for (i, n) in order.iter().enumerate() {
            pos[n.index()] = i;
        }
        let mut s = format!("reading {}\n", self.reading);
        for (i, &n) in order.iter().enumerate() {
            let kind = match self.graph[n].kind {
                NodeKind::Input => "in",
                NodeKind::Block { .. } => "block",
                NodeKind::Combine => "sum",
                NodeKind::Concat => "cat",
                NodeKind::Output => "out",
            };
            let _ = write!(s, "{i} {kind}");
            let mut terms: Vec<(usize, String)> = self
                .operands(n)
                .into_iter()
                .map(|(o, e)| {
                    let c = match e.coef.as_const() {
                        Some(v) => format!("{v:.9e}"),
                        None => self.coef_label(&e.coef),
                    };
                    (pos[o.index()], c)
                })
                .collect();
            // A sum does not depend on the order of its terms; a concatenation does.
            if matches!(self.graph[n].kind, NodeKind::Combine) {
                terms.sort();
            }
            for (o, c) in terms {
                let _ = write!(s, " {o}*{c}");
            }
            s.push('\n');
        }
        Ok(s)
    }
}

/// A value during unrolling: a linear combination of graph nodes.
type Form = Vec<(NodeIndex, Coef)>;

/// The [`Space`] that builds the graph.
struct Builder {
    graph: DiGraph<Node, Edge>,
    reading: Reading,
    learnables: Vec<Learnable>,
    registry: Registry,
    /// `(input node, block)` by the value the gradient is evaluated at: one block per
    /// evaluation point over the whole unroll, so `grad(z[k-1])` reuses step k-1's block.
    blocks: std::collections::HashMap<String, (NodeIndex, NodeIndex)>,
    /// Blocks made in the current step (their slots).
    slots: usize,
    step: Option<i64>,
}

impl Builder {
    fn add(&mut self, kind: NodeKind) -> NodeIndex {
        let step = self.step.and_then(|k| usize::try_from(k).ok());
        self.graph.add_node(Node {
            kind,
            step,
            names: Vec::new(),
        })
    }

    /// A node holding `form`: the node itself for `1·n`, a new combination otherwise.
    fn materialize(&mut self, form: &Form) -> Option<NodeIndex> {
        match form.as_slice() {
            [] => None,
            [(n, c)] if c.is_one() => Some(*n),
            terms => {
                let comb = self.add(NodeKind::Combine);
                for (slot, (n, c)) in terms.iter().enumerate() {
                    self.graph.add_edge(
                        *n,
                        comb,
                        Edge {
                            slot,
                            coef: c.clone(),
                        },
                    );
                }
                Some(comb)
            }
        }
    }
}

/// A value as a key: its terms sorted by node, with their coefficients.
fn form_key(v: &Form) -> String {
    let mut terms: Vec<_> = v.iter().collect();
    terms.sort_by_key(|(n, _)| n.index());
    format!("{terms:?}")
}

fn zero_error(what: &str, at: Option<crate::error::Pos>) -> SpecError {
    SpecError::new(
        crate::error::ErrorKind::InvalidValue,
        format!("{what} of an expression that is identically zero"),
    )
    .with_hint("a coefficient folds to 0 here (check schedules at this k and initial values)")
    .at("", "", at)
}

use crate::error::SpecError;

impl Space for Builder {
    type V = Form;

    fn input(&mut self) -> Form {
        let x = self.add(NodeKind::Input);
        vec![(x, Coef::constant(1.0))]
    }

    fn zero(&mut self) -> Form {
        Vec::new()
    }

    fn axpy(&mut self, mut acc: Form, c: &Coef, v: &Form) -> Form {
        for (n, cv) in v {
            let add = c.mul(cv);
            match acc.iter_mut().find(|(m, _)| m == n) {
                Some((_, existing)) => *existing = existing.add(&add),
                None => acc.push((*n, add)),
            }
        }
        acc.retain(|(_, c)| !c.is_zero());
        acc
    }

    fn grad(&mut self, _k: i64, v: Form, at: Option<crate::error::Pos>) -> Result<Form, SpecError> {
        let key = form_key(&v);
        let (input, block) = match self.blocks.get(&key) {
            Some(b) => *b,
            None => {
                let input = self
                    .materialize(&v)
                    .ok_or_else(|| zero_error("grad(...)", at))?;
                let slot = self.slots;
                self.slots += 1;
                let step = self.step.and_then(|k| usize::try_from(k).ok()).unwrap_or(0);
                let b = self.add(NodeKind::Block { step, slot });
                self.graph.add_edge(
                    input,
                    b,
                    Edge {
                        slot: 0,
                        coef: Coef::constant(1.0),
                    },
                );
                self.blocks.insert(key, (input, b));
                (input, b)
            }
        };
        Ok(match self.reading {
            Reading::Residual => vec![(block, Coef::constant(-1.0))],
            Reading::Objective => vec![(input, Coef::constant(1.0)), (block, Coef::constant(-1.0))],
        })
    }

    fn cat(&mut self, parts: Vec<Form>, at: Option<crate::error::Pos>) -> Result<Form, SpecError> {
        let mut nodes = Vec::with_capacity(parts.len());
        for p in &parts {
            nodes.push(
                self.materialize(p)
                    .ok_or_else(|| zero_error("cat(...)", at))?,
            );
        }
        let c = self.add(NodeKind::Concat);
        for (slot, n) in nodes.into_iter().enumerate() {
            self.graph.add_edge(
                n,
                c,
                Edge {
                    slot,
                    coef: Coef::constant(1.0),
                },
            );
        }
        Ok(vec![(c, Coef::constant(1.0))])
    }

    fn learnable(&mut self, param: &str, instance: Instance, init: f64) -> usize {
        let (id, new) = self.registry.register(param, &instance, init);
        if new {
            let idx = |i: i64| {
                if i < 0 {
                    format!("m{}", -i)
                } else {
                    i.to_string()
                }
            };
            let name = match &instance {
                Instance::Shared => param.to_string(),
                Instance::Step { k } => format!("{param}_{}", idx(*k)),
                Instance::Edge { k, j } => format!("{param}_{}_{}", idx(*k), idx(*j)),
            };
            self.learnables.push(Learnable {
                name,
                param: param.to_string(),
                instance,
                init,
            });
        }
        id
    }

    fn bind(&mut self, name: &str, v: Form) -> Result<Form, SpecError> {
        let edges = self.graph.edge_count();
        if edges > MAX_EDGES {
            return Err(SpecError::new(
                crate::error::ErrorKind::InvalidValue,
                format!(
                    "the unrolled topology has {edges} edges by `{name}`, more than {MAX_EDGES}"
                ),
            )
            .with_hint(
                "a spec that reads its whole history grows with the square of the steps: \
                 unroll fewer (a DenseNet of 1000 steps has 500,500 edges)",
            ));
        }
        Ok(match self.materialize(&v) {
            Some(n) => {
                self.graph[n].names.push(name.to_string());
                vec![(n, Coef::constant(1.0))]
            }
            None => Vec::new(),
        })
    }

    fn begin_step(&mut self, k: Option<i64>) {
        self.step = k;
        self.slots = 0;
    }
}

/// The most edges an unrolled topology may have (memory and time grow with them; a DenseNet of
/// 1000 steps has 500,500).
pub const MAX_EDGES: usize = 502_000;

/// The most steps [`unroll`] accepts (a DenseNet of this depth already has millions of edges).
pub const MAX_STEPS: usize = 2000;

/// Unrolls `spec` for `steps` steps into a topology, with parameter `overrides`.
///
/// Constants are folded (parallel edges merged, zero edges dropped), values that do not reach
/// the output are pruned, and learnable scalars are numbered in order of first use.
pub fn unroll(
    spec: &crate::spec::Spec,
    steps: usize,
    overrides: &crate::spec::Overrides,
) -> Result<Topology, SpecError> {
    if steps == 0 || steps > MAX_STEPS {
        return Err(SpecError::new(
            crate::error::ErrorKind::InvalidValue,
            format!("the number of steps must be between 1 and {MAX_STEPS}, not {steps}"),
        )
        .with_hint("pass e.g. --steps 8")
        .at(&spec.file, &spec.text, None));
    }
    spec.check_overrides(overrides)?;
    let builder = Builder {
        graph: DiGraph::new(),
        reading: spec.reading,
        learnables: Vec::new(),
        registry: Default::default(),
        blocks: Default::default(),
        slots: 0,
        step: None,
    };
    let mut ev = Evaluator::new(spec, builder, steps, overrides);
    let out = ev.run().map_err(|e| {
        let pos = e.pos;
        if e.file.is_empty() {
            e.at(&spec.file, &spec.text, pos)
        } else {
            e
        }
    })?;
    let mut b = ev.space;
    let out_node = b
        .materialize(&out)
        .ok_or_else(|| zero_error("the output", None).at(&spec.file, &spec.text, None))?;
    b.step = None;
    let output = b.add(NodeKind::Output);
    b.graph.add_edge(
        out_node,
        output,
        Edge {
            slot: 0,
            coef: Coef::constant(1.0),
        },
    );
    prune(spec, steps, b, output)
}

/// Keeps the nodes that reach `output`, in creation order, and renumbers learnables.
fn prune(
    spec: &crate::spec::Spec,
    steps: usize,
    b: Builder,
    output: NodeIndex,
) -> Result<Topology, SpecError> {
    let g = &b.graph;
    let mut live = vec![false; g.node_count()];
    let mut stack = vec![output];
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut live[n.index()], true) {
            continue;
        }
        stack.extend(g.neighbors_directed(n, Direction::Incoming));
    }
    let mut used: Vec<usize> = g
        .edge_references()
        .filter(|e| live[e.target().index()])
        .flat_map(|e| e.weight().coef.learnables())
        .collect();
    used.sort_unstable();
    used.dedup();
    let remap: std::collections::HashMap<usize, usize> = used
        .iter()
        .enumerate()
        .map(|(new, old)| (*old, new))
        .collect();
    let mut graph: DiGraph<Node, Edge> = DiGraph::new();
    let mut map = vec![None; g.node_count()];
    for n in g.node_indices() {
        if live[n.index()] {
            map[n.index()] = Some(graph.add_node(g[n].clone()));
        }
    }
    for e in g.edge_references() {
        if let (Some(s), Some(t)) = (map[e.source().index()], map[e.target().index()]) {
            let coef = e
                .weight()
                .coef
                .remap(&|id| remap.get(&id).copied().unwrap_or(id));
            graph.add_edge(
                s,
                t,
                Edge {
                    slot: e.weight().slot,
                    coef,
                },
            );
        }
    }
    let input = g
        .node_indices()
        .find(|n| g[*n].kind == NodeKind::Input)
        .and_then(|n| map[n.index()])
        .ok_or_else(|| {
            SpecError::new(
                crate::error::ErrorKind::InvalidValue,
                "the output does not depend on the input",
            )
            .with_hint("check the step equations: every path to the output starts at the input")
            .at(&spec.file, &spec.text, None)
        })?;
    let output = map[output.index()].ok_or_else(|| SpecError::internal("output pruned"))?;
    let learnables = used
        .iter()
        .filter_map(|old| b.learnables.get(*old).cloned())
        .collect();
    let topo = Topology {
        name: spec.name.clone(),
        steps,
        reading: spec.reading,
        graph,
        input,
        output,
        learnables,
    };
    topo.order()?;
    Ok(topo)
}
