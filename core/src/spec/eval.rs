//! Evaluating a validated recurrence: the single interpreter of spec semantics.
//!
//! [`Evaluator`] walks the equations of a [`Spec`] for `K` steps over any linear [`Space`]:
//! the topology builder uses node combinations (so unrolling yields a graph), the theory uses
//! scalars (`grad(x) = λx`), and loading uses a dry run that only checks that every value and
//! coefficient exists. Whatever the space, the semantics (indices, schedules, learnable
//! instances, history sums, concatenation) live here once.

use crate::coef::Coef;
use crate::error::{ErrorKind, Pos, SpecError};
use crate::expr::{BinOp, Ex, Expr, Idx};
use crate::spec::{Overrides, ParamKind, Per, Spec};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

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

/// A linear space the recurrence can be evaluated in.
pub trait Space {
    /// A value (a feature map, a scalar, a vector of coefficients, ...).
    type V: Clone;
    /// The network input `z[0]`.
    fn input(&mut self) -> Self::V;
    /// The zero value.
    fn zero(&mut self) -> Self::V;
    /// `acc + c · v`.
    fn axpy(&mut self, acc: Self::V, c: &Coef, v: &Self::V) -> Self::V;
    /// `grad(v)` during step `k`.
    fn grad(&mut self, k: i64, v: Self::V, at: Option<Pos>) -> Result<Self::V, SpecError>;
    /// `cat(parts...)`.
    fn cat(&mut self, parts: Vec<Self::V>, at: Option<Pos>) -> Result<Self::V, SpecError>;
    /// Registers (or finds) a learnable scalar and returns its id.
    fn learnable(&mut self, param: &str, instance: Instance, init: f64) -> usize;
    /// Called when a state value is stored under `name` (e.g. `z[3]`).
    fn bind(&mut self, _name: &str, v: Self::V) -> Result<Self::V, SpecError> {
        Ok(v)
    }
    /// Called before the equations of step `k` (`None`: initial values and output).
    fn begin_step(&mut self, _k: Option<i64>) {}
}

/// Walks a spec's equations over a [`Space`].
pub struct Evaluator<'s, S: Space> {
    pub spec: &'s Spec,
    pub space: S,
    pub steps: usize,
    overrides: &'s Overrides,
    /// State values by (state, index).
    pub values: HashMap<(usize, i64), S::V>,
    /// Schedule values by (parameter, k, j, K): a schedule may read the step count.
    sched: HashMap<(usize, i64, Option<i64>, usize), f64>,
    busy: HashSet<(usize, i64, Option<i64>)>,
}

type R<T> = Result<T, SpecError>;

/// The longest history a range or a recursive schedule may span.
pub const MAX_HISTORY: i64 = 1_000_000;

impl<'s, S: Space> Evaluator<'s, S> {
    pub fn new(spec: &'s Spec, space: S, steps: usize, overrides: &'s Overrides) -> Self {
        Evaluator {
            spec,
            space,
            steps,
            overrides,
            values: HashMap::new(),
            sched: HashMap::new(),
            busy: HashSet::new(),
        }
    }

    /// Evaluates the initial values, every step and the output.
    pub fn run(&mut self) -> R<S::V> {
        self.run_init()?;
        for k in 0..self.steps as i64 {
            self.run_step(k)?;
        }
        self.output()
    }

    /// Binds the input and evaluates `init`.
    pub fn run_init(&mut self) -> R<()> {
        self.space.begin_step(None);
        let x = self.space.input();
        let name = format!("{}[0]", self.spec.states[self.spec.input].name);
        let x = self.space.bind(&name, x)?;
        self.values.insert((self.spec.input, 0), x);
        for eq in &self.spec.init {
            let v = self.lin(&eq.rhs, 0)?;
            let name = format!("{}[{}]", self.spec.states[eq.state].name, eq.index.offset);
            let v = self.space.bind(&name, v)?;
            self.values.insert((eq.state, eq.index.offset), v);
        }
        Ok(())
    }

    /// Evaluates the equations of step `k`.
    pub fn run_step(&mut self, k: i64) -> R<()> {
        self.space.begin_step(Some(k));
        for eq in &self.spec.step {
            let v = self.lin(&eq.rhs, k)?;
            let i = k + eq.index.offset;
            let name = format!("{}[{}]", self.spec.states[eq.state].name, i);
            let v = self.space.bind(&name, v)?;
            self.values.insert((eq.state, i), v);
        }
        Ok(())
    }

    /// Evaluates the output expression after `steps` steps.
    pub fn output(&mut self) -> R<S::V> {
        self.space.begin_step(None);
        let out = self.spec.output.clone();
        self.lin(&out, self.steps as i64)
    }

