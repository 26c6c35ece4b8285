//! The theory of a spec: how fast the method it describes converges on quadratics.
//!
//! On `f(z) = ½λz²` with `λ ∈ [1/κ, 1]` (so `L = 1` and condition number `κ`), substitute
//! `grad(x) = λx` in either reading. Every state is then a multiple of the input, and the
//! recurrence after `N` steps maps the input `z₀` to `p_N(λ) z₀`: the error contraction is
//! `max_λ |p_N(λ)|` over a fine grid of `λ`. When the coefficients do not depend on `k`, the
//! recurrence is a fixed linear map `M(λ)` on a finite window of past states and its
//! asymptotic rate is `max_λ ρ(M(λ))`, the largest spectral radius. Learnable parameters count
//! at their initial values; search ranges and choices are swept over a grid and reported as
//! the best and worst values over the range.
//!
//! Both quantities are computed by the same [`Evaluator`] that unrolls topologies.

use crate::coef::Coef;
use crate::error::{ErrorKind, Pos, SpecError};
use crate::expr::{Ex, Expr};
use crate::spec::eval::{Evaluator, Instance, Registry, Space};
use crate::spec::{Overrides, ParamKind, Spec};
use serde::Serialize;
use std::collections::BTreeMap;

/// Grid points of λ used unless told otherwise.
pub const DEFAULT_GRID: usize = 2001;
/// Points per search range when sweeping.
pub const RANGE_POINTS: usize = 9;
/// The largest window of past states for which a step matrix is built.
pub const MAX_WINDOW: i64 = 256;
/// At most this many parameter combinations are swept.
pub const MAX_COMBINATIONS: usize = 729;

/// Options of a rate computation.
#[derive(Clone, Debug)]
pub struct RateOptions {
    pub kappa: f64,
    pub steps: usize,
    pub grid: usize,
}

impl Default for RateOptions {
    fn default() -> Self {
        RateOptions {
            kappa: 100.0,
            steps: 20,
            grid: DEFAULT_GRID,
        }
    }
}

/// The rate of a spec at one setting of its parameters.
#[derive(Clone, Debug, Serialize)]
pub struct Rate {
    /// The parameter values used (sampled ones only; empty without search ranges).
    pub params: BTreeMap<String, f64>,
    /// `max_λ |p_N(λ)|`: worst-case error contraction after N steps, refined around the grid's
    /// largest values; `None` when a response overflows (the method diverges).
    pub contraction: Option<f64>,
    /// The λ where it is reached.
    pub worst_lambda: f64,
    /// `(max_λ |p_N(λ)|)^(1/N)`: the average contraction per step.
    pub per_step: Option<f64>,
    /// `max_λ ρ(M(λ))` when the coefficients depend neither on k nor on K.
    pub asymptotic: Option<f64>,
    /// Why there is no asymptotic rate, when there is none.
    pub asymptotic_note: Option<String>,
    /// Why the method diverges on quadratics, when it does: an asymptotic rate above 1, or a
    /// response that overflows.
    pub diverges: Option<String>,
    /// `max_λ |p_n(λ)|` for n = 1..=N over the grid: the contraction curve (up to the first
    /// step whose responses are not all finite).
    pub curve: Vec<f64>,
}

impl Rate {
    /// The contraction, infinite when it overflows: for ordering.
    pub fn contraction_or_inf(&self) -> f64 {
        self.contraction.unwrap_or(f64::INFINITY)
    }
}

/// The report of `optarch rate`.
#[derive(Clone, Debug, Serialize)]
pub struct RateReport {
    pub name: String,
    pub kappa: f64,
    pub steps: usize,
    pub grid: usize,
    /// The rate at the spec's defaults (and overrides).
    pub rate: Rate,
    /// The sweep over search ranges, when the spec has any.
    pub sweep: Option<Sweep>,
}

/// Rates over a spec's search ranges and choices.
#[derive(Clone, Debug, Serialize)]
pub struct Sweep {
    pub samples: Vec<Rate>,
    /// The sample with the smallest contraction.
    pub best: Rate,
    /// The sample with the largest contraction.
    pub worst: Rate,
}

/// Values with `grad(x) = λx` for many λ at once. A value holds the coefficients of `dims`
/// unknowns (the input alone, or a window of past states) for each λ, laid out `d · G + g`
/// for unknown `d` and the `g`-th of the `G` values of λ.
struct Linear {
    lambdas: Vec<f64>,
    input: Vec<f64>,
    learnables: Registry,
}

fn no_cat(at: Option<Pos>) -> SpecError {
    SpecError::new(
        ErrorKind::InvalidValue,
        "the rate is not defined for concatenation (DenseNet-type) specs",
    )
    .with_hint("cat(...) changes the width of the state, so there is no scalar recurrence to study")
    .at("", "", at)
}

impl Space for Linear {
    type V = Vec<f64>;
    fn input(&mut self) -> Vec<f64> {
        self.input.clone()
    }
    fn zero(&mut self) -> Vec<f64> {
        vec![0.0; self.input.len()]
    }
    fn axpy(&mut self, mut acc: Vec<f64>, c: &Coef, v: &Vec<f64>) -> Vec<f64> {
        let c = c.eval(&self.learnables.inits);
        for (a, x) in acc.iter_mut().zip(v) {
            *a += c * x;
        }
        acc
    }
    fn grad(&mut self, _: i64, mut v: Vec<f64>, _: Option<Pos>) -> Result<Vec<f64>, SpecError> {
        for row in v.chunks_mut(self.lambdas.len().max(1)) {
            for (x, l) in row.iter_mut().zip(&self.lambdas) {
                *x *= l;
            }
        }
        Ok(v)
    }
    fn cat(&mut self, _: Vec<Vec<f64>>, at: Option<Pos>) -> Result<Vec<f64>, SpecError> {
        Err(no_cat(at))
    }
    fn learnable(&mut self, param: &str, instance: Instance, init: f64) -> usize {
        self.learnables.register(param, &instance, init).0
    }
}

