//! Edge coefficients: polynomials in learnable scalars with constant folding.
//!
//! A coefficient on a topology edge is a constant, a schedule's value at some step (already a
//! constant once unrolled), or an expression in learnable parameters such as `1 - c_3`. Products
//! of coefficients appear when combinations are expanded (the coefficient table), so the
//! representation is a polynomial: a map from monomials (sorted lists of learnable ids) to
//! real factors. Terms whose factor is (numerically) zero are dropped, which is what "fold
//! constants, drop zero edges" rests on.

use serde::Serialize;
use std::collections::BTreeMap;

/// Factors smaller than this in magnitude are treated as exact zeros.
pub const ZERO_TOLERANCE: f64 = 1e-12;

/// How a polynomial coefficient becomes a value: the executor folds it into a scalar tensor,
/// the code generator into tokens, the theory into a number. [`fold`] fixes the order of the
/// operations for all of them, so that they compute the same floating-point result.
pub trait PolyAlgebra {
    type Value;
    type Error;
    /// Learnable scalar `id`.
    fn param(&mut self, id: usize) -> Result<Self::Value, Self::Error>;
    /// `a · b`.
    fn mul(&mut self, a: Self::Value, b: Self::Value) -> Self::Value;
    /// `a · f`, for a factor other than 1.
    fn scale(&mut self, a: Self::Value, f: f64) -> Self::Value;
    /// `a + b`.
    fn add(&mut self, a: Self::Value, b: Self::Value) -> Self::Value;
    /// `a + c`, for a constant other than 0.
    fn add_const(&mut self, a: Self::Value, c: f64) -> Self::Value;
}

/// Folds the polynomial `Σ factor · Π params[id]` (its monomials as `(ids, factor)`) in the one
/// order every consumer uses: each monomial the product of its scalars left to right, times its
/// factor unless 1, the monomials summed left to right, then the constant added unless 0.
/// `None` when the polynomial has no learnable term.
pub fn fold<'a, A: PolyAlgebra>(
    terms: impl IntoIterator<Item = (&'a [usize], f64)>,
    alg: &mut A,
) -> Result<Option<A::Value>, A::Error> {
    let mut acc: Option<A::Value> = None;
    let mut constant = 0.0;
    for (mono, f) in terms {
        let Some((first, rest)) = mono.split_first() else {
            constant += f;
            continue;
        };
        let mut t = alg.param(*first)?;
        for id in rest {
            let p = alg.param(*id)?;
            t = alg.mul(t, p);
        }
        if f != 1.0 {
            t = alg.scale(t, f);
        }
        acc = Some(match acc {
            None => t,
            Some(a) => alg.add(a, t),
        });
    }
    Ok(acc.map(|a| {
        if constant == 0.0 {
            a
        } else {
            alg.add_const(a, constant)
        }
    }))
}

/// Numbers: a polynomial at given values of its learnable scalars (missing ids count 0).
struct Numbers<'a>(&'a [f64]);

impl PolyAlgebra for Numbers<'_> {
    type Value = f64;
    type Error = std::convert::Infallible;
    fn param(&mut self, id: usize) -> Result<f64, Self::Error> {
        Ok(self.0.get(id).copied().unwrap_or(0.0))
    }
    fn mul(&mut self, a: f64, b: f64) -> f64 {
        a * b
    }
    fn scale(&mut self, a: f64, f: f64) -> f64 {
        a * f
    }
    fn add(&mut self, a: f64, b: f64) -> f64 {
        a + b
    }
    fn add_const(&mut self, a: f64, c: f64) -> f64 {
        a + c
    }
}

/// A polynomial in learnable parameters (ids index [`crate::topology::Topology::learnables`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Coef {
    terms: BTreeMap<Vec<usize>, f64>,
}

impl Coef {
    /// The zero coefficient.
    pub fn zero() -> Self {
        Self::default()
    }

    /// A constant.
    pub fn constant(c: f64) -> Self {
        let mut coef = Self::default();
        coef.add_term(Vec::new(), c);
        coef
    }

    /// The learnable parameter with id `id`.
    pub fn learnable(id: usize) -> Self {
        let mut coef = Self::default();
        coef.add_term(vec![id], 1.0);
        coef
    }

    fn add_term(&mut self, monomial: Vec<usize>, c: f64) {
        let entry = self.terms.entry(monomial).or_insert(0.0);
        *entry += c;
        if entry.abs() <= ZERO_TOLERANCE {
            self.terms.retain(|_, v| v.abs() > ZERO_TOLERANCE);
        }
    }

    /// True when every factor is a finite number.
    pub fn is_finite(&self) -> bool {
        self.terms.values().all(|v| v.is_finite())
    }

    /// Number of monomials.
    pub fn term_count(&self) -> usize {
        self.terms.len()
    }

    /// True when every term folded away.
    pub fn is_zero(&self) -> bool {
        self.terms.is_empty()
    }

