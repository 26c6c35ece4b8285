//! Analyses of unrolled topologies: counts, skip distances, live feature maps (the memory a
//! spec costs) and the coefficient table (each block's input as a combination of the input and
//! all earlier blocks: the closed form of the recurrence).

use crate::coef::Coef;
use crate::error::SpecError;
use crate::plan::Plan;
use crate::topology::{NodeKind, Topology};
use petgraph::graph::NodeIndex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Everything `optarch graph --analyse` reports.
#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    pub name: String,
    pub steps: usize,
    pub reading: String,
    pub blocks: usize,
    pub combinations: usize,
    pub concatenations: usize,
    pub edges: usize,
    pub learnable_scalars: usize,
    /// Histogram of merge edges by how many block levels they skip (0 = the main path).
    pub skip_histogram: BTreeMap<usize, usize>,
    pub memory: Memory,
    pub coefficients: CoefficientTable,
}

/// Live feature maps while the plan executes (in the plan's order), freeing each value after
/// its last consumer.
#[derive(Clone, Debug, Serialize)]
pub struct Memory {
    /// The largest number of live feature maps (a concatenation of n maps counts n).
    pub peak: usize,
    /// The largest number of live maps while each step runs.
    pub per_step: Vec<usize>,
}

/// The closed form: each block's input, and the output, over the basis (input, blocks, concats).
#[derive(Clone, Debug, Serialize)]
pub struct CoefficientTable {
    /// Column labels: `x`, `B0`, `B1`, ... (and `cat` nodes when present).
    pub basis: Vec<String>,
    pub rows: Vec<CoefficientRow>,
    /// Why the table is empty, when it is too large to compute ([`MAX_TABLE_CELLS`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub omitted: Option<String>,
}

/// The most cells (rows × basis elements) a coefficient table may have: its size grows with
/// the square of the steps (256 steps of gradient descent), and its work faster for specs
/// that read their whole history.
pub const MAX_TABLE_CELLS: usize = 256 * 257;

/// One row of the coefficient table.
#[derive(Clone, Debug, Serialize)]
pub struct CoefficientRow {
    /// `B3` (the input of block 3) or `out`.
    pub target: String,
    /// Coefficient on each basis element (`None` where it is zero), as a label.
    pub labels: Vec<Option<String>>,
    /// Numeric values (learnable parameters at their initial values).
    pub values: Vec<f64>,
}

/// Closed-form coefficients with more monomials than this are kept as numbers.
pub const MAX_SYMBOLIC_TERMS: usize = 32;

/// Level of each node: the number of blocks on the longest path from the input.
pub fn levels(t: &Topology) -> Result<Vec<usize>, SpecError> {
    let mut level = vec![0usize; t.graph.node_count()];
    for n in t.order()? {
        let ops = t.operands(n);
        let base = ops.iter().map(|(o, _)| level[o.index()]).max().unwrap_or(0);
        level[n.index()] = if matches!(t.graph[n].kind, NodeKind::Block { .. }) {
            base + 1
        } else {
            base
        };
    }
    Ok(level)
}

/// Live feature maps while the plan executes: the units [`Plan::live`] counts over the plan's
/// order ([`crate::plan::schedule`], the order the executor and the generated code follow), each
/// value freed right after its last reader.
pub fn memory(t: &Topology) -> Result<Memory, SpecError> {
    let plan = Plan::compile(t)?;
    let live = plan.live();
    let mut per_step = vec![0usize; t.steps];
    for (op, &l) in plan.ops.iter().zip(&live) {
        if let Some(slot) = op.step.and_then(|k| per_step.get_mut(k)) {
            *slot = (*slot).max(l);
        }
    }
    Ok(Memory {
        peak: live.iter().copied().max().unwrap_or(0),
        per_step,
    })
}