fn located(spec: &Spec, e: SpecError) -> SpecError {
    if e.file.is_empty() {
        let pos = e.pos;
        e.at(&spec.file, &spec.text, pos)
    } else {
        e
    }
}

/// The state values a later step or the output can still read.
enum Keep {
    /// Every value: a history range reads them all.
    All,
    /// Values at most `back` indices behind the current step, and the absolute indices read.
    Recent {
        back: i64,
        absolute: Vec<(usize, i64)>,
    },
}

impl Keep {
    fn of(spec: &Spec) -> Keep {
        fn walk(spec: &Spec, e: &Expr, back: &mut i64, abs: &mut Vec<(usize, i64)>) -> bool {
            match &e.ex {
                Ex::Index(n, idx) => {
                    if let (Some(s), Some(i)) = (spec.state(n), idx.first()) {
                        match i.var {
                            None => abs.push((s, i.offset)),
                            Some(_) => *back = (*back).max(-i.offset),
                        }
                    }
                    true
                }
                Ex::Range { .. } => false,
                Ex::Call(_, args) => args.iter().all(|a| walk(spec, a, back, abs)),
                Ex::Neg(a) | Ex::Not(a) => walk(spec, a, back, abs),
                Ex::Bin(_, a, b) => walk(spec, a, back, abs) && walk(spec, b, back, abs),
                Ex::If(c, a, b) => {
                    walk(spec, c, back, abs) && walk(spec, a, back, abs) && walk(spec, b, back, abs)
                }
                Ex::Num(_) | Ex::Var(_) => true,
            }
        }
        let (mut back, mut absolute) = (0i64, Vec::new());
        let exprs = spec.step.iter().map(|e| &e.rhs).chain([&spec.output]);
        for e in exprs {
            if !walk(spec, e, &mut back, &mut absolute) {
                return Keep::All;
            }
        }
        Keep::Recent { back, absolute }
    }

    /// Keeps, once step `n` is the next to run, what it and later steps may read.
    fn prune<S: Space>(&self, ev: &mut Evaluator<'_, S>, n: i64) {
        if let Keep::Recent { back, absolute } = self {
            let from = n.saturating_sub(*back).saturating_sub(1);
            ev.forget(|s, i| i >= from || absolute.contains(&(s, i)));
        }
    }
}

/// The responses of `spec` at every λ of `lambdas`, from one pass of the recurrence.
struct Responses {
    /// `max_λ |p_n(λ)|` for n = 1.., up to the first n with a response that is not finite.
    curve: Vec<f64>,
    /// `p_N(λ)` for each λ, when every response is finite.
    last: Vec<f64>,
    /// The first n whose responses are not all finite.
    overflow_at: Option<usize>,
}

/// Runs the `steps`-step network (`K = steps` in every step) for all `lambdas` at once; the
/// output after n steps is read with `K = n`, so `p_N` is exactly the unrolled network's.
fn responses_at(
    spec: &Spec,
    steps: usize,
    lambdas: &[f64],
    overrides: &Overrides,
    keep: &Keep,
) -> Result<Responses, SpecError> {
    let space = Linear {
        lambdas: lambdas.to_vec(),
        input: vec![1.0; lambdas.len()],
        learnables: Registry::default(),
    };
    let mut ev = Evaluator::new(spec, space, steps, overrides);
    let mut out = Responses {
        curve: Vec::with_capacity(steps),
        last: Vec::new(),
        overflow_at: None,
    };
    let run = |ev: &mut Evaluator<'_, Linear>, out: &mut Responses| -> Result<(), SpecError> {
        ev.run_init()?;
        for n in 1..=steps {
            ev.steps = steps;
            ev.run_step(n as i64 - 1)?;
            ev.steps = n;
            let p = ev.output()?;
            keep.prune(ev, n as i64);
            if p.iter().any(|v| !v.is_finite()) {
                out.overflow_at = Some(n);
                return Ok(());
            }
            out.curve.push(p.iter().fold(0.0, |m, v| m.max(v.abs())));
            if n == steps {
                out.last = p;
            }
        }
        Ok(())
    };
    run(&mut ev, &mut out).map_err(|e| located(spec, e))?;
    Ok(out)
}

/// `p_n(λ)` for every n = 1..=steps: the output of the `steps`-step network after each step.
pub fn responses(
    spec: &Spec,
    steps: usize,
    lambda: f64,
    overrides: &Overrides,
) -> Result<Vec<f64>, SpecError> {
    let r = responses_at(spec, steps, &[lambda], overrides, &Keep::of(spec))?;
    let mut v = r.curve;
    if let Some(last) = r.last.first() {
        if let Some(l) = v.last_mut() {
            *l = *last;
        }
    }
    Ok(v)
}

/// The λ grid on `[1/κ, 1]`, endpoints included.
pub fn lambda_grid(kappa: f64, points: usize) -> Vec<f64> {
    let lo = 1.0 / kappa;
    let n = points.max(2);
    (0..n)
        .map(|i| lo + (1.0 - lo) * i as f64 / (n - 1) as f64)
        .collect()
}

/// Brackets refined around the grid's largest local maxima.
const REFINE_PEAKS: usize = 8;
/// Points per bracket and round of refinement.
const REFINE_POINTS: usize = 65;
/// Rounds of refinement: each narrows a bracket 32-fold.
const REFINE_ROUNDS: usize = 5;

