//! Hand-built topologies for the render tests (independent of the spec unroller).

use crate::coef::Coef;
use crate::spec::Reading;
use crate::topology::{Edge, Instance, Learnable, Node, NodeKind, Topology};
use petgraph::graph::{DiGraph, NodeIndex};

/// A small builder over the raw graph.
pub(crate) struct Build {
    graph: DiGraph<Node, Edge>,
    learnables: Vec<Learnable>,
}

impl Build {
    pub(crate) fn new() -> Self {
        Self {
            graph: DiGraph::new(),
            learnables: Vec::new(),
        }
    }

    pub(crate) fn node(
        &mut self,
        kind: NodeKind,
        step: Option<usize>,
        names: &[&str],
    ) -> NodeIndex {
        let names = names.iter().map(|s| s.to_string()).collect();
        self.graph.add_node(Node { kind, step, names })
    }

    pub(crate) fn input(&mut self) -> NodeIndex {
        self.node(NodeKind::Input, None, &["z[0]"])
    }

    pub(crate) fn block(&mut self, step: usize, of: NodeIndex) -> NodeIndex {
        let b = self.node(NodeKind::Block { step, slot: 0 }, Some(step), &[]);
        self.edge(of, b, 0, Coef::constant(1.0));
        b
    }

    pub(crate) fn edge(&mut self, from: NodeIndex, to: NodeIndex, slot: usize, coef: Coef) {
        self.graph.add_edge(from, to, Edge { slot, coef });
    }

    /// A weighted sum holding state `name`.
    pub(crate) fn combine(
        &mut self,
        step: usize,
        name: &str,
        terms: &[(NodeIndex, Coef)],
    ) -> NodeIndex {
        let c = self.node(NodeKind::Combine, Some(step), &[name]);
        for (slot, (n, coef)) in terms.iter().enumerate() {
            self.edge(*n, c, slot, coef.clone());
        }
        c
    }

    pub(crate) fn learnable(&mut self, name: &str, k: i64) -> Coef {
        self.learnables.push(Learnable {
            name: name.to_string(),
            param: name.split('_').next().unwrap_or(name).to_string(),
            instance: Instance::Step { k },
            init: 0.0,
        });
        Coef::learnable(self.learnables.len() - 1)
    }

    pub(crate) fn finish(mut self, name: &str, steps: usize, last: NodeIndex) -> Topology {
        let input = NodeIndex::new(0);
        let output = self.node(NodeKind::Output, None, &[]);
        self.edge(last, output, 0, Coef::constant(1.0));
        Topology {
            name: name.to_string(),
            steps,
            reading: Reading::Residual,
            graph: self.graph,
            input,
            output,
            learnables: self.learnables,
        }
    }
}

fn one() -> Coef {
    Coef::constant(1.0)
}

/// `z[k+1] = z[k] + B_k(z[k])`.
pub(crate) fn resnet(steps: usize) -> Topology {
    let mut b = Build::new();
    let mut z = b.input();
    for k in 0..steps {
        let blk = b.block(k, z);
        z = b.combine(k, &format!("z[{}]", k + 1), &[(z, one()), (blk, one())]);
    }
    b.finish("resnet", steps, z)
}

/// `z[k+1] = (1 + β) z[k] - β z[k-1] + B_k(z[k])` with `z[-1] = z[0]`.
pub(crate) fn heavy_ball(steps: usize, beta: f64) -> Topology {
    let mut b = Build::new();
    let x = b.input();
    let (mut prev, mut z) = (x, x);
    for k in 0..steps {
        let blk = b.block(k, z);
        let name = format!("z[{}]", k + 1);
        let next = if k == 0 {
            b.combine(k, &name, &[(z, one()), (blk, one())])
        } else {
            b.combine(
                k,
                &name,
                &[
                    (z, Coef::constant(1.0 + beta)),
                    (prev, Coef::constant(-beta)),
                    (blk, one()),
                ],
            )
        };
        (prev, z) = (z, next);
    }
    b.finish("heavy_ball", steps, z)
}

/// LM-ResNet: `z[k+1] = (1 - c_k) z[k] + c_k z[k-1] + B_k(z[k])`, learnable `c_k`.
pub(crate) fn lm_resnet(steps: usize) -> Topology {
    let mut b = Build::new();
    let x = b.input();
    let (mut prev, mut z) = (x, x);
    for k in 0..steps {
        let blk = b.block(k, z);
        let name = format!("z[{}]", k + 1);
        let next = if k == 0 {
            b.combine(k, &name, &[(z, one()), (blk, one())])
        } else {
            let c = b.learnable(&format!("c_{k}"), k as i64);
            let one_minus = one().add(&c.scale(-1.0));
            b.combine(k, &name, &[(z, one_minus), (prev, c), (blk, one())])
        };
        (prev, z) = (z, next);
    }
    b.finish("lm_resnet", steps, z)
}

