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
    /// `max_λ |p_N(λ)|`: worst-case error contraction after N steps.
    pub contraction: f64,
    /// The λ where it is reached.
    pub worst_lambda: f64,
    /// `(max_λ |p_N(λ)|)^(1/N)`: the average contraction per step.
    pub per_step: f64,
    /// `max_λ ρ(M(λ))` when the coefficients are constant.
    pub asymptotic: Option<f64>,
    /// Why there is no asymptotic rate, when there is none.
    pub asymptotic_note: Option<String>,
    /// `max_λ |p_n(λ)|` for n = 1..=N: the contraction curve.
    pub curve: Vec<f64>,
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

/// Coefficient vectors with `grad(x) = λx`: over the input alone (dimension 1, the input is 1)
/// or over a window of past states (the input is never read).
struct Linear {
    lambda: f64,
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
    fn grad(&mut self, _: i64, v: Vec<f64>, _: Option<Pos>) -> Result<Vec<f64>, SpecError> {
        Ok(v.into_iter().map(|x| self.lambda * x).collect())
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

/// `p_n(λ)` for every n = 1..=steps, from one pass of the recurrence.
pub fn responses(
    spec: &Spec,
    steps: usize,
    lambda: f64,
    overrides: &Overrides,
) -> Result<Vec<f64>, SpecError> {
    let space = Linear {
        lambda,
        input: vec![1.0],
        learnables: Registry::default(),
    };
    let mut ev = Evaluator::new(spec, space, steps, overrides);
    let mut out = Vec::with_capacity(steps);
    let run = |ev: &mut Evaluator<'_, Linear>, out: &mut Vec<f64>| -> Result<(), SpecError> {
        ev.run_init()?;
        for n in 1..=steps {
            ev.run_step(n as i64 - 1)?;
            ev.steps = n;
            out.push(ev.output()?.first().copied().unwrap_or(0.0));
        }
        Ok(())
    };
    run(&mut ev, &mut out).map_err(|e| located(spec, e))?;
    Ok(out)
}

/// The λ grid on `[1/κ, 1]`, endpoints included.
pub fn lambda_grid(kappa: f64, points: usize) -> Vec<f64> {
    let lo = 1.0 / kappa;
    let n = points.max(2);
    (0..n)
        .map(|i| lo + (1.0 - lo) * i as f64 / (n - 1) as f64)
        .collect()
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

/// The step matrix `M` with `window_{k+1} = M · window_k`, at step `k`.
fn step_matrix(
    spec: &Spec,
    win: &[(usize, i64)],
    k: i64,
    lambda: f64,
    overrides: &Overrides,
) -> Result<Vec<Vec<f64>>, SpecError> {
    let dim = win.len();
    let space = Linear {
        lambda,
        input: vec![0.0; dim],
        learnables: Registry::default(),
    };
    let mut ev = Evaluator::new(spec, space, usize::try_from(k + 1).unwrap_or(1), overrides);
    for (i, (s, j)) in win.iter().enumerate() {
        let mut e = vec![0.0; dim];
        e[i] = 1.0;
        ev.values.insert((*s, k + j), e);
    }
    ev.run_step(k).map_err(|e| located(spec, e))?;
    let mut rows = Vec::with_capacity(dim);
    for (s, j) in win {
        let v = ev
            .values
            .get(&(*s, k + 1 + j))
            .cloned()
            .ok_or_else(|| SpecError::internal("step matrix: window value missing"))?;
        rows.push(v);
    }
    Ok(rows)
}

fn spectral_radius(m: &[Vec<f64>]) -> f64 {
    let n = m.len();
    if n == 0 {
        return 0.0;
    }
    let flat: Vec<f64> = m.iter().flatten().copied().collect();
    let mat = nalgebra::DMatrix::from_row_slice(n, n, &flat);
    mat.complex_eigenvalues()
        .iter()
        .map(|c| c.norm())
        .fold(0.0, f64::max)
}

/// The asymptotic rate, or why there is none.
pub fn asymptotic(
    spec: &Spec,
    kappa: f64,
    grid: usize,
    overrides: &Overrides,
) -> Result<Result<f64, String>, SpecError> {
    let win = match window(spec) {
        Ok(w) => w,
        Err(why) => return Ok(Err(why)),
    };
    let mut worst: f64 = 0.0;
    for lambda in lambda_grid(kappa, grid) {
        let probes = [8i64, 9, 17, 64];
        let m = step_matrix(spec, &win, probes[0], lambda, overrides)?;
        for k in &probes[1..] {
            let other = step_matrix(spec, &win, *k, lambda, overrides)?;
            let same = m
                .iter()
                .flatten()
                .zip(other.iter().flatten())
                .all(|(a, b)| (a - b).abs() <= 1e-12 * (1.0 + a.abs()));
            if !same {
                return Ok(Err(
                    "the coefficients vary with k (a schedule), so there is no single step matrix"
                        .into(),
                ));
            }
        }
        worst = worst.max(spectral_radius(&m));
    }
    Ok(Ok(worst))
}

fn rate_at(
    spec: &Spec,
    opts: &RateOptions,
    overrides: &Overrides,
    params: BTreeMap<String, f64>,
) -> Result<Rate, SpecError> {
    let mut curve = vec![0.0f64; opts.steps];
    let mut worst_lambda = 0.0;
    for lambda in lambda_grid(opts.kappa, opts.grid) {
        let p = responses(spec, opts.steps, lambda, overrides)?;
        for (c, v) in curve.iter_mut().zip(&p) {
            *c = c.max(v.abs());
        }
        if p.last().is_some_and(|v| v.abs() >= curve[opts.steps - 1]) {
            worst_lambda = lambda;
        }
    }
    let contraction = curve.last().copied().unwrap_or(0.0);
    let (asymptotic, asymptotic_note) = match asymptotic(spec, opts.kappa, opts.grid, overrides)? {
        Ok(r) => (Some(r), None),
        Err(why) => (None, Some(why)),
    };
    Ok(Rate {
        params,
        contraction,
        worst_lambda,
        per_step: contraction.powf(1.0 / opts.steps as f64),
        asymptotic,
        asymptotic_note,
        curve,
    })
}

fn check_options(spec: &Spec, opts: &RateOptions) -> Result<(), SpecError> {
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
    check_options(spec, opts)?;
    let rate = rate_at(spec, opts, overrides, BTreeMap::new())?;
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
                Some(a) if !better(r.contraction, a.contraction) => Some(a),
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
            writeln!(
                f,
                "  contraction after N steps  max|p_N(λ)| = {:.6e}  (at λ = {:.4})",
                r.contraction, r.worst_lambda
            )?;
            writeln!(f, "  per step                   {:.6}", r.per_step)?;
            match (&r.asymptotic, &r.asymptotic_note) {
                (Some(a), _) => writeln!(f, "  asymptotic rate            max ρ(M(λ)) = {a:.6}"),
                (None, Some(n)) => writeln!(f, "  asymptotic rate            n/a: {n}"),
                _ => Ok(()),
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
                (r.rate.contraction - expect).abs() < 1e-12,
                "{} vs {expect}",
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
        assert!(sweep.best.contraction <= sweep.worst.contraction);
        assert!(
            sweep.best.contraction <= r.rate.contraction
                && r.rate.contraction <= sweep.worst.contraction
        );
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
            "{} vs {}",
            r.rate.contraction,
            gd.rate.contraction
        );
    }
}
