//! The execution plan: a topology compiled once into a flat list of operations.
//!
//! This is the structural part, free of libtorch: the runtime executor
//! ([`crate::exec::plan`], feature `torch`) interprets a [`Plan`], and the code generator
//! ([`crate::codegen`], used by the derive macro and `optarch codegen`) emits straight-line
//! Rust from the same [`Plan`]. Each value carries the number of operations that consume it;
//! after its last consumer has run the value is freed, so the values held at any moment are
//! exactly the live history the spec needs ([`crate::analysis::memory`] predicts the same
//! count, and the tests check it).

use crate::coef::Coef;
use crate::error::SpecError;
use crate::topology::{NodeKind, Topology};
use petgraph::graph::NodeIndex;

/// A coefficient ready to multiply a tensor.
#[derive(Clone, Debug, PartialEq)]
pub enum Scale {
    /// Exactly 1: no multiplication at all.
    One,
    /// A fixed number (a constant or a schedule's value at this step).
    Const(f64),
    /// A polynomial in learnable scalars: `Σ factor · Π params[id]` (ids index
    /// [`Topology::learnables`]).
    Poly(Vec<(f64, Vec<usize>)>),
}

impl Scale {
    /// The scale of a coefficient.
    pub fn of(c: &Coef) -> Scale {
        match c.as_const() {
            Some(_) if c.is_one() => Scale::One,
            Some(v) => Scale::Const(v),
            None => Scale::Poly(c.terms().map(|(m, f)| (f, m.to_vec())).collect()),
        }
    }
}

/// What an operation computes.
#[derive(Clone, Debug, PartialEq)]
pub enum OpKind {
    /// The stage input `z[0]`.
    Input,
    /// Learned block number `index` (blocks are numbered in execution order).
    Block {
        step: usize,
        slot: usize,
        index: usize,
    },
    /// `Σ scale_i · operand_i`.
    Combine(Vec<Scale>),
    /// Channel concatenation of the operands in slot order.
    Concat,
    /// The stage output: its single operand, unchanged.
    Output,
    /// A unary map `Kernels::map` (in `exec::plan`) with this key: a stage transition applied to a value that
    /// crosses a stage boundary (inserted by [`Plan::insert_maps`]).
    Map(usize),
}

/// One operation of a plan.
#[derive(Clone, Debug)]
pub struct Op {
    pub kind: OpKind,
    /// The topology node it comes from.
    pub node: NodeIndex,
    /// Operands (indices of earlier operations), in slot order.
    pub operands: Vec<usize>,
    /// How many operations read this value.
    pub consumers: usize,
    /// Feature-map units the value holds (a concatenation of n maps counts n), as in
    /// [`crate::analysis::memory`].
    pub units: usize,
    /// The state values the node holds (`z[3]`, ...).
    pub names: Vec<String>,
    /// The step during which the node is computed (`None` for the input, the output and
    /// values computed by `init`).
    pub step: Option<usize>,
}

/// A topology compiled for execution.
#[derive(Clone, Debug)]
pub struct Plan {
    pub ops: Vec<Op>,
    /// The index of the output operation (the last one).
    pub output: usize,
    /// Number of blocks.
    pub blocks: usize,
}

fn internal(msg: impl Into<String>) -> SpecError {
    SpecError::internal(msg)
}