    fn resolve(&self, idx: Idx, k: i64, j: Option<i64>) -> i64 {
        match idx.var {
            Some('K') => (self.steps as i64).saturating_add(idx.offset),
            Some('j') => j.unwrap_or(0).saturating_add(idx.offset),
            Some(_) => k.saturating_add(idx.offset),
            None => idx.offset,
        }
    }

    fn err(
        &self,
        e: &Expr,
        kind: ErrorKind,
        msg: impl Into<String>,
        hint: impl Into<String>,
    ) -> SpecError {
        self.spec
            .error_at(Expr::file_pos(e), kind, msg)
            .with_hint(hint)
    }

    fn lookup(&self, e: &Expr, s: usize, i: i64, k: i64) -> R<S::V> {
        if let Some(v) = self.values.get(&(s, i)) {
            return Ok(v.clone());
        }
        let st = &self.spec.states[s];
        if i >= st.offset {
            Err(self.err(
                e,
                ErrorKind::FutureReference,
                format!("`{}[{i}]` is not computed yet at step k = {k}", st.name),
                "a step can only use values computed before it",
            ))
        } else {
            Err(self.err(
                e,
                ErrorKind::MissingInit,
                format!(
                    "missing initial value `{}[{i}]` (needed at step k = {k})",
                    st.name
                ),
                format!(
                    "add it under `init:`, e.g. `{}[{i}]: {}[0]`",
                    st.name, self.spec.states[self.spec.input].name
                ),
            ))
        }
    }

    /// Evaluates a linear (feature-map) expression at step `k`.
    pub fn lin(&mut self, e: &Expr, k: i64) -> R<S::V> {
        let spec = self.spec;
        match &e.ex {
            Ex::Num(_) => Ok(self.space.zero()),
            Ex::Index(n, idx) => match (spec.state(n), idx.as_slice()) {
                (Some(s), [i]) => {
                    let i = self.resolve(*i, k, None);
                    self.lookup(e, s, i, k)
                }
                _ => Err(SpecError::internal(format!(
                    "`{n}` is not a state reference"
                ))),
            },
            Ex::Neg(a) => {
                let v = self.lin(a, k)?;
                let z = self.space.zero();
                Ok(self.space.axpy(z, &Coef::constant(-1.0), &v))
            }
            Ex::Bin(op @ (BinOp::Add | BinOp::Sub), a, b) => {
                let va = self.lin(a, k)?;
                let vb = self.lin(b, k)?;
                let sign = if *op == BinOp::Add { 1.0 } else { -1.0 };
                Ok(self.space.axpy(va, &Coef::constant(sign), &vb))
            }
            Ex::Bin(BinOp::Mul, a, b) => {
                let (m, c) = if spec.is_linear(a) { (a, b) } else { (b, a) };
                let c = self.coef(c, k, None)?;
                let v = self.lin(m, k)?;
                let z = self.space.zero();
                Ok(self.space.axpy(z, &c, &v))
            }
            Ex::Bin(BinOp::Div, a, b) => {
                let d = self.scalar(b, k, None)?;
                if d == 0.0 {
                    return Err(self.div_zero(b, k));
                }
                let v = self.lin(a, k)?;
                let z = self.space.zero();
                Ok(self.space.axpy(z, &Coef::constant(1.0 / d), &v))
            }
            Ex::Call(f, args) => match (f.as_str(), args.as_slice()) {
                ("grad", [a]) => {
                    let v = self.lin(a, k)?;
                    self.space.grad(k, v, Expr::file_pos(e))
                }
                ("cat", _) => {
                    let mut parts = Vec::new();
                    for a in args {
                        if let Ex::Range {
                            name,
                            lo,
                            hi,
                            inclusive,
                        } = &a.ex
                        {
                            for (s, i) in self.range(name, *lo, *hi, *inclusive, k)? {
                                parts.push(self.lookup(a, s, i, k)?);
                            }
                        } else {
                            parts.push(self.lin(a, k)?);
                        }
                    }
                    if parts.is_empty() {
                        return Err(self.err(
                            e,
                            ErrorKind::InvalidValue,
                            format!("cat(...) is empty at step k = {k}"),
                            "make the range non-empty, e.g. `z[0..=k]`",
                        ));
                    }
                    self.space.cat(parts, Expr::file_pos(e))
                }
                ("sum", [r, rest @ ..]) => {
                    let Ex::Range {
                        name,
                        lo,
                        hi,
                        inclusive,
                    } = &r.ex
                    else {
                        return Err(SpecError::internal("sum without a range"));
                    };
                    let mut acc = self.space.zero();
                    for (s, j) in self.range(name, *lo, *hi, *inclusive, k)? {
                        let w = match rest.first() {
                            Some(w) => self.coef(w, k, Some(j))?,
                            None => Coef::constant(1.0),
                        };
                        let v = self.lookup(r, s, j, k)?;
                        acc = self.space.axpy(acc, &w, &v);
                    }
                    Ok(acc)
                }
                _ => Err(SpecError::internal(format!("`{f}` in a linear expression"))),
            },
            _ => Err(SpecError::internal("unexpected linear expression")),
        }
    }