/// The maximum of `f` over `[grid[0], grid[last]]`, from its `values` on `grid`, refined around
/// the grid's largest local maxima: each bracket (a grid point and its neighbours) is sampled
/// on a finer grid and narrowed around its best point, round after round, so that a smooth
/// interior maximum is found to far better than 1e-8 relative. `f` evaluates many λ at once.
fn refine_max(
    grid: &[f64],
    values: &[f64],
    mut f: impl FnMut(&[f64]) -> Result<Vec<f64>, SpecError>,
) -> Result<(f64, f64), SpecError> {
    let n = grid.len().min(values.len());
    let mut best = (f64::NEG_INFINITY, grid.first().copied().unwrap_or(0.0));
    for i in 0..n {
        if values[i] > best.0 {
            best = (values[i], grid[i]);
        }
    }
    let least = values[..n].iter().copied().fold(f64::INFINITY, f64::min);
    if n < 3 || best.0 - least <= 1e-12 * best.0.abs() {
        // Too few points to bracket, or a function flat on the grid (one that λ does not
        // change, such as a shift of the history): nothing to refine.
        return Ok(best);
    }
    let mut peaks: Vec<usize> = (0..n)
        .filter(|&i| {
            (i == 0 || values[i] >= values[i - 1]) && (i + 1 == n || values[i] >= values[i + 1])
        })
        .collect();
    peaks.sort_by(|a, b| values[*b].total_cmp(&values[*a]));
    peaks.truncate(REFINE_PEAKS);
    let mut brackets: Vec<(f64, f64)> = peaks
        .iter()
        .map(|&i| (grid[i.saturating_sub(1)], grid[(i + 1).min(n - 1)]))
        .collect();
    for _ in 0..REFINE_ROUNDS {
        let mut points = Vec::with_capacity(brackets.len() * REFINE_POINTS);
        for (lo, hi) in &brackets {
            for j in 0..REFINE_POINTS {
                points.push(lo + (hi - lo) * j as f64 / (REFINE_POINTS - 1) as f64);
            }
        }
        let v = f(&points)?;
        for (b, (lo, hi)) in brackets.iter_mut().enumerate() {
            let part = &v[b * REFINE_POINTS..(b + 1) * REFINE_POINTS];
            let Some(j) = (0..REFINE_POINTS).max_by(|x, y| part[*x].total_cmp(&part[*y])) else {
                continue;
            };
            let at = points[b * REFINE_POINTS + j];
            if part[j] > best.0 {
                best = (part[j], at);
            }
            let step = (*hi - *lo) / (REFINE_POINTS - 1) as f64;
            (*lo, *hi) = ((at - step).max(*lo), (at + step).min(*hi));
        }
    }
    Ok(best)
}

fn mentions_range(e: &Expr) -> bool {
    match &e.ex {
        Ex::Range { .. } => true,
        Ex::Call(_, args) => args.iter().any(mentions_range),
        Ex::Neg(a) | Ex::Not(a) => mentions_range(a),
        Ex::Bin(_, a, b) => mentions_range(a) || mentions_range(b),
        Ex::If(c, a, b) => mentions_range(c) || mentions_range(a) || mentions_range(b),
        Ex::Num(_) | Ex::Var(_) | Ex::Index(..) => false,
    }
}

/// The window of past states the step equations read: `(state, offset)` pairs, or why none.
fn window(spec: &Spec) -> Result<Vec<(usize, i64)>, String> {
    let mut min_ref: Vec<i64> = spec.states.iter().map(|s| s.offset).collect();
    fn walk(spec: &Spec, e: &Expr, min_ref: &mut [i64]) -> Result<(), String> {
        match &e.ex {
            Ex::Index(n, idx) => {
                if let Some(s) = spec.state(n) {
                    match idx.first() {
                        Some(i) if i.var == Some('k') => min_ref[s] = min_ref[s].min(i.offset),
                        _ => {
                            return Err(format!(
                                "`{n}[{}]` is an absolute reference",
                                idx.first().map(|i| i.to_string()).unwrap_or_default()
                            ))
                        }
                    }
                }
                Ok(())
            }
            Ex::Range { .. } => Err("history aggregates (sum/cat over z[..]) grow with k".into()),
            Ex::Call(_, args) => args.iter().try_for_each(|a| walk(spec, a, min_ref)),
            Ex::Neg(a) | Ex::Not(a) => walk(spec, a, min_ref),
            Ex::Bin(_, a, b) => {
                walk(spec, a, min_ref)?;
                walk(spec, b, min_ref)
            }
            Ex::If(c, a, b) => {
                walk(spec, c, min_ref)?;
                walk(spec, a, min_ref)?;
                walk(spec, b, min_ref)
            }
            Ex::Num(_) | Ex::Var(_) => Ok(()),
        }
    }
    if mentions_range(&spec.output) {
        // The same rule as for a state: an average over the whole history has no fixed
        // step matrix.
        return Err(
            "the output aggregates the history (sum/cat over z[..]), which grows with K".into(),
        );
    }
    for eq in &spec.step {
        walk(spec, &eq.rhs, &mut min_ref)?;
    }
    let size: i64 = spec
        .states
        .iter()
        .enumerate()
        .map(|(s, st)| st.offset.saturating_sub(min_ref[s]))
        .fold(0i64, |a, b| a.saturating_add(b));
    if size > MAX_WINDOW {
        return Err(format!(
            "the recurrence reads {size} past values, more than {MAX_WINDOW}"
        ));
    }
    let mut w = Vec::new();
    for (s, st) in spec.states.iter().enumerate() {
        for j in min_ref[s]..st.offset {
            w.push((s, j));
        }
    }
    Ok(w)
}

/// The step matrices `M(λ)` with `window_{k+1} = M · window_k`, at step `k` of a `steps`-step
/// network, for every λ: `G` row-major `dim × dim` matrices.
fn step_matrices(
    spec: &Spec,
    win: &[(usize, i64)],
    k: i64,
    steps: usize,
    lambdas: &[f64],
    overrides: &Overrides,
) -> Result<Vec<Vec<f64>>, SpecError> {
    let (dim, g) = (win.len(), lambdas.len());
    let space = Linear {
        lambdas: lambdas.to_vec(),
        input: vec![0.0; dim * g],
        learnables: Registry::default(),
    };
    let mut ev = Evaluator::new(spec, space, steps, overrides);
    for (i, (s, j)) in win.iter().enumerate() {
        let mut e = vec![0.0; dim * g];
        e[i * g..(i + 1) * g].fill(1.0);
        ev.values.insert((*s, k + j), e);
    }
    ev.run_step(k).map_err(|e| located(spec, e))?;
    let mut mats = vec![Vec::with_capacity(dim * dim); g];
    for (s, j) in win {
        let row = ev
            .values
            .get(&(*s, k + 1 + j))
            .ok_or_else(|| SpecError::internal("step matrix: window value missing"))?;
        for (l, m) in mats.iter_mut().enumerate() {
            m.extend((0..dim).map(|c| row[c * g + l]));
        }
    }
    Ok(mats)
}