impl Plan {
    /// Compiles `t`: execution order, ordered operands with scales, consumer counts.
    pub fn compile(t: &Topology) -> Result<Plan, SpecError> {
        let order = t.order()?;
        let mut pos = vec![usize::MAX; t.graph.node_count()];
        for (i, n) in order.iter().enumerate() {
            pos[n.index()] = i;
        }
        let mut ops: Vec<Op> = Vec::with_capacity(order.len());
        let mut blocks = 0;
        for &n in &order {
            let node = &t.graph[n];
            let operands_e = t.operands(n);
            let mut operands = Vec::with_capacity(operands_e.len());
            for (o, _) in &operands_e {
                let p = pos[o.index()];
                if p >= ops.len() {
                    return Err(internal("an operand comes after its consumer"));
                }
                operands.push(p);
            }
            let kind = match node.kind {
                NodeKind::Input => OpKind::Input,
                NodeKind::Block { step, slot } => {
                    blocks += 1;
                    OpKind::Block {
                        step,
                        slot,
                        index: blocks - 1,
                    }
                }
                NodeKind::Combine => {
                    OpKind::Combine(operands_e.iter().map(|(_, e)| Scale::of(&e.coef)).collect())
                }
                NodeKind::Concat => OpKind::Concat,
                NodeKind::Output => OpKind::Output,
            };
            let arity_ok = match kind {
                OpKind::Input => operands.is_empty(),
                OpKind::Block { .. } | OpKind::Output | OpKind::Map(_) => operands.len() == 1,
                OpKind::Combine(_) | OpKind::Concat => !operands.is_empty(),
            };
            if !arity_ok {
                return Err(internal(format!(
                    "node {} has {} operands",
                    node.label(),
                    operands.len()
                )));
            }
            let units = match kind {
                OpKind::Concat => operands.iter().map(|&o| ops[o].units).sum(),
                OpKind::Combine(_) | OpKind::Output | OpKind::Map(_) => {
                    operands.first().map(|&o| ops[o].units).unwrap_or(1)
                }
                _ => 1,
            };
            for &o in &operands {
                ops[o].consumers += 1;
            }
            ops.push(Op {
                kind,
                node: n,
                operands,
                consumers: 0,
                units,
                names: node.names.clone(),
                step: node.step,
            });
        }
        let output = ops
            .len()
            .checked_sub(1)
            .ok_or_else(|| internal("empty plan"))?;
        if ops[output].kind != OpKind::Output || pos[t.output.index()] != output {
            return Err(internal("the output is not the last operation"));
        }
        Ok(Plan {
            ops,
            output,
            blocks,
        })
    }

    /// A new plan in which operand `k` of operation `i` is read through a map when
    /// `f(i, k, operand)` returns its key. One map operation is inserted per (value, key), just
    /// before its first reader, and consumer counts are recomputed, so a value that is only
    /// read through a map is freed as soon as the map has run.
    pub fn insert_maps(&self, mut f: impl FnMut(usize, usize, usize) -> Option<usize>) -> Plan {
        let mut ops: Vec<Op> = Vec::with_capacity(self.ops.len());
        let mut new_of = vec![0usize; self.ops.len()];
        let mut cache: std::collections::HashMap<(usize, usize), usize> = Default::default();
        for (i, op) in self.ops.iter().enumerate() {
            let mut operands = Vec::with_capacity(op.operands.len());
            for (k, &o) in op.operands.iter().enumerate() {
                let src = new_of[o];
                match f(i, k, o) {
                    None => operands.push(src),
                    Some(key) => {
                        let m = *cache.entry((o, key)).or_insert_with(|| {
                            ops.push(Op {
                                kind: OpKind::Map(key),
                                node: self.ops[o].node,
                                operands: vec![src],
                                consumers: 0,
                                units: ops[src].units,
                                names: Vec::new(),
                                step: op.step,
                            });
                            ops.len() - 1
                        });
                        operands.push(m);
                    }
                }
            }
            let mut new = op.clone();
            new.operands = operands;
            new.consumers = 0;
            ops.push(new);
            new_of[i] = ops.len() - 1;
        }
        for i in 0..ops.len() {
            for k in 0..ops[i].operands.len() {
                let o = ops[i].operands[k];
                ops[o].consumers += 1;
            }
        }
        Plan {
            ops,
            output: new_of[self.output],
            blocks: self.blocks,
        }
    }

    /// The input operation (index).
    pub fn input(&self) -> Option<usize> {
        self.ops.iter().position(|o| o.kind == OpKind::Input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_fold_constants() {
        assert_eq!(Scale::of(&Coef::constant(1.0)), Scale::One);
        assert_eq!(Scale::of(&Coef::constant(-0.5)), Scale::Const(-0.5));
        let c = Coef::constant(1.0).add(&Coef::learnable(0).scale(-1.0));
        assert_eq!(
            Scale::of(&c),
            Scale::Poly(vec![(1.0, vec![]), (-1.0, vec![0])])
        );
    }
}
