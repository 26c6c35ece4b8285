//! Running a [`Plan`] on tensors.
//!
//! The plan itself (operations, operands, what is freed when, polynomial order) is torch-free
//! and lives in [`crate::plan`]; it is re-exported here so `exec::plan::Plan` keeps working.
//! Values live in a `Vec<Option<Tensor>>` indexed by operation; the values an operation frees
//! ([`Op::frees`]) are taken out of the vector and dropped right after it has run.

pub use crate::plan::{Op, OpKind, Plan, PolyAlgebra, Scale};

use crate::error::SpecError;
use tch::Tensor;

impl Scale {
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
        Scale::fold(terms, &mut Tensors(params)).ok().flatten()
    }
}

/// Polynomials over the learnable scalars as tensors.
struct Tensors<'a>(&'a [Tensor]);

impl PolyAlgebra for Tensors<'_> {
    type Value = Tensor;
    type Error = ();
    fn param(&mut self, id: usize) -> Result<Tensor, ()> {
        self.0.get(id).map(Tensor::shallow_clone).ok_or(())
    }
    fn mul(&mut self, a: Tensor, b: Tensor) -> Tensor {
        a * b
    }
    fn scale(&mut self, a: Tensor, f: f64) -> Tensor {
        a * f
    }
    fn add(&mut self, a: Tensor, b: Tensor) -> Tensor {
        a + b
    }
    fn add_const(&mut self, a: Tensor, c: f64) -> Tensor {
        a + c
    }
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
    /// Runs the plan on `entry` (`z[0]`); blocks for which [`Kernels::reads_raw`] holds get
    /// `raw` instead (falling back to `entry`). `params` are the learnable scalars, indexed like
    /// [`Topology::learnables`]. When `trace` is given, the live feature-map units after each
    /// operation are pushed to it: the units of the values the executor holds at that moment
    /// (the output aliases its operand and is not counted). The tests check that this
    /// measurement is [`Plan::live`], the count the analysis reports.
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
            for &o in &op.frees {
                if values[o].take().is_some() {
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
    use crate::coef::Coef;

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