    fn range(&self, name: &str, lo: Idx, hi: Idx, inclusive: bool, k: i64) -> R<Vec<(usize, i64)>> {
        let s = self
            .spec
            .state(name)
            .ok_or_else(|| SpecError::internal(format!("unknown state {name}")))?;
        let lo = self.resolve(lo, k, None);
        let mut hi = self.resolve(hi, k, None);
        if !inclusive {
            hi = hi.saturating_sub(1);
        }
        if hi.saturating_sub(lo) > MAX_HISTORY {
            return Err(self.spec.error_at(None, ErrorKind::InvalidValue, format!("the history range of `{name}` spans {lo}..={hi} at k = {k}, more than {MAX_HISTORY} values")).with_hint("ranges usually run from 0 (the input) to k"));
        }
        Ok((lo..=hi).map(|i| (s, i)).collect())
    }

    fn div_zero(&self, e: &Expr, k: i64) -> SpecError {
        self.err(
            e,
            ErrorKind::DivisionByZero,
            format!("division by zero at k = {k}"),
            "shift the expression (e.g. 1 / (k + 1) instead of 1 / k) or guard it: `if k == 0 { 0 } else { 1 / k }`",
        )
    }

    /// Forgets the state values `keep` does not keep (values no later step reads).
    pub fn forget(&mut self, keep: impl Fn(usize, i64) -> bool) {
        self.values.retain(|(s, i), _| keep(*s, *i));
    }

    /// Evaluates a coefficient at step `k` (and history index `j` inside sums): a finite
    /// number, or an error at `e`.
    pub fn coef(&mut self, e: &Expr, k: i64, j: Option<i64>) -> R<Coef> {
        let c = self.coef_of(e, k, j)?;
        if !c.is_finite() {
            return Err(self.err(
                e,
                ErrorKind::InvalidValue,
                format!("the coefficient is not finite at k = {k}"),
                "a product or sum of large numbers overflows: keep coefficients within ±1e308",
            ));
        }
        Ok(c)
    }

    fn coef_of(&mut self, e: &Expr, k: i64, j: Option<i64>) -> R<Coef> {
        match &e.ex {
            Ex::Var(n) | Ex::Index(n, _) if self.spec.param(n).is_some() => {
                let (p, at) = self.param_index(e, k, j)?;
                self.param_coef(e, p, at, j)
            }
            Ex::Neg(a) => Ok(self.coef(a, k, j)?.scale(-1.0)),
            Ex::Bin(op @ (BinOp::Add | BinOp::Sub | BinOp::Mul), a, b) => {
                let ca = self.coef(a, k, j)?;
                let cb = self.coef(b, k, j)?;
                Ok(match op {
                    BinOp::Add => ca.add(&cb),
                    BinOp::Sub => ca.add(&cb.scale(-1.0)),
                    _ => ca.mul(&cb),
                })
            }
            Ex::Bin(BinOp::Div, a, b) => {
                let d = self.scalar(b, k, j)?;
                if d == 0.0 {
                    return Err(self.div_zero(b, k));
                }
                Ok(self.coef(a, k, j)?.scale(1.0 / d))
            }
            Ex::If(c, a, b) => {
                if self.scalar(c, k, j)? != 0.0 {
                    self.coef(a, k, j)
                } else {
                    self.coef(b, k, j)
                }
            }
            _ => Ok(Coef::constant(self.scalar(e, k, j)?)),
        }
    }

    fn param_index(&self, e: &Expr, k: i64, j: Option<i64>) -> R<(usize, i64)> {
        match &e.ex {
            Ex::Var(n) => Ok((self.spec.param(n).unwrap_or(0), k)),
            Ex::Index(n, idx) => {
                let at = idx.first().map(|i| self.resolve(*i, k, j)).unwrap_or(k);
                Ok((self.spec.param(n).unwrap_or(0), at))
            }
            _ => Err(SpecError::internal("not a parameter")),
        }
    }