/// Iterations of the Schur decomposition (small matrices need tens; 100 keep a failing one cheap) before [`spectral_radius`]
/// falls back to Gelfand's formula (unshifted QR never converges on some matrices, a cyclic
/// permutation among them, and converges slowly on others).
const SCHUR_ITERATIONS: usize = 100;

fn spectral_radius(dim: usize, m: &[f64]) -> f64 {
    if dim == 0 {
        return 0.0;
    }
    let mat = nalgebra::DMatrix::from_row_slice(dim, dim, m);
    match nalgebra::linalg::Schur::try_new(mat.clone(), f64::EPSILON, SCHUR_ITERATIONS) {
        Some(schur) => schur
            .complex_eigenvalues()
            .iter()
            .map(|c| c.norm())
            .fold(0.0, f64::max),
        None => gelfand(mat),
    }
}

/// `ρ(M) = lim ‖M^n‖^(1/n)`, from `M^(2^48)` by repeated squaring, normalised at each step.
fn gelfand(mut a: nalgebra::DMatrix<f64>) -> f64 {
    const SQUARINGS: i32 = 48;
    let mut log = 0.0;
    for _ in 0..=SQUARINGS {
        let n = a.norm();
        if n == 0.0 || !n.is_finite() {
            return if n == 0.0 { 0.0 } else { f64::INFINITY };
        }
        a /= n;
        log += n.ln();
        a = &a * &a;
        log *= 2.0;
    }
    (log / 2f64.powi(SQUARINGS + 1)).exp()
}

fn same(a: &[Vec<f64>], b: &[Vec<f64>]) -> bool {
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .all(|(x, y)| (x - y).abs() <= 1e-12 * (1.0 + x.abs()))
}

/// The asymptotic rate `max_λ ρ(M(λ))` (refined like the contraction), or why there is none.
pub fn asymptotic(
    spec: &Spec,
    opts: &RateOptions,
    overrides: &Overrides,
) -> Result<Result<f64, String>, SpecError> {
    let win = match window(spec) {
        Ok(w) => w,
        Err(why) => return Ok(Err(why)),
    };
    let dim = win.len();
    let grid = lambda_grid(opts.kappa, opts.grid);
    let steps = opts.steps;
    // The same step at two network lengths: coefficients that read K have no single matrix.
    let m = step_matrices(spec, &win, 8, steps, &grid, overrides)?;
    if !same(
        &m,
        &step_matrices(spec, &win, 8, steps + 17, &grid, overrides)?,
    ) {
        return Ok(Err(
            "the coefficients depend on the number of steps K, so there is no single step matrix"
                .into(),
        ));
    }
    for k in [9i64, 17, 64] {
        if !same(&m, &step_matrices(spec, &win, k, steps, &grid, overrides)?) {
            return Ok(Err(
                "the coefficients vary with k (a schedule), so there is no single step matrix"
                    .into(),
            ));
        }
    }
    let radii: Vec<f64> = m.iter().map(|x| spectral_radius(dim, x)).collect();
    let (worst, _) = refine_max(&grid, &radii, |ls| {
        let ms = step_matrices(spec, &win, 8, steps, ls, overrides)?;
        Ok(ms.iter().map(|x| spectral_radius(dim, x)).collect())
    })?;
    Ok(Ok(worst))
}

/// Asymptotic rates above 1 by more than this count as divergence.
const DIVERGENCE_TOLERANCE: f64 = 1e-9;

fn rate_at(
    spec: &Spec,
    opts: &RateOptions,
    overrides: &Overrides,
    params: BTreeMap<String, f64>,
) -> Result<Rate, SpecError> {
    let grid = lambda_grid(opts.kappa, opts.grid);
    let keep = Keep::of(spec);
    let r = responses_at(spec, opts.steps, &grid, overrides, &keep)?;
    let mut curve = r.curve;
    let (contraction, worst_lambda) = match r.overflow_at {
        Some(_) => (None, 0.0),
        None => {
            let abs: Vec<f64> = r.last.iter().map(|v| v.abs()).collect();
            let (c, at) = refine_max(&grid, &abs, |ls| {
                let r = responses_at(spec, opts.steps, ls, overrides, &keep)?;
                Ok(match r.overflow_at {
                    Some(_) => vec![f64::INFINITY; ls.len()],
                    None => r.last.iter().map(|v| v.abs()).collect(),
                })
            })?;
            if let Some(last) = curve.last_mut() {
                *last = c;
            }
            (c.is_finite().then_some(c), at)
        }
    };
    let (asymptotic, asymptotic_note) = match asymptotic(spec, opts, overrides)? {
        Ok(r) => (Some(r), None),
        Err(why) => (None, Some(why)),
    };
    let diverges = match (r.overflow_at, contraction, asymptotic) {
        (Some(n), _, _) => Some(format!("its response overflows after {n} steps")),
        (_, None, _) => Some("its contraction overflows".into()),
        (_, _, Some(a)) if a > 1.0 + DIVERGENCE_TOLERANCE => {
            Some(format!("its asymptotic rate {a:.6} exceeds 1"))
        }
        _ => None,
    };
    if contraction.is_none() && r.overflow_at.is_none() {
        curve.pop();
    }
    Ok(Rate {
        params,
        contraction,
        worst_lambda,
        per_step: contraction.map(|c| c.powf(1.0 / opts.steps as f64)),
        asymptotic,
        asymptotic_note,
        diverges,
        curve,
    })
}

/// Why `spec` (at its defaults) diverges on quadratics with κ = 100 over `steps` steps, when
/// it does; `None` also where no rate is defined (concatenation) or the work is too large.
pub fn diverges(spec: &Spec, steps: usize) -> Option<String> {
    let opts = RateOptions {
        steps,
        grid: 201,
        ..RateOptions::default()
    };
    check_options(spec, &opts, 1).ok()?;
    rate_at(spec, &opts, &Overrides::new(), BTreeMap::new())
        .ok()?
        .diverges
}