/// Nesterov with `β_k = (k - 1)/(k + 2)`: `y[k] = z[k] + β_k (z[k] - z[k-1])`,
/// `z[k+1] = y[k] + B_k(y[k])`.
pub(crate) fn nesterov(steps: usize) -> Topology {
    let mut b = Build::new();
    let x = b.input();
    let (mut prev, mut z) = (x, x);
    for k in 0..steps {
        let beta = (k as f64 - 1.0) / (k as f64 + 2.0);
        let y = if k < 2 {
            z
        } else {
            b.combine(
                k,
                &format!("y[{k}]"),
                &[
                    (z, Coef::constant(1.0 + beta)),
                    (prev, Coef::constant(-beta)),
                ],
            )
        };
        let blk = b.block(k, y);
        let next = b.combine(k, &format!("z[{}]", k + 1), &[(y, one()), (blk, one())]);
        (prev, z) = (z, next);
    }
    b.finish("nesterov", steps, z)
}

/// DenseNet-like: `z[k+1] = cat(x, B_0, ..., B_k)`, `B_k` reads `z[k]`.
pub(crate) fn dense_concat(steps: usize) -> Topology {
    let mut b = Build::new();
    let x = b.input();
    let mut z = x;
    let mut feats = vec![x];
    for k in 0..steps {
        let blk = b.block(k, z);
        feats.push(blk);
        let cat = b.node(NodeKind::Concat, Some(k), &[&format!("z[{}]", k + 1)]);
        for (slot, f) in feats.iter().enumerate() {
            b.edge(*f, cat, slot, one());
        }
        z = cat;
    }
    b.finish("dense_concat", steps, z)
}

/// Every block output summed into every later state with its own learnable weight:
/// `z[k+1] = x + Σ_{j≤k} a_k_j B_j`.
pub(crate) fn dense_sum(steps: usize) -> Topology {
    let mut b = Build::new();
    let x = b.input();
    let mut z = x;
    let mut blocks = Vec::new();
    for k in 0..steps {
        blocks.push(b.block(k, z));
        let mut terms = vec![(x, one())];
        for (j, blk) in blocks.clone().into_iter().enumerate() {
            terms.push((blk, b.learnable(&format!("a_{k}_{j}"), k as i64)));
        }
        z = b.combine(k, &format!("z[{}]", k + 1), &terms);
    }
    b.finish("dense_sum", steps, z)
}

/// Two gradient evaluations per step (a midpoint method), so columns hold two nodes:
/// `m[k] = z[k] + 0.5 B_k(z[k])`, `z[k+1] = z[k] + B_k.1(m[k])`, with a side branch.
pub(crate) fn midpoint(steps: usize) -> Topology {
    let mut b = Build::new();
    let mut z = b.input();
    for k in 0..steps {
        let b0 = b.block(k, z);
        let m = b.combine(
            k,
            &format!("m[{k}]"),
            &[(z, one()), (b0, Coef::constant(0.5))],
        );
        let b1 = b.node(NodeKind::Block { step: k, slot: 1 }, Some(k), &[]);
        b.edge(m, b1, 0, one());
        // An unused-by-the-main-path value in the same column as b1.
        let side = b.combine(
            k,
            &format!("s[{k}]"),
            &[(z, Coef::constant(-2.0)), (b0, one())],
        );
        z = b.combine(
            k,
            &format!("z[{}]", k + 1),
            &[(z, one()), (b1, one()), (side, Coef::constant(0.25))],
        );
    }
    b.finish("midpoint", steps, z)
}

/// Only the input, which is also the output's operand.
pub(crate) fn trivial() -> Topology {
    let mut b = Build::new();
    let x = b.input();
    b.finish("identity", 0, x)
}

/// One node that is both input and output.
pub(crate) fn single_node() -> Topology {
    let mut b = Build::new();
    let x = b.input();
    Topology {
        name: "single".into(),
        steps: 0,
        reading: Reading::Residual,
        graph: b.graph,
        input: x,
        output: x,
        learnables: Vec::new(),
    }
}