    fn param_coef(&mut self, e: &Expr, p: usize, k: i64, j: Option<i64>) -> R<Coef> {
        let param = &self.spec.params[p];
        let over = self.overrides.get(&param.name).copied();
        match &param.kind {
            ParamKind::Learnable { init, per } => {
                let init = over.unwrap_or(*init);
                if !init.is_finite() {
                    return Err(self
                        .spec
                        .error_at(
                            param.pos,
                            ErrorKind::InvalidValue,
                            format!("parameter `{}` starts at {init}", param.name),
                        )
                        .with_hint("parameters are finite numbers"));
                }
                let instance = match per {
                    Per::Shared => Instance::Shared,
                    Per::Step => Instance::Step { k },
                    Per::Edge => Instance::Edge {
                        k,
                        j: j.unwrap_or(0),
                    },
                };
                let id = self.space.learnable(&param.name, instance, init);
                Ok(Coef::learnable(id))
            }
            _ => Ok(Coef::constant(self.param_value(e, p, k, j)?)),
        }
    }

    fn param_value(&mut self, e: &Expr, p: usize, k: i64, j: Option<i64>) -> R<f64> {
        let param = &self.spec.params[p];
        let v = match (self.overrides.get(&param.name), &param.kind) {
            (Some(v), _) => *v,
            (None, ParamKind::Const(v)) => *v,
            (None, ParamKind::Range { default, .. } | ParamKind::Choices { default, .. }) => {
                *default
            }
            (None, ParamKind::Learnable { init, .. }) => *init,
            (None, ParamKind::Schedule { .. }) => return self.schedule(e, p, k, j),
        };
        if !v.is_finite() {
            return Err(self
                .spec
                .error_at(
                    param.pos,
                    ErrorKind::InvalidValue,
                    format!("parameter `{}` is {v}", param.name),
                )
                .with_hint("parameters are finite numbers"));
        }
        Ok(v)
    }

    fn schedule(&mut self, at: &Expr, p: usize, k: i64, j: Option<i64>) -> R<f64> {
        let spec = self.spec;
        let param = &spec.params[p];
        let ParamKind::Schedule { expr, start } = &param.kind else {
            return Err(SpecError::internal("not a schedule"));
        };
        if let Some(v) = start.get(&k) {
            return Ok(*v);
        }
        if let Some(v) = self.sched.get(&(p, k, j, self.steps)) {
            return Ok(*v);
        }
        if param.recursive {
            let Some(lo) = start.keys().next().copied() else {
                return Err(spec
                    .error_at(
                        param.pos,
                        ErrorKind::MissingInit,
                        format!("recursive schedule `{}` has no start values", param.name),
                    )
                    .with_hint(format!(
                        "add e.g. `start: {{0: 1.0}}` so that `{}[0]` is known",
                        param.name
                    )));
            };
            if k.saturating_sub(lo) > MAX_HISTORY {
                return Err(self.err(at, ErrorKind::BadSchedule, format!("`{}[{k}]` lies more than {MAX_HISTORY} steps after its first start value (k = {lo})", param.name), "start the recursion near k = 0"));
            }
            if k < lo {
                return Err(self.err(
                    at,
                    ErrorKind::MissingInit,
                    format!(
                        "`{}[{k}]` is needed but the schedule starts at k = {lo}",
                        param.name
                    ),
                    format!("add a start value for k = {k} (`start: {{{k}: ...}}`)"),
                ));
            }
            // Bottom-up, so the recursion depth stays small for any number of steps.
            for kk in lo + 1..k {
                if !start.contains_key(&kk) && !self.sched.contains_key(&(p, kk, j, self.steps)) {
                    self.schedule(at, p, kk, j)?;
                }
            }
        }
        if !self.busy.insert((p, k, j)) {
            return Err(spec
                .error_at(
                    param.pos,
                    ErrorKind::Cycle,
                    format!("schedule `{}` depends on itself at k = {k}", param.name),
                )
                .with_hint(
                    "a schedule may use other parameters, and its own values at earlier k only",
                ));
        }
        let v = self.scalar(expr, k, j);
        self.busy.remove(&(p, k, j));
        let v = v?;
        if !v.is_finite() {
            return Err(spec
                .error_at(Expr::file_pos(expr), ErrorKind::BadSchedule, format!("schedule `{}` is not finite at k = {k} (value {v})", param.name))
                .with_hint("check square roots of negative numbers, logarithms of 0 and overflowing powers"));
        }
        self.sched.insert((p, k, j, self.steps), v);
        Ok(v)
    }