    /// True for the constant 1.
    pub fn is_one(&self) -> bool {
        self.as_const()
            .is_some_and(|c| (c - 1.0).abs() <= ZERO_TOLERANCE)
    }

    /// The value when the coefficient holds no learnable parameter.
    pub fn as_const(&self) -> Option<f64> {
        match self.terms.len() {
            0 => Some(0.0),
            1 => self.terms.get(&Vec::new()).copied(),
            _ => None,
        }
    }

    /// Ids of the learnable parameters the coefficient depends on.
    pub fn learnables(&self) -> Vec<usize> {
        let mut ids: Vec<usize> = self.terms.keys().flatten().copied().collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The monomials and their factors.
    pub fn terms(&self) -> impl Iterator<Item = (&[usize], f64)> {
        self.terms.iter().map(|(m, c)| (m.as_slice(), *c))
    }

    /// `self + other`.
    pub fn add(&self, other: &Coef) -> Coef {
        let mut out = self.clone();
        for (m, c) in &other.terms {
            out.add_term(m.clone(), *c);
        }
        out
    }

    /// `self * c`.
    pub fn scale(&self, c: f64) -> Coef {
        let mut out = Coef::zero();
        for (m, v) in &self.terms {
            out.add_term(m.clone(), v * c);
        }
        out
    }

    /// `self * other`.
    pub fn mul(&self, other: &Coef) -> Coef {
        let mut out = Coef::zero();
        for (ma, ca) in &self.terms {
            for (mb, cb) in &other.terms {
                let mut m = ma.clone();
                m.extend_from_slice(mb);
                m.sort_unstable();
                out.add_term(m, ca * cb);
            }
        }
        out
    }

    /// The same polynomial with learnable ids renamed by `f`.
    pub fn remap(&self, f: &dyn Fn(usize) -> usize) -> Coef {
        let mut out = Coef::zero();
        for (m, c) in &self.terms {
            let mut m: Vec<usize> = m.iter().map(|id| f(*id)).collect();
            m.sort_unstable();
            out.add_term(m, *c);
        }
        out
    }

    /// The value with every learnable parameter replaced by `values[id]` (missing ids count 0),
    /// computed in [`fold`]'s order.
    pub fn eval(&self, values: &[f64]) -> f64 {
        match fold(self.terms(), &mut Numbers(values)) {
            Ok(Some(v)) => v,
            Ok(None) => self.terms().map(|(_, c)| c).sum(),
            Err(never) => match never {},
        }
    }

    /// Human-readable form, naming learnable parameters through `name`.
    pub fn display_with(&self, name: &dyn Fn(usize) -> String) -> String {
        if self.terms.is_empty() {
            return "0".to_string();
        }
        let mut out = String::new();
        for (i, (m, c)) in self.terms.iter().enumerate() {
            let (sign, mag) = if *c < 0.0 { ("-", -c) } else { ("+", *c) };
            if i == 0 {
                if sign == "-" {
                    out.push('-');
                }
            } else {
                out.push_str(&format!(" {sign} "));
            }
            let vars: Vec<String> = m.iter().map(|id| name(*id)).collect();
            if vars.is_empty() {
                out.push_str(&format_number(mag));
            } else if (mag - 1.0).abs() <= ZERO_TOLERANCE {
                out.push_str(&vars.join("·"));
            } else {
                out.push_str(&format!("{}·{}", format_number(mag), vars.join("·")));
            }
        }
        out
    }
}

/// Short decimal form: up to four significant digits, no trailing zeros.
pub fn format_number(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    if x.abs() < 1e-3 || x.abs() >= 1e9 {
        return format!("{x:.2e}");
    }
    if x.fract() == 0.0 {
        return format!("{}", x as i64);
    }
    let digits = (4 - 1 - x.abs().log10().floor() as i32).clamp(0, 12) as usize;
    let s = format!("{x:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "0" || s == "-0" {
        format!("{x:.2e}")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folding_drops_zero_terms() {
        let a = Coef::constant(1.0).add(&Coef::constant(-1.0));
        assert!(a.is_zero());
        let c = Coef::learnable(0);
        let one_minus_c = Coef::constant(1.0).add(&c.scale(-1.0));
        let back = one_minus_c.add(&c);
        assert!(back.is_one());
    }

    #[test]
    fn products_expand() {
        let c = Coef::learnable(2);
        let p = Coef::constant(1.0)
            .add(&c)
            .mul(&Coef::constant(1.0).add(&c.scale(-1.0)));
        // (1 + c)(1 - c) = 1 - c²
        assert_eq!(p.eval(&[0.0, 0.0, 0.5]), 0.75);
        assert_eq!(p.display_with(&|i| format!("c{i}")), "1 - c2·c2");
    }

    #[test]
    fn numbers_format_compactly() {
        assert_eq!(format_number(0.9), "0.9");
        assert_eq!(format_number(-2.0), "-2");
        assert_eq!(format_number(1.0 / 3.0), "0.3333");
        assert_eq!(format_number(1e-7), "1.00e-7");
    }
}