/// The most work a rate may take, in λ-steps (steps × λ values × samples of a sweep, the λ
/// values being the grid and the refinement's points) for a recurrence with a fixed window:
/// about 8 s at 2 cores.
pub const MAX_WINDOW_WORK: f64 = 5.0e8;
/// The same for a recurrence that reads its whole history, in λ-reads (steps² / 2 × λ values ×
/// samples): about 8 s.
pub const MAX_HISTORY_WORK: f64 = 1.0e10;

fn check_options(spec: &Spec, opts: &RateOptions, samples: usize) -> Result<(), SpecError> {
    let bad = |msg: &str, hint: &str| {
        Err(SpecError::new(ErrorKind::InvalidValue, msg)
            .with_hint(hint)
            .at(&spec.file, &spec.text, None))
    };
    if !(opts.kappa.is_finite() && opts.kappa >= 1.0) {
        return bad(
            "the condition number κ must be a finite number ≥ 1",
            "pass e.g. --kappa 100",
        );
    }
    if opts.steps == 0 || opts.steps > 100_000 {
        return bad(
            "the number of steps must be between 1 and 100000",
            "pass e.g. --steps 20",
        );
    }
    if opts.grid < 2 || opts.grid > 1_000_000 {
        return bad(
            "the λ grid needs between 2 and 1000000 points",
            "pass e.g. --grid 2001",
        );
    }
    let lambdas = (opts.grid + REFINE_PEAKS * REFINE_POINTS * REFINE_ROUNDS) as f64;
    let per = lambdas * samples.max(1) as f64;
    let steps = opts.steps as f64;
    let (work, max, most, what) = match Keep::of(spec) {
        Keep::All => (
            steps * steps / 2.0 * per,
            MAX_HISTORY_WORK,
            (2.0 * MAX_HISTORY_WORK / per).sqrt(),
            "steps² / 2 × λ values (it reads its whole history)",
        ),
        Keep::Recent { .. } => (
            steps * per,
            MAX_WINDOW_WORK,
            MAX_WINDOW_WORK / per,
            "steps × λ values",
        ),
    };
    if work > max {
        let sweep = if samples > 1 {
            format!(" × {samples} settings of its ranges")
        } else {
            String::new()
        };
        return bad(
            &format!(
                "{} steps with a grid of {} points is too much work for this spec: {what}{sweep} \
                 is {work:.2e}, at most {max:e}",
                opts.steps, opts.grid
            ),
            &format!(
                "at most {} steps at this grid (pass a smaller --steps or --grid{})",
                most.floor(),
                if samples > 1 {
                    ", or fix the ranges with --set"
                } else {
                    ""
                }
            ),
        );
    }
    if spec
        .step
        .iter()
        .any(|e| crate::spec::validate::mentions_cat(&e.rhs))
        || crate::spec::validate::mentions_cat(&spec.output)
    {
        return Err(located(spec, no_cat(None)));
    }
    Ok(())
}

/// The worst-case contraction and asymptotic rate of `spec`, swept over its search ranges.
pub fn rate(
    spec: &Spec,
    opts: &RateOptions,
    overrides: &Overrides,
) -> Result<RateReport, SpecError> {
    spec.check_overrides(overrides)?;
    // Parameters to sweep: search ranges and choices not fixed by an override.
    let mut axes: Vec<(String, Vec<f64>)> = Vec::new();
    for p in &spec.params {
        if overrides.contains_key(&p.name) {
            continue;
        }
        match &p.kind {
            ParamKind::Range { .. } => axes.push((p.name.clone(), Vec::new())),
            ParamKind::Choices { values, .. } => axes.push((p.name.clone(), values.clone())),
            _ => {}
        }
    }
    // Range points: as many as the combination budget allows (at most RANGE_POINTS).
    let fixed: usize = axes
        .iter()
        .filter(|a| !a.1.is_empty())
        .map(|a| a.1.len())
        .product::<usize>()
        .max(1);
    let ranges = axes.iter().filter(|a| a.1.is_empty()).count() as u32;
    let mut points = RANGE_POINTS;
    while points > 2 && fixed.saturating_mul(points.saturating_pow(ranges)) > MAX_COMBINATIONS {
        points -= 1;
    }
    let sweep = match axes.is_empty() {
        true => 0,
        false => fixed
            .saturating_mul(points.saturating_pow(ranges))
            .min(MAX_COMBINATIONS),
    };
    check_options(spec, opts, 1 + sweep)?;
    let rate = rate_at(spec, opts, overrides, BTreeMap::new())?;
    if axes.is_empty() {
        return Ok(RateReport {
            name: spec.name.clone(),
            kappa: opts.kappa,
            steps: opts.steps,
            grid: opts.grid,
            rate,
            sweep: None,
        });
    }
    for (name, values) in axes.iter_mut() {
        if values.is_empty() {
            if let Some(ParamKind::Range { lo, hi, .. }) =
                spec.param(name).map(|p| &spec.params[p].kind)
            {
                *values = (0..points)
                    .map(|i| lo + (hi - lo) * i as f64 / (points - 1) as f64)
                    .collect();
            }
        }
    }
    let mut samples = Vec::new();
    let mut idx = vec![0usize; axes.len()];
    'outer: loop {
        if samples.len() >= MAX_COMBINATIONS {
            break;
        }
        let mut o = overrides.clone();
        let mut params = BTreeMap::new();
        for (a, (name, values)) in axes.iter().enumerate() {
            let v = values.get(idx[a]).copied().unwrap_or(0.0);
            o.insert(name.clone(), v);
            params.insert(name.clone(), v);
        }
        samples.push(rate_at(spec, opts, &o, params)?);
        for a in 0..axes.len() {
            idx[a] += 1;
            if idx[a] < axes[a].1.len() {
                continue 'outer;
            }
            idx[a] = 0;
        }
        break;
    }
    let pick = |better: fn(f64, f64) -> bool| -> Option<Rate> {
        samples
            .iter()
            .fold(None::<&Rate>, |acc, r| match acc {
                Some(a) if !better(r.contraction_or_inf(), a.contraction_or_inf()) => Some(a),
                _ => Some(r),
            })
            .cloned()
    };
    let (Some(best), Some(worst)) = (pick(|a, b| a < b), pick(|a, b| a > b)) else {
        return Err(SpecError::internal("empty sweep"));
    };
    Ok(RateReport {
        name: spec.name.clone(),
        kappa: opts.kappa,
        steps: opts.steps,
        grid: opts.grid,
        rate,
        sweep: Some(Sweep {
            samples,
            best,
            worst,
        }),
    })
}

