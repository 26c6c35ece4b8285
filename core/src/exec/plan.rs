//! The execution plan: a topology compiled once into a flat list of operations.
//!
//! Values live in a `Vec<Option<Tensor>>` indexed by operation. Each value carries the number of
//! operations that consume it; when the last one has run, the value is taken out of the vector
//! and dropped, so the tensors held at any moment are exactly the live history the spec needs
//! ([`crate::analysis::memory`] predicts the same count, and the tests check it).

use crate::coef::Coef;
use crate::error::SpecError;
use crate::topology::{NodeKind, Topology};
use petgraph::graph::NodeIndex;
use tch::Tensor;

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

    /// `self · x`, with learnable parameters taken from `params`; `None` when an id is missing.
    pub fn apply(&self, x: &Tensor, params: &[Tensor]) -> Option<Tensor> {
        Some(match self {
            Scale::One => x.shallow_clone(),
            Scale::Const(c) => x * *c,
            Scale::Poly(terms) => x * &Self::poly(terms, params)?,
        })
    }

    /// The polynomial as a scalar tensor (gradients flow to the parameters).
    fn poly(terms: &[(f64, Vec<usize>)], params: &[Tensor]) -> Option<Tensor> {
        let mut acc: Option<Tensor> = None;
        let mut constant = 0.0;
        for (f, mono) in terms {
            if mono.is_empty() {
                constant += f;
                continue;
            }
            let mut t = params.get(mono[0])?.shallow_clone();
            for id in &mono[1..] {
                t = &t * params.get(*id)?;
            }
            let t = if (*f - 1.0).abs() == 0.0 { t } else { t * *f };
            acc = Some(match acc {
                None => t,
                Some(a) => a + t,
            });
        }
        let acc = acc?;
        Some(if constant == 0.0 { acc } else { acc + constant })
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
    /// A unary map [`Kernels::map`] with this key: a stage transition applied to a value that
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

/// What the plan calls out to while running.
pub trait Kernels {
    /// Applies block number `index` (operation `op`) to `x`.
    fn block(&self, index: usize, op: usize, x: &Tensor, train: bool) -> Tensor;
    /// The value of operation `op` once computed (e.g. the post-addition ReLU); identity by
    /// default.
    fn post(&self, _op: usize, t: Tensor) -> Tensor {
        t
    }
    /// True for block operations that read the raw stage input (before the transition) instead
    /// of `z[0]`: the blocks that downsample at a stage change.
    fn reads_raw(&self, _op: usize) -> bool {
        false
    }
    /// Applies map `key` at operation `op` (see [`OpKind::Map`]); identity by default.
    fn map(&self, _key: usize, _op: usize, x: &Tensor, _train: bool) -> Tensor {
        x.shallow_clone()
    }
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

    /// Runs the plan on `entry` (`z[0]`); blocks for which [`Kernels::reads_raw`] holds get
    /// `raw` instead (falling back to `entry`). `params` are the learnable scalars, indexed like
    /// [`Topology::learnables`]. When `trace` is given, the live feature-map units after each
    /// operation are pushed to it (the output aliases its operand and is not counted).
    pub fn run(
        &self,
        entry: Tensor,
        raw: Option<Tensor>,
        params: &[Tensor],
        kernels: &dyn Kernels,
        train: bool,
        mut trace: Option<&mut Vec<usize>>,
    ) -> Result<Tensor, SpecError> {
        let mut values: Vec<Option<Tensor>> = Vec::with_capacity(self.ops.len());
        values.resize_with(self.ops.len(), || None);
        let mut remaining: Vec<usize> = self.ops.iter().map(|o| o.consumers).collect();
        let mut raw_left = self
            .ops
            .iter()
            .enumerate()
            .filter(|(i, o)| matches!(o.kind, OpKind::Block { .. }) && kernels.reads_raw(*i))
            .count();
        let mut raw = if raw_left > 0 { raw } else { None };
        let mut entry = Some(entry);
        let mut live = 0usize;
        let missing = |i: usize| internal(format!("value {i} is not live when it is read"));
        for (i, op) in self.ops.iter().enumerate() {
            let value = {
                let arg = |k: usize| -> Result<&Tensor, SpecError> {
                    let o = op.operands.get(k).copied().ok_or_else(|| missing(i))?;
                    values[o].as_ref().ok_or_else(|| missing(o))
                };
                match &op.kind {
                    OpKind::Input => entry.take().ok_or_else(|| internal("two input nodes"))?,
                    OpKind::Block { index, .. } => {
                        if kernels.reads_raw(i) {
                            raw_left = raw_left.saturating_sub(1);
                            let x = match &raw {
                                Some(r) => kernels.block(*index, i, r, train),
                                None => kernels.block(*index, i, arg(0)?, train),
                            };
                            if raw_left == 0 {
                                raw = None;
                            }
                            x
                        } else {
                            kernels.block(*index, i, arg(0)?, train)
                        }
                    }
                    OpKind::Combine(scales) => {
                        let mut acc: Option<Tensor> = None;
                        for (k, s) in scales.iter().enumerate() {
                            let term = s.apply(arg(k)?, params).ok_or_else(|| {
                                internal(format!("a learnable scalar of operation {i} is missing"))
                            })?;
                            acc = Some(match acc {
                                None => term,
                                Some(a) => a + term,
                            });
                        }
                        acc.ok_or_else(|| missing(i))?
                    }
                    OpKind::Concat => {
                        let parts: Vec<&Tensor> =
                            (0..op.operands.len()).map(&arg).collect::<Result<_, _>>()?;
                        Tensor::cat(&parts, 1)
                    }
                    OpKind::Output => arg(0)?.shallow_clone(),
                    OpKind::Map(key) => kernels.map(*key, i, arg(0)?, train),
                }
            };
            let value = kernels.post(i, value);
            if op.kind != OpKind::Output {
                live += op.units;
            }
            values[i] = Some(value);
            if let Some(t) = trace.as_deref_mut() {
                t.push(live);
            }
            for &o in &op.operands {
                remaining[o] = remaining[o].saturating_sub(1);
                if remaining[o] == 0 && values[o].take().is_some() {
                    live = live.saturating_sub(self.ops[o].units);
                }
            }
        }
        if values
            .iter()
            .enumerate()
            .any(|(i, v)| v.is_some() && i != self.output)
        {
            return Err(internal("a value outlived its consumers"));
        }
        values[self.output]
            .take()
            .ok_or_else(|| missing(self.output))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_fold_constants_and_evaluate_polynomials() {
        assert_eq!(Scale::of(&Coef::constant(1.0)), Scale::One);
        assert_eq!(Scale::of(&Coef::constant(-0.5)), Scale::Const(-0.5));
        // (1 - c0) + 2·c0·c1 at c0 = 0.3, c1 = -2: 0.7 - 1.2 = -0.5
        let c0 = Coef::learnable(0);
        let c = Coef::constant(1.0)
            .add(&c0.scale(-1.0))
            .add(&c0.mul(&Coef::learnable(1)).scale(2.0));
        let params = [
            Tensor::from(0.3f64).set_requires_grad(true),
            Tensor::from(-2.0f64).set_requires_grad(true),
        ];
        let x = Tensor::from_slice(&[1.0f64, 2.0]);
        let y = Scale::of(&c).apply(&x, &params).unwrap();
        let want = c.eval(&[0.3, -2.0]);
        assert!((want + 0.5).abs() < 1e-12);
        let got: Vec<f64> = Vec::try_from(&y).unwrap();
        assert!((got[0] - want).abs() < 1e-12 && (got[1] - 2.0 * want).abs() < 1e-12);
        // d/dc0 Σ y = 3 · (-1 + 2·c1) = -15, d/dc1 Σ y = 3 · 2·c0 = 1.8
        y.sum(tch::Kind::Double).backward();
        let g0 = f64::try_from(params[0].grad()).unwrap();
        let g1 = f64::try_from(params[1].grad()).unwrap();
        assert!(
            (g0 + 15.0).abs() < 1e-12 && (g1 - 1.8).abs() < 1e-12,
            "{g0} {g1}"
        );
        assert!(Scale::of(&Coef::learnable(5)).apply(&x, &params).is_none());
    }
}
