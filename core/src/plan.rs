//! The execution plan: a topology compiled once into a flat list of operations.
//!
//! This is the structural part, free of libtorch: the runtime executor
//! ([`crate::exec::plan`], feature `torch`) interprets a [`Plan`], and the code generator
//! ([`crate::codegen`], used by the derive macro and `optarch codegen`) emits straight-line
//! Rust from the same [`Plan`]. Everything both of them need to agree on is decided here, once:
//!
//! * the order of operations ([`schedule`]: a topological order chosen to hold as few feature
//!   maps at once as it can) and each operation's ordered operands with their [`Scale`]s;
//! * the values freed after each operation ([`Op::frees`]): a value is freed right after its
//!   last reader, so the values held at any moment are exactly the live history the spec needs
//!   ([`Plan::live`] counts them, [`crate::analysis::memory`] reports that count, and the tests
//!   check that the executor holds the same);
//! * each block's weight name ([`block_name`], the VarStore path component of its variables);
//! * the order in which a polynomial coefficient is computed ([`crate::coef::fold`], shared with
//!   the theory and the analyses).

use crate::coef::Coef;
pub use crate::coef::PolyAlgebra;
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
    /// Folds the polynomial in the one order every consumer uses ([`crate::coef::fold`]).
    pub fn fold<A: PolyAlgebra>(
        terms: &[(f64, Vec<usize>)],
        alg: &mut A,
    ) -> Result<Option<A::Value>, A::Error> {
        crate::coef::fold(terms.iter().map(|(f, m)| (m.as_slice(), *f)), alg)
    }

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
    /// Learned block number `index` (blocks are numbered in execution order), whose weights
    /// live under `name` ([`block_name`] of its step and slot).
    Block {
        step: usize,
        slot: usize,
        index: usize,
        name: String,
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
    /// The values (operation indices) whose last reader is this operation, each once, in
    /// operand order: they are freed right after it has run. The output is never freed.
    pub frees: Vec<usize>,
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

/// The name of the variables of the block of step `step`, evaluation `slot` of that step:
/// `b{step}`, or `b{step}_{slot}` for a step's later gradient evaluations.
pub fn block_name(step: usize, slot: usize) -> String {
    if slot == 0 {
        format!("b{step}")
    } else {
        format!("b{step}_{slot}")
    }
}

/// Sets the consumer counts and the values freed after each operation.
fn link(ops: &mut [Op], output: usize) {
    let mut last = vec![usize::MAX; ops.len()];
    let mut consumers = vec![0; ops.len()];
    for (i, op) in ops.iter().enumerate() {
        for &o in &op.operands {
            last[o] = i;
            consumers[o] += 1;
        }
    }
    for (i, op) in ops.iter_mut().enumerate() {
        op.consumers = consumers[i];
        let mut frees = Vec::new();
        for &o in &op.operands {
            if last[o] == i && o != output && !frees.contains(&o) {
                frees.push(o);
            }
        }
        op.frees = frees;
    }
}

/// The dependency structure [`schedule`] works on: nodes by index, operands with multiplicity.
struct Deps {
    /// Operands of each node (node indices, in slot order, a value read twice listed twice).
    operands: Vec<Vec<usize>>,
    /// The distinct operands of each node, each with the number of times the node reads it.
    distinct: Vec<Vec<(usize, usize)>>,
    /// Readers of each node, one entry per operand edge.
    readers: Vec<Vec<usize>>,
    /// Feature-map units of each node's value (0 for the output, an alias of its operand).
    units: Vec<usize>,
    /// Units each value holds when it is freed (the output, never freed, those of its operand).
    held: Vec<usize>,
}

impl Deps {
    fn of(t: &Topology, base: &[NodeIndex]) -> Deps {
        let n = t.graph.node_count();
        let mut operands = vec![Vec::new(); n];
        let mut distinct: Vec<Vec<(usize, usize)>> = vec![Vec::new(); n];
        let mut readers = vec![Vec::new(); n];
        let mut held = vec![1usize; n];
        let mut units = vec![1usize; n];
        for &v in base {
            let i = v.index();
            operands[i] = t.operands(v).iter().map(|(o, _)| o.index()).collect();
            let mut seen = std::collections::BTreeMap::new();
            for &o in &operands[i] {
                readers[o].push(i);
                *seen.entry(o).or_insert(0usize) += 1;
            }
            distinct[i] = seen.into_iter().collect();
            held[i] = match t.graph[v].kind {
                NodeKind::Concat => operands[i].iter().map(|&o| held[o]).sum(),
                NodeKind::Combine | NodeKind::Output => {
                    operands[i].first().map(|&o| held[o]).unwrap_or(1)
                }
                _ => 1,
            };
            units[i] = if t.graph[v].kind == NodeKind::Output {
                0
            } else {
                held[i]
            };
        }
        Deps {
            operands,
            distinct,
            readers,
            units,
            held,
        }
    }

    /// The live units after each node of `order` has run (before its operands are freed), as
    /// [`Plan::live`] counts them; `None` when `order` is not a topological order of every node.
    fn live(&self, order: &[usize]) -> Option<Vec<usize>> {
        let mut left: Vec<usize> = self.readers.iter().map(Vec::len).collect();
        let mut done = vec![false; self.units.len()];
        let mut live = 0usize;
        let mut out = Vec::with_capacity(order.len());
        for &i in order {
            if std::mem::replace(done.get_mut(i)?, true)
                || self.operands[i].iter().any(|&o| !done[o])
            {
                return None;
            }
            live += self.units[i];
            out.push(live);
            for &o in &self.operands[i] {
                left[o] -= 1;
                if left[o] == 0 {
                    live -= self.held[o];
                }
            }
        }
        (order.len() == self.units.len()).then_some(out)
    }

    /// A greedy list schedule: among the nodes whose operands have all been computed, run the
    /// one that adds the fewest units once what it frees is subtracted, then the one that adds
    /// the fewest units, then the one the unroller made first.
    fn greedy(&self) -> Vec<usize> {
        let n = self.units.len();
        let mut missing: Vec<usize> = self.operands.iter().map(Vec::len).collect();
        let mut left: Vec<usize> = self.readers.iter().map(Vec::len).collect();
        let mut ready: Vec<usize> = (0..n).filter(|&i| missing[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        let key = |i: usize, left: &[usize]| {
            let freed: usize = self.distinct[i]
                .iter()
                .filter(|&&(o, times)| left[o] == times)
                .map(|&(o, _)| self.held[o])
                .sum();
            let add = self.units[i];
            // (net growth, growth, creation order), compared as a tuple
            (add as i64 - freed as i64, add, i)
        };
        while let Some((pos, _)) = ready
            .iter()
            .enumerate()
            .min_by_key(|&(_, &i)| key(i, &left))
        {
            let i = ready.swap_remove(pos);
            order.push(i);
            for &o in &self.operands[i] {
                left[o] -= 1;
            }
            for &r in &self.readers[i] {
                missing[r] -= 1;
                if missing[r] == 0 {
                    ready.push(r);
                }
            }
        }
        order
    }
}

/// The order in which a plan computes the nodes of `t`: the analysis
/// ([`crate::analysis::memory`]), the executor ([`Plan::run`]) and the generated code all follow
/// it.
///
/// Any topological order computes the same values; they differ in how many feature maps are
/// held at once (a value is freed right after its last reader). Three candidates are measured
/// and the first with the smallest peak of live units is kept:
///
/// 1. [`Topology::order`] (petgraph's depth-first toposort, the order plans had before);
/// 2. the order in which the unroller created the nodes (step by step, equation by equation);
/// 3. a greedy list schedule that always runs, among the nodes whose operands are ready, the
///    one that grows the live units least once the values it reads for the last time are
///    freed (ties: the one that adds fewest units, then the one created first).
///
/// So the peak is never above the toposort's, and an average such as `m[k+1] = a·m[k] +
/// (1−a)·z[k+1]` is folded in as soon as `z[k+1]` exists (4 live maps at any number of steps,
/// where the toposort ran the whole `z` chain first and held every `z[k]`).
pub fn schedule(t: &Topology) -> Result<Vec<NodeIndex>, SpecError> {
    let base = t.order()?;
    let deps = Deps::of(t, &base);
    let base: Vec<usize> = base.iter().map(|n| n.index()).collect();
    let created: Vec<usize> = (0..deps.units.len()).collect();
    let mut best: Option<(usize, Vec<usize>)> = None;
    for order in [base, created, deps.greedy()] {
        let Some(peak) = deps.live(&order).map(|l| l.into_iter().max().unwrap_or(0)) else {
            continue;
        };
        if best.as_ref().is_none_or(|(p, _)| peak < *p) {
            best = Some((peak, order));
        }
    }
    let (_, order) = best.ok_or_else(|| internal("no execution order"))?;
    Ok(order.into_iter().map(NodeIndex::new).collect())
}

impl Plan {
    /// Compiles `t`: execution order ([`schedule`]), ordered operands with scales, consumer
    /// counts.
    pub fn compile(t: &Topology) -> Result<Plan, SpecError> {
        let order = schedule(t)?;
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
                        name: block_name(step, slot),
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
            ops.push(Op {
                kind,
                node: n,
                operands,
                consumers: 0,
                frees: Vec::new(),
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
        link(&mut ops, output);
        Ok(Plan {
            ops,
            output,
            blocks,
        })
    }

    /// A new plan in which operand `k` of operation `i` is read through a map when
    /// `f(i, k, operand)` returns its key. One map operation is inserted per (value, key), just
    /// before its first reader, and consumer counts and frees are recomputed, so a value that
    /// is only read through a map is freed as soon as the map has run.
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
                                frees: Vec::new(),
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
            ops.push(new);
            new_of[i] = ops.len() - 1;
        }
        let output = new_of[self.output];
        link(&mut ops, output);
        Plan {
            ops,
            output,
            blocks: self.blocks,
        }
    }

    /// The live feature-map units after each operation has run, before the values it frees
    /// are dropped: the count [`Plan::run`] traces (the output aliases its operand and adds
    /// nothing). Its maximum is the peak that [`crate::analysis::memory`] reports.
    pub fn live(&self) -> Vec<usize> {
        let mut live = 0usize;
        let mut out = Vec::with_capacity(self.ops.len());
        for op in &self.ops {
            if op.kind != OpKind::Output {
                live += op.units;
            }
            out.push(live);
            for &o in &op.frees {
                live = live.saturating_sub(self.ops.get(o).map_or(0, |x| x.units));
            }
        }
        out
    }

    /// The input operation (index).
    pub fn input(&self) -> Option<usize> {
        self.ops.iter().position(|o| o.kind == OpKind::Input)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan_of(text: &str, steps: usize) -> Plan {
        let spec = crate::spec::load_str("t.yaml", text).unwrap();
        let topo = crate::topology::unroll(&spec, steps, &Default::default()).unwrap();
        Plan::compile(&topo).unwrap()
    }

    /// Every value but the output is freed exactly once, right after its last reader, even
    /// when that reader reads it twice (`cat(z[k], z[k])`).
    #[test]
    fn every_value_is_freed_once_after_its_last_reader() {
        let specs = [
            "name: c\nstate: [z]\nstep:\n  z[k+1]: cat(z[k], z[k]) \noutput: z\n",
            "name: hb\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k]) + 0.5 * (z[k] - z[k-1])\noutput: z\n",
        ];
        for text in specs {
            let plan = plan_of(text, 3);
            let mut freed = vec![0; plan.ops.len()];
            for (i, op) in plan.ops.iter().enumerate() {
                for &o in &op.frees {
                    freed[o] += 1;
                    let last = plan.ops.iter().rposition(|x| x.operands.contains(&o));
                    assert_eq!(last, Some(i), "{text}: value {o} freed at {i}");
                }
            }
            for (o, n) in freed.iter().enumerate() {
                let want = usize::from(o != plan.output);
                assert_eq!(*n, want, "{text}: value {o} freed {n} times");
            }
        }
        let cat = plan_of(specs[0], 2);
        let op = cat.ops.iter().find(|o| o.kind == OpKind::Concat).unwrap();
        assert_eq!(op.operands[0], op.operands[1]);
        assert_eq!(op.frees, vec![op.operands[0]]);
    }

    #[test]
    fn blocks_are_named_by_step_and_slot() {
        assert_eq!(block_name(3, 0), "b3");
        assert_eq!(block_name(3, 1), "b3_1");
        let plan = plan_of(
            "name: gd\nstate: [z]\nstep:\n  z[k+1]: z[k] - grad(z[k])\noutput: z\n",
            2,
        );
        let names: Vec<&str> = plan
            .ops
            .iter()
            .filter_map(|o| match &o.kind {
                OpKind::Block { name, .. } => Some(name.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(names, ["b0", "b1"]);
    }

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

    /// An exponential average of the iterates, output m.
    const EMA: &str = "name: ema\nparams:\n  a: 0.9\nstate: [z, m]\ninput: z\ninit:\n  m[0]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k])\n  m[k+1]: a * m[k] + (1 - a) * z[k+1]\noutput: m\n";
    /// The Polyak–Ruppert running mean of the iterates, output m.
    const MEAN: &str = "name: mean\nstate: [z, m]\ninput: z\ninit:\n  m[0]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k])\n  m[k+1]: (k + 1) / (k + 2) * m[k] + 1 / (k + 2) * z[k+1]\noutput: m\n";
    /// A running mean of the points the gradient is taken at (it reads `z[k]`, not `z[k+1]`).
    const MEAN_BEFORE: &str = "name: mean_before\nstate: [z, m]\ninput: z\ninit:\n  m[0]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k])\n  m[k+1]: (k + 1) / (k + 2) * m[k] + 1 / (k + 2) * z[k]\noutput: m\n";

    /// More averages and chains: an average of an average, two averages as one output, heavy
    /// ball averaged, an average of Nesterov's iterates, two independent chains.
    const OTHERS: &[&str] = &[
        "name: ema2\nstate: [z, m, n]\ninput: z\ninit:\n  m[0]: z[0]\n  n[0]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k])\n  m[k+1]: 0.9 * m[k] + 0.1 * z[k+1]\n  n[k+1]: 0.9 * n[k] + 0.1 * m[k+1]\noutput: n\n",
        "name: cat2\nstate: [z, m, n]\ninput: z\ninit:\n  m[0]: z[0]\n  n[0]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k])\n  m[k+1]: 0.9 * m[k] + 0.1 * z[k+1]\n  n[k+1]: 0.9 * n[k] + 0.1 * z[k]\noutput: cat(m[K], n[K])\n",
        "name: hb_ema\nstate: [z, m]\ninput: z\ninit:\n  z[-1]: z[0]\n  m[0]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k]) + 0.5 * (z[k] - z[k-1])\n  m[k+1]: 0.9 * m[k] + 0.1 * z[k+1]\noutput: m\n",
        "name: nesterov_ema\nstate: [z, y, m]\ninput: z\ninit:\n  z[-1]: z[0]\n  m[0]: z[0]\nstep:\n  m[k+1]: 0.9 * m[k] + 0.1 * z[k]\n  y[k]: z[k] + 0.5 * (z[k] - z[k-1])\n  z[k+1]: y[k] - grad(y[k])\noutput: m\n",
        "name: two\nstate: [z, y]\ninput: z\ninit:\n  y[0]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k])\n  y[k+1]: y[k] - grad(y[k])\noutput: z[K] + y[K]\n",
    ];

    fn topo_of(text: &str, steps: usize) -> Topology {
        let spec = crate::spec::load_str("t.yaml", text).unwrap();
        crate::topology::unroll(&spec, steps, &Default::default()).unwrap()
    }

    /// The peak of live units of `order` (node indices), counted as the plan counts them.
    fn peak_of(t: &Topology, order: &[NodeIndex]) -> usize {
        let deps = Deps::of(t, &t.order().unwrap());
        let order: Vec<usize> = order.iter().map(|n| n.index()).collect();
        deps.live(&order).unwrap().into_iter().max().unwrap()
    }

    /// The smallest peak over every topological order (exhaustive, for small graphs).
    fn optimum(t: &Topology) -> usize {
        let deps = Deps::of(t, &t.order().unwrap());
        let n = deps.units.len();
        assert!(n <= 64, "{n} nodes");
        fn go(
            d: &Deps,
            done: u64,
            live: usize,
            memo: &mut std::collections::HashMap<u64, usize>,
        ) -> usize {
            let n = d.units.len();
            if done.count_ones() as usize == n {
                return 0;
            }
            if let Some(&v) = memo.get(&done) {
                return v;
            }
            let is_done = |i: usize| done >> i & 1 == 1;
            let mut best = usize::MAX;
            for i in (0..n).filter(|&i| !is_done(i)) {
                if !d.operands[i].iter().all(|&o| is_done(o)) {
                    continue;
                }
                let now = live + d.units[i];
                let next = done | 1 << i;
                let freed: usize = (0..n)
                    .filter(|&o| {
                        d.operands[i].contains(&o)
                            && d.readers[o].iter().all(|&r| next >> r & 1 == 1)
                    })
                    .map(|o| d.held[o])
                    .sum();
                best = best.min(now.max(go(d, next, now - freed, memo)));
            }
            memo.insert(done, best);
            best
        }
        go(&deps, 0, 0, &mut Default::default())
    }

    fn shipped() -> Vec<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs");
        let mut v: Vec<(String, String)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| {
                let name = p.file_stem().unwrap().to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).unwrap())
            })
            .collect();
        v.sort();
        v
    }

    /// The toposort ran the whole `z` chain before the averages and held every `z[k]`
    /// (66 maps at 64 steps); the plan folds each `z[k+1]` into the average as soon as it exists.
    /// The other chains of [`OTHERS`] hold at most 5 (two averages or a second history).
    #[test]
    fn averages_hold_four_maps_at_any_length() {
        for (text, toposort) in [(EMA, 66), (MEAN, 66), (MEAN_BEFORE, 4)] {
            let t = topo_of(text, 64);
            assert_eq!(peak_of(&t, &t.order().unwrap()), toposort, "{text}");
            let plan = Plan::compile(&t).unwrap();
            assert_eq!(plan.live().into_iter().max(), Some(4), "{text}");
            assert_eq!(crate::analysis::memory(&t).unwrap().peak, 4, "{text}");
            for steps in 1..=12 {
                let t = topo_of(text, steps);
                let peak = crate::analysis::memory(&t).unwrap().peak;
                assert!(peak <= 4, "{text} at {steps} steps: {peak}");
            }
        }
        for text in OTHERS {
            let peak = crate::analysis::memory(&topo_of(text, 64)).unwrap().peak;
            assert!(peak <= 5, "{text}: {peak}");
        }
    }

    /// On small unrolls of the shipped specs and of the averages, the plan's peak is the
    /// smallest any topological order reaches.
    #[test]
    fn the_schedule_is_optimal_on_small_unrolls() {
        let mut texts: Vec<(String, String)> = shipped();
        for (name, text) in [("ema", EMA), ("mean", MEAN), ("mean_before", MEAN_BEFORE)] {
            texts.push((name.into(), text.into()));
        }
        for text in OTHERS {
            texts.push((
                text.lines().next().unwrap_or_default().into(),
                text.to_string(),
            ));
        }
        for (name, text) in &texts {
            for steps in 1..=5 {
                let t = topo_of(text, steps);
                let got = peak_of(&t, &schedule(&t).unwrap());
                assert_eq!(got, optimum(&t), "{name} at {steps} steps");
            }
        }
    }

    /// The plan's peak is never above the toposort's (the order plans had before). The specs
    /// shipped before `polyak_ema` keep their peaks and their very order: the toposort, first
    /// of the candidates, wins the ties.
    #[test]
    fn the_schedule_is_never_worse_than_the_toposort() {
        const BEFORE: [&str; 8] = [
            "densenet",
            "gradient_descent",
            "gradient_descent_objective",
            "heavy_ball",
            "lm_resnet",
            "momentum_resnet",
            "nesterov",
            "nesterov_theta",
        ];
        let specs = shipped();
        for name in BEFORE {
            assert!(specs.iter().any(|(n, _)| n == name), "{name} is gone");
        }
        for (name, text) in specs {
            for steps in [1, 2, 3, 8, 20, 64] {
                let t = topo_of(&text, steps);
                let toposort = t.order().unwrap();
                let before = peak_of(&t, &toposort);
                let after = crate::analysis::memory(&t).unwrap().peak;
                assert!(
                    after <= before,
                    "{name} at {steps} steps: {after} > {before}"
                );
                if BEFORE.contains(&name.as_str()) {
                    assert_eq!(schedule(&t).unwrap(), toposort, "{name} at {steps} steps");
                }
            }
        }
    }

    /// The schedule is a topological order of every node, ending with the output.
    #[test]
    fn the_schedule_is_a_topological_order() {
        for text in [EMA, MEAN, MEAN_BEFORE] {
            let t = topo_of(text, 9);
            let order = schedule(&t).unwrap();
            assert_eq!(order.len(), t.graph.node_count());
            assert_eq!(order.last(), Some(&t.output));
            let mut pos = vec![usize::MAX; order.len()];
            for (i, n) in order.iter().enumerate() {
                pos[n.index()] = i;
            }
            for e in t.graph.edge_indices() {
                let (a, b) = t.graph.edge_endpoints(e).unwrap();
                assert!(pos[a.index()] < pos[b.index()]);
            }
        }
    }
}