impl std::fmt::Display for RateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: f(z) = ½λz², λ ∈ [1/κ, 1], κ = {}, {} steps, {} grid points",
            self.name, self.kappa, self.steps, self.grid
        )?;
        let line = |f: &mut std::fmt::Formatter<'_>, r: &Rate| -> std::fmt::Result {
            match (r.contraction, r.per_step) {
                (Some(c), Some(p)) => {
                    writeln!(
                        f,
                        "  contraction after N steps  max|p_N(λ)| = {c:.6e}  (at λ = {:.6})",
                        r.worst_lambda
                    )?;
                    writeln!(f, "  per step                   {p:.6}")?;
                }
                _ => writeln!(f, "  contraction after N steps  overflows (divergent)")?,
            }
            match (&r.asymptotic, &r.asymptotic_note) {
                (Some(a), _) => writeln!(f, "  asymptotic rate            max ρ(M(λ)) = {a:.6}")?,
                (None, Some(n)) => writeln!(f, "  asymptotic rate            n/a: {n}")?,
                _ => {}
            }
            match &r.diverges {
                Some(why) => writeln!(f, "  DIVERGES on quadratics: {why}"),
                None => Ok(()),
            }
        };
        line(f, &self.rate)?;
        if let Some(s) = &self.sweep {
            let fmt = |p: &BTreeMap<String, f64>| {
                p.iter()
                    .map(|(k, v)| format!("{k} = {v:.4}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            writeln!(f, "over the search ranges ({} samples):", s.samples.len())?;
            writeln!(f, " best  ({})", fmt(&s.best.params))?;
            line(f, &s.best)?;
            writeln!(f, " worst ({})", fmt(&s.worst.params))?;
            line(f, &s.worst)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load_str;

    fn opts(kappa: f64, steps: usize, grid: usize) -> RateOptions {
        RateOptions { kappa, steps, grid }
    }

    const GD: &str = "name: gd\nparams:\n  h: 1.0\nstate: [z]\nstep:\n  z[k+1]: z[k] - h * grad(z[k])\noutput: z\n";
    const HB: &str = "name: hb\nparams:\n  h: 1.0\n  beta: { range: [0.0, 0.9] }\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: z[k] - h * grad(z[k]) + beta * (z[k] - z[k-1])\noutput: z\n";

    #[test]
    fn gradient_descent_contracts_as_one_minus_one_over_kappa() {
        let s = load_str("gd.yaml", GD).unwrap();
        for (kappa, n) in [(10.0, 5), (100.0, 20), (1000.0, 50)] {
            let r = rate(&s, &opts(kappa, n, 501), &Overrides::new()).unwrap();
            let expect = (1.0 - 1.0 / kappa).powi(n as i32);
            for (i, c) in r.rate.curve.iter().enumerate() {
                let e = (1.0 - 1.0 / kappa).powi(i as i32 + 1);
                assert!((c - e).abs() < 1e-12, "step {}: {c} vs {e}", i + 1);
            }
            assert!(
                (r.rate.contraction.unwrap() - expect).abs() < 1e-12,
                "{:?} vs {expect}",
                r.rate.contraction
            );
            let asym = r.rate.asymptotic.unwrap();
            assert!((asym - (1.0 - 1.0 / kappa)).abs() < 1e-12, "{asym}");
        }
    }

    #[test]
    fn heavy_ball_with_optimal_parameters_has_the_optimal_rate() {
        let s = load_str("hb.yaml", HB).unwrap();
        for kappa in [4.0f64, 100.0, 10_000.0] {
            let sk = kappa.sqrt();
            let h = 4.0 / (1.0 + 1.0 / sk).powi(2);
            let beta = ((sk - 1.0) / (sk + 1.0)).powi(2);
            let o: Overrides = [("h".to_string(), h), ("beta".to_string(), beta)].into();
            let r = rate(&s, &opts(kappa, 10, 401), &o).unwrap();
            let expect = (sk - 1.0) / (sk + 1.0);
            let got = r.rate.asymptotic.unwrap();
            assert!(
                (got - expect).abs() < 1e-6,
                "kappa {kappa}: {got} vs {expect}"
            );
            assert!(r.sweep.is_none(), "beta is overridden, nothing to sweep");
        }
    }

    #[test]
    fn ranges_are_swept_and_schedules_have_no_asymptotic_rate() {
        let s = load_str("hb.yaml", HB).unwrap();
        let r = rate(&s, &opts(100.0, 10, 101), &Overrides::new()).unwrap();
        let sweep = r.sweep.unwrap();
        assert_eq!(sweep.samples.len(), RANGE_POINTS);
        let c = |r: &Rate| r.contraction.unwrap();
        assert!(c(&sweep.best) <= c(&sweep.worst));
        assert!(c(&sweep.best) <= c(&r.rate) && c(&r.rate) <= c(&sweep.worst));
        let nest = "name: n\nparams:\n  beta: { schedule: \"(k - 1) / (k + 2)\" }\nstate: [z, y]\ninit:\n  z[-1]: z[0]\nstep:\n  y[k]: z[k] + beta * (z[k] - z[k-1])\n  z[k+1]: y[k] - grad(y[k])\noutput: z\n";
        let s = load_str("n.yaml", nest).unwrap();
        let r = rate(&s, &opts(100.0, 30, 101), &Overrides::new()).unwrap();
        assert!(r.rate.asymptotic.is_none());
        assert!(r.rate.asymptotic_note.unwrap().contains("vary with k"));
        // Nesterov beats gradient descent after 30 steps at kappa = 100.
        let gd = rate(
            &load_str("gd.yaml", GD).unwrap(),
            &opts(100.0, 30, 101),
            &Overrides::new(),
        )
        .unwrap();
        assert!(
            r.rate.contraction < gd.rate.contraction,
            "{:?} vs {:?}",
            r.rate.contraction,
            gd.rate.contraction
        );
    }

    /// The largest |p(λ)| over a grid of a million points on [1/κ, 1]: an independent
    /// reference (the caller's own recurrence, not the evaluator).
    fn dense_max(kappa: f64, p: impl Fn(f64) -> f64) -> f64 {
        let n = 1_000_000;
        (0..=n)
            .map(|i| p(1.0 / kappa + (1.0 - 1.0 / kappa) * i as f64 / n as f64).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn coefficients_that_read_k_over_k_use_the_unrolled_count() {
        // h_k = 1 - k/K as a schedule and inline: p_N(λ) = Π_{k<N} (1 - (1 - k/N) λ).
        let sched = "name: s\nparams:\n  h: { schedule: \"1 - k/K\" }\nstate: [z]\nstep:\n  z[k+1]: z[k] - h * grad(z[k])\noutput: z\n";
        let inline =
            "name: i\nstate: [z]\nstep:\n  z[k+1]: z[k] - (1 - k/K) * grad(z[k])\noutput: z\n";
        for text in [sched, inline] {
            let s = load_str("k.yaml", text).unwrap();
            for n in [1usize, 6, 13] {
                let r = rate(&s, &opts(100.0, n, 2001), &Overrides::new()).unwrap();
                let p = |l: f64| {
                    (0..n)
                        .map(|k| 1.0 - (1.0 - k as f64 / n as f64) * l)
                        .product()
                };
                let want = dense_max(100.0, p);
                let got = r.rate.contraction.unwrap();
                assert!(
                    (got - want).abs() <= 1e-10 * want,
                    "{n} steps: {got} vs {want}"
                );
                let note = r.rate.asymptotic_note.unwrap();
                assert!(note.contains("number of steps K"), "{note}");
                // The evaluator's own responses agree at the end.
                let last = *responses(&s, n, 0.5, &Overrides::new())
                    .unwrap()
                    .last()
                    .unwrap();
                assert!((last - p(0.5)).abs() < 1e-14, "{last} vs {}", p(0.5));
            }
        }
    }

    #[test]
    fn interior_maxima_are_refined_to_1e_8() {
        // Heavy ball with β = 0.9 peaks inside [1/κ, 1] at 25 and 40 steps, between the points
        // of a 201-point grid (whose own maximum is 8.5e-5 too low at 25 steps).
        let s = load_str("hb.yaml", HB).unwrap();
        let o: Overrides = [("beta".to_string(), 0.9)].into();
        for n in [3usize, 25, 40] {
            let r = rate(&s, &opts(100.0, n, 201), &o).unwrap();
            let p = |l: f64| {
                let (mut prev, mut z) = (1.0f64, 1.0f64);
                for _ in 0..n {
                    (prev, z) = (z, z - l * z + 0.9 * (z - prev));
                }
                z
            };
            let want = dense_max(100.0, p);
            let got = r.rate.contraction.unwrap();
            assert!(
                (got - want).abs() <= 1e-8 * want,
                "{n} steps: {got} vs {want}"
            );
            assert!((p(r.rate.worst_lambda).abs() - got).abs() <= 1e-12 * want);
        }
    }

    #[test]
    fn triple_momentum_and_strongly_convex_nesterov_have_rate_one_minus_one_over_sqrt_kappa() {
        let tmm = "name: tmm\nparams:\n  a: 1.0\n  b: 0.5\n  g: 0.5\nstate: [z, y]\ninit:\n  z[-1]: z[0]\nstep:\n  y[k]: (1 + g) * z[k] - g * z[k-1]\n  z[k+1]: (1 + b) * z[k] - b * z[k-1] - a * grad(y[k])\noutput: z\n";
        let nag = "name: nag\nparams:\n  beta: 0.5\nstate: [z, y]\ninit:\n  z[-1]: z[0]\nstep:\n  y[k]: z[k] + beta * (z[k] - z[k-1])\n  z[k+1]: y[k] - grad(y[k])\noutput: z\n";
        let (tmm, nag) = (
            load_str("t.yaml", tmm).unwrap(),
            load_str("n.yaml", nag).unwrap(),
        );
        for kappa in [4.0f64, 100.0, 10_000.0] {
            let rho = 1.0 - 1.0 / kappa.sqrt();
            // Van Scoy, Freeman, Lynch (2018) with L = 1, μ = 1/κ.
            let o: Overrides = [
                ("a".to_string(), 1.0 + rho),
                ("b".to_string(), rho * rho / (2.0 - rho)),
                ("g".to_string(), rho * rho / ((1.0 + rho) * (2.0 - rho))),
            ]
            .into();
            let r = rate(&tmm, &opts(kappa, 10, 401), &o).unwrap();
            let got = r.rate.asymptotic.unwrap();
            // A repeated eigenvalue at λ = μ: computed eigenvalues are good to about √ε.
            assert!((got - rho).abs() < 1e-7, "TMM κ {kappa}: {got} vs {rho}");
            let beta = (kappa.sqrt() - 1.0) / (kappa.sqrt() + 1.0);
            let o: Overrides = [("beta".to_string(), beta)].into();
            let got = rate(&nag, &opts(kappa, 10, 401), &o)
                .unwrap()
                .rate
                .asymptotic
                .unwrap();
            assert!((got - rho).abs() < 1e-7, "NAG κ {kappa}: {got} vs {rho}");
        }
    }

    #[test]
    fn divergence_is_reported_never_a_number() {
        let hb = load_str("hb.yaml", HB).unwrap();
        let o: Overrides = [("beta".to_string(), 1.5)].into();
        let r = rate(&hb, &opts(100.0, 20, 201), &o).unwrap();
        assert!(r.rate.asymptotic.unwrap() > 1.4);
        assert!(r.rate.diverges.unwrap().contains("exceeds 1"));
        let r = rate(&hb, &opts(100.0, 3000, 201), &o).unwrap();
        assert_eq!(r.rate.contraction, None);
        assert!(r
            .rate
            .diverges
            .as_deref()
            .unwrap()
            .contains("overflows after"));
        assert!(r.rate.curve.iter().all(|c| c.is_finite()));
        assert!(r.to_string().contains("DIVERGES"), "{r}");
        let stable = rate(&hb, &opts(100.0, 20, 201), &Overrides::new()).unwrap();
        assert!(stable.rate.diverges.is_none());
        // A coefficient that overflows is an error where it is written.
        let e = load_str(
            "inf.yaml",
            "name: i\nstate: [z]\nstep:\n  z[k+1]: z[k] - 1e308 * 1e308 * grad(z[k])\noutput: z\n",
        )
        .unwrap_err();
        assert!(e.message.contains("not finite"), "{e}");
        assert_eq!(e.pos.map(|p| p.line), Some(4));
    }

    #[test]
    fn a_history_average_has_no_asymptotic_rate_as_output_or_as_state() {
        let out = "name: o\nstate: [z]\nstep:\n  z[k+1]: z[k] - grad(z[k])\noutput: sum(z[0..=K], 1/(K+1))\n";
        let state = "name: s\nstate: [z, m]\ninit:\n  z[0]: m[0]\nstep:\n  z[k+1]: z[k] - grad(z[k])\n  m[k+1]: sum(z[0..=k+1], 1/(k+2))\noutput: m\n";
        let (a, b) = (
            rate(
                &load_str("o.yaml", out).unwrap(),
                &opts(100.0, 12, 301),
                &Overrides::new(),
            )
            .unwrap(),
            rate(
                &load_str("s.yaml", state).unwrap(),
                &opts(100.0, 12, 301),
                &Overrides::new(),
            )
            .unwrap(),
        );
        assert!(a.rate.asymptotic.is_none() && b.rate.asymptotic.is_none());
        // The same method both ways: the same contraction.
        let (ca, cb) = (a.rate.contraction.unwrap(), b.rate.contraction.unwrap());
        assert!((ca - cb).abs() < 1e-14, "{ca} vs {cb}");
        let want = dense_max(100.0, |l| {
            (0..=12).map(|i| (1.0 - l).powi(i)).sum::<f64>() / 13.0
        });
        assert!((ca - want).abs() <= 1e-10 * want, "{ca} vs {want}");
    }

    #[test]
    fn work_past_the_bound_is_refused_with_the_largest_allowed() {
        let s = load_str(
            "o.yaml",
            "name: o\nstate: [z]\nstep:\n  z[k+1]: sum(z[0..=k], 1/(k+1)) - grad(z[k])\noutput: z\n",
        )
        .unwrap();
        let e = rate(&s, &opts(100.0, 100_000, 2001), &Overrides::new()).unwrap_err();
        assert!(e.message.contains("too much work"), "{e}");
        // √(2·10¹⁰ / (2001 + 2600)) = 2084.9.
        let hint = e.hint.clone().unwrap_or_default();
        assert!(hint.contains("at most 2084 steps"), "{e}");
        // A sweep multiplies the work: heavy ball's β range is 9 settings besides the defaults.
        let hb = load_str("hb.yaml", HB).unwrap();
        let e = rate(&hb, &opts(100.0, 100_000, 2001), &Overrides::new()).unwrap_err();
        assert!(e.message.contains("10 settings of its ranges"), "{e}");
        assert!(e.hint.clone().unwrap_or_default().contains("--set"), "{e}");
        // Fixed, the same spec is within the bound.
        let o: Overrides = [("beta".to_string(), 0.5)].into();
        assert!(rate(&hb, &opts(100.0, 2_000, 201), &o).is_ok());
    }

    #[test]
    fn a_matrix_unshifted_qr_cannot_decompose_still_has_its_radius() {
        // z[k+1] = z[k-3]: the step matrix is a 4-cycle, whose eigenvalues all lie on the unit
        // circle; nalgebra's unbounded Schur iteration never ended on it (found by fuzzing).
        let s = load_str(
            "lag.yaml",
            "name: lag\nstate: [z]\ninit:\n  z[-1]: z[0]\n  z[-2]: z[0]\n  z[-3]: z[0]\nstep:\n  z[k+1]: z[k-3] - 0.001 * grad(z[k])\noutput: z\n",
        )
        .unwrap();
        let r = rate(&s, &opts(100.0, 8, 21), &Overrides::new()).unwrap();
        let a = r.rate.asymptotic.unwrap();
        assert!(a > 0.99 && a < 1.01, "{a}");
        // z[k+1] = z[k-2] over a longer window converged so slowly it took 82 s under ASan.
        let lag2 = load_str(
            "lag2.yaml",
            "name: lag2\nstate: [z]\ninit:\n  z[-1]: z[0]\n  z[-2]: z[0]\n  z[-3]: z[0]\nstep:\n  z[k+1]: z[k-2] - 0.001 * grad(z[k-3])\noutput: z\n",
        )
        .unwrap();
        let started = std::time::Instant::now();
        let r = rate(&lag2, &opts(100.0, 8, 201), &Overrides::new()).unwrap();
        assert!(
            r.rate.asymptotic.is_some_and(|a| a > 0.99 && a < 1.01),
            "{r}"
        );
        eprintln!("lag 2: {:.2} s", started.elapsed().as_secs_f64());
        let cycle = [
            0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0,
        ];
        assert!((spectral_radius(4, &cycle) - 1.0).abs() < 1e-9);
        let m = nalgebra::DMatrix::from_row_slice(2, 2, &[0.5, 1.0, 0.0, 0.25]);
        assert!((gelfand(m) - 0.5).abs() < 1e-6);
    }
}