/// The closed-form coefficients of every block input and of the output.
pub fn coefficient_table(t: &Topology) -> Result<CoefficientTable, SpecError> {
    let count = |f: fn(&NodeKind) -> bool| t.graph.node_weights().filter(|n| f(&n.kind)).count();
    let blocks = count(|k| matches!(k, NodeKind::Block { .. }));
    let cells = (blocks + 1).saturating_mul(1 + blocks + count(|k| *k == NodeKind::Concat));
    if cells > MAX_TABLE_CELLS {
        return Ok(CoefficientTable {
            basis: Vec::new(),
            rows: Vec::new(),
            omitted: Some(format!(
                "{cells} cells, more than {MAX_TABLE_CELLS}: unroll fewer steps to see it"
            )),
        });
    }
    let order = t.order()?;
    let inits: Vec<f64> = t.learnables.iter().map(|l| l.init).collect();
    let mut basis: Vec<NodeIndex> = Vec::new();
    let mut forms: HashMap<NodeIndex, Vec<(usize, Coef)>> = HashMap::new();
    let mut rows_for: Vec<(String, Vec<(usize, Coef)>)> = Vec::new();
    for &n in &order {
        let node = &t.graph[n];
        let form = match node.kind {
            NodeKind::Input | NodeKind::Block { .. } | NodeKind::Concat => {
                if let NodeKind::Block { .. } = node.kind {
                    let input = t
                        .operands(n)
                        .first()
                        .and_then(|(o, _)| forms.get(o).cloned())
                        .unwrap_or_default();
                    rows_for.push((node.label(), input));
                }
                basis.push(n);
                vec![(basis.len() - 1, Coef::constant(1.0))]
            }
            NodeKind::Combine | NodeKind::Output => {
                let mut acc: Vec<(usize, Coef)> = Vec::new();
                for (o, e) in t.operands(n) {
                    for (b, c) in forms.get(&o).cloned().unwrap_or_default() {
                        let mut add = e.coef.mul(&c);
                        if add.term_count() > MAX_SYMBOLIC_TERMS {
                            // Products of many learnable scalars: keep the value at their initial values.
                            add = Coef::constant(add.eval(&inits));
                        }
                        match acc.iter_mut().find(|(x, _)| *x == b) {
                            Some((_, v)) => *v = v.add(&add),
                            None => acc.push((b, add)),
                        }
                    }
                }
                acc.retain(|(_, c)| !c.is_zero());
                if node.kind == NodeKind::Output {
                    rows_for.push(("out".into(), acc.clone()));
                }
                acc
            }
        };
        forms.insert(n, form);
    }
    let rows = rows_for
        .into_iter()
        .map(|(target, form)| {
            let mut labels = vec![None; basis.len()];
            let mut values = vec![0.0; basis.len()];
            for (b, c) in form {
                labels[b] = Some(t.coef_label(&c));
                values[b] = c.eval(&inits);
            }
            CoefficientRow {
                target,
                labels,
                values,
            }
        })
        .collect();
    Ok(CoefficientTable {
        basis: basis.iter().map(|n| t.graph[*n].label()).collect(),
        rows,
        omitted: None,
    })
}

/// All analyses of a topology.
pub fn analyse(t: &Topology) -> Result<Analysis, SpecError> {
    let level = levels(t)?;
    let mut skip_histogram = BTreeMap::new();
    for n in t.graph.node_indices() {
        if matches!(t.graph[n].kind, NodeKind::Combine | NodeKind::Concat) {
            for (o, _) in t.operands(n) {
                let d = level[n.index()].saturating_sub(level[o.index()]);
                *skip_histogram.entry(d).or_insert(0) += 1;
            }
        }
    }
    let count = |f: fn(&NodeKind) -> bool| t.graph.node_weights().filter(|n| f(&n.kind)).count();
    Ok(Analysis {
        name: t.name.clone(),
        steps: t.steps,
        reading: t.reading.to_string(),
        blocks: t.block_count(),
        combinations: count(|k| *k == NodeKind::Combine),
        concatenations: count(|k| *k == NodeKind::Concat),
        edges: t.graph.edge_count(),
        learnable_scalars: t.learnables.len(),
        skip_histogram,
        memory: memory(t)?,
        coefficients: coefficient_table(t)?,
    })
}

impl std::fmt::Display for Analysis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} unrolled for {} steps ({} reading)",
            self.name, self.steps, self.reading
        )?;
        writeln!(f, "  blocks            {}", self.blocks)?;
        writeln!(f, "  combinations      {}", self.combinations)?;
        writeln!(f, "  concatenations    {}", self.concatenations)?;
        writeln!(f, "  edges             {}", self.edges)?;
        writeln!(f, "  learnable scalars {}", self.learnable_scalars)?;
        writeln!(
            f,
            "  peak live maps    {} (the memory this spec costs, in feature maps)",
            self.memory.peak
        )?;
        let per: Vec<String> = self.memory.per_step.iter().map(|v| v.to_string()).collect();
        writeln!(f, "  live maps by step {}", per.join(" "))?;
        writeln!(f, "  skip distances (levels skipped: edges)")?;
        let max = self
            .skip_histogram
            .values()
            .copied()
            .max()
            .unwrap_or(1)
            .max(1);
        for (d, c) in &self.skip_histogram {
            let bar = "█".repeat((c * 40).div_ceil(max));
            writeln!(f, "    {d:>3}: {c:>5} {bar}")?;
        }
        if let Some(why) = &self.coefficients.omitted {
            return writeln!(f, "  closed form       omitted: {why}");
        }
        writeln!(
            f,
            "  closed form (rows: block inputs and output; columns: {})",
            self.coefficients.basis.join(" ")
        )?;
        for row in &self.coefficients.rows {
            let cells: Vec<String> = row
                .labels
                .iter()
                .map(|l| l.clone().unwrap_or_else(|| "·".into()))
                .collect();
            writeln!(f, "    {:>5} = [{}]", row.target, cells.join(", "))?;
        }
        Ok(())
    }
}