    /// Evaluates a scalar (non-learnable) expression at step `k`.
    pub fn scalar(&mut self, e: &Expr, k: i64, j: Option<i64>) -> R<f64> {
        let v = match &e.ex {
            Ex::Num(v) => *v,
            Ex::Var(n) if n == "k" => k as f64,
            Ex::Var(n) if n == "K" => self.steps as f64,
            Ex::Var(n) if n == "j" => j.unwrap_or(0) as f64,
            Ex::Var(n) | Ex::Index(n, _) => {
                let Some(_) = self.spec.param(n) else {
                    return Err(SpecError::internal(format!("unknown name {n}")));
                };
                let (p, at) = self.param_index(e, k, j)?;
                self.param_value(e, p, at, j)?
            }
            Ex::Neg(a) => -self.scalar(a, k, j)?,
            Ex::Not(a) => f64::from(u8::from(self.scalar(a, k, j)? == 0.0)),
            Ex::Bin(op, a, b) => {
                let x = self.scalar(a, k, j)?;
                let y = self.scalar(b, k, j)?;
                let t = |c: bool| f64::from(u8::from(c));
                match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => {
                        if y == 0.0 {
                            return Err(self.div_zero(b, k));
                        }
                        x / y
                    }
                    BinOp::Eq => t(x == y),
                    BinOp::Ne => t(x != y),
                    BinOp::Lt => t(x < y),
                    BinOp::Le => t(x <= y),
                    BinOp::Gt => t(x > y),
                    BinOp::Ge => t(x >= y),
                    BinOp::And => t(x != 0.0 && y != 0.0),
                    BinOp::Or => t(x != 0.0 || y != 0.0),
                }
            }
            Ex::If(c, a, b) => {
                if self.scalar(c, k, j)? != 0.0 {
                    self.scalar(a, k, j)?
                } else {
                    self.scalar(b, k, j)?
                }
            }
            Ex::Call(f, args) => {
                let xs = args
                    .iter()
                    .map(|a| self.scalar(a, k, j))
                    .collect::<R<Vec<f64>>>()?;
                let x = xs.first().copied().unwrap_or(0.0);
                let y = xs.get(1).copied().unwrap_or(0.0);
                match f.as_str() {
                    "sqrt" => x.sqrt(),
                    "exp" => x.exp(),
                    "ln" | "log" => x.ln(),
                    "abs" => x.abs(),
                    "sin" => x.sin(),
                    "cos" => x.cos(),
                    "floor" => x.floor(),
                    "ceil" => x.ceil(),
                    "pow" => x.powf(y),
                    "min" => x.min(y),
                    "max" => x.max(y),
                    _ => return Err(SpecError::internal(format!("unknown function {f}"))),
                }
            }
            Ex::Range { .. } => return Err(SpecError::internal("range in a scalar")),
        };
        if !v.is_finite() {
            return Err(self.err(
                e,
                ErrorKind::BadSchedule,
                format!("the value is not finite at k = {k}"),
                "check square roots of negative numbers, logarithms of 0 and overflowing powers",
            ));
        }
        Ok(v)
    }
}

/// Numbers learnable scalars in order of first use: one id per (parameter, instance).
#[derive(Clone, Debug, Default)]
pub struct Registry {
    ids: HashMap<(String, Instance), usize>,
    /// Initial values by id.
    pub inits: Vec<f64>,
}

impl Registry {
    /// The id of a learnable scalar, registered with `init` on first use; `true` when new.
    pub fn register(&mut self, param: &str, instance: &Instance, init: f64) -> (usize, bool) {
        let next = self.inits.len();
        let id = *self
            .ids
            .entry((param.to_string(), instance.clone()))
            .or_insert(next);
        let new = id == next;
        if new {
            self.inits.push(init);
        }
        (id, new)
    }
}

/// A space that only checks existence: used by the load-time dry run.
pub struct DrySpace {
    learnables: Registry,
}

impl Space for DrySpace {
    type V = ();
    fn input(&mut self) {}
    fn zero(&mut self) {}
    fn axpy(&mut self, _: (), _: &Coef, _: &()) {}
    fn grad(&mut self, _: i64, _: (), _: Option<Pos>) -> R<()> {
        Ok(())
    }
    fn cat(&mut self, _: Vec<()>, _: Option<Pos>) -> R<()> {
        Ok(())
    }
    fn learnable(&mut self, param: &str, instance: Instance, init: f64) -> usize {
        self.learnables.register(param, &instance, init).0
    }
}

/// Evaluates every equation and coefficient for `steps` steps without building anything.
pub fn dry_run(spec: &Spec, steps: usize) -> R<()> {
    let overrides = Overrides::new();
    let mut ev = Evaluator::new(
        spec,
        DrySpace {
            learnables: Registry::default(),
        },
        steps,
        &overrides,
    );
    ev.run().map(|_| ())
}
