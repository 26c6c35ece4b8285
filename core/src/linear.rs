//! The normal form of a recurrence: every right-hand side as a linear combination of atoms
//! (state terms, `grad(...)`, `cat(...)`, history sums) with symbolic coefficients, e.g.
//! `y[k] = (1 + beta[k])·z[k] - beta[k]·z[k-1]`. This is what `optarch check` prints, and a
//! readable statement of what a spec means; the [`crate::spec::eval::Evaluator`] remains the
//! one interpreter that computes with it.

use crate::coef::{format_number, ZERO_TOLERANCE};
use crate::expr::{BinOp, Ex, Expr};
use crate::spec::Spec;
use serde::Serialize;

/// A symbolic coefficient `Σ cᵢ · Πⱼ factorᵢⱼ`; factors are coefficient expressions as text.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SymCoef(pub Vec<(f64, Vec<String>)>);

impl SymCoef {
    fn constant(c: f64) -> Self {
        let mut s = SymCoef::default();
        s.push(c, Vec::new());
        s
    }

    fn factor(f: String) -> Self {
        let mut s = SymCoef::default();
        s.push(1.0, vec![f]);
        s
    }

    fn push(&mut self, c: f64, mut factors: Vec<String>) {
        factors.sort();
        match self.0.iter_mut().find(|(_, f)| *f == factors) {
            Some((v, _)) => *v += c,
            None => self.0.push((c, factors)),
        }
        self.0.retain(|(v, _)| v.abs() > ZERO_TOLERANCE);
    }

    fn add(mut self, other: SymCoef) -> SymCoef {
        for (c, f) in other.0 {
            self.push(c, f);
        }
        self
    }

    fn scale(self, k: f64) -> SymCoef {
        let mut out = SymCoef::default();
        for (c, f) in self.0 {
            out.push(c * k, f);
        }
        out
    }

    fn mul(&self, other: &SymCoef) -> SymCoef {
        let mut out = SymCoef::default();
        for (a, fa) in &self.0 {
            for (b, fb) in &other.0 {
                out.push(a * b, fa.iter().chain(fb).cloned().collect());
            }
        }
        out
    }

    /// True for the constant 1.
    pub fn is_one(&self) -> bool {
        matches!(self.0.as_slice(), [(c, f)] if f.is_empty() && (c - 1.0).abs() <= ZERO_TOLERANCE)
    }

    fn monomial(c: f64, f: &[String]) -> String {
        let body = f.join("·");
        match (f.is_empty(), (c - 1.0).abs() <= ZERO_TOLERANCE) {
            (true, _) => format_number(c),
            (false, true) => body,
            (false, false) => format!("{}·{body}", format_number(c)),
        }
    }
}

impl std::fmt::Display for SymCoef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("0");
        }
        for (i, (c, fs)) in self.0.iter().enumerate() {
            let (sign, mag) = if *c < 0.0 { ("-", -c) } else { ("+", *c) };
            match (i, sign) {
                (0, "-") => f.write_str("-")?,
                (0, _) => {}
                _ => write!(f, " {sign} ")?,
            }
            f.write_str(&SymCoef::monomial(mag, fs))?;
        }
        Ok(())
    }
}

/// What a coefficient multiplies.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Atom {
    /// A state term such as `z[k-1]`.
    State { text: String },
    /// A gradient evaluation at a linear combination.
    Grad { arg: Vec<Term> },
    /// `cat(...)` or `sum(...)` over the history, as written.
    Aggregate { text: String },
}

impl std::fmt::Display for Atom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Atom::State { text } | Atom::Aggregate { text } => f.write_str(text),
            Atom::Grad { arg } => write!(f, "grad({})", Combination(arg.clone())),
        }
    }
}

/// `coef · atom`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Term {
    pub coef: SymCoef,
    pub atom: Atom,
}

/// A linear combination of atoms.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Combination(pub Vec<Term>);

impl std::fmt::Display for Combination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("0");
        }
        for (i, t) in self.0.iter().enumerate() {
            // Pull a leading minus out of the coefficient: -h·B, -(1 - gamma)·B.
            let (neg, coef) = match t.coef.0.first() {
                Some((c, _)) if *c < 0.0 => (true, t.coef.clone().scale(-1.0)),
                _ => (false, t.coef.clone()),
            };
            match (i, neg) {
                (0, true) => f.write_str("-")?,
                (0, false) => {}
                (_, true) => f.write_str(" - ")?,
                (_, false) => f.write_str(" + ")?,
            }
            if coef.is_one() {
                write!(f, "{}", t.atom)?;
            } else if coef.0.len() > 1 {
                write!(f, "({coef})·{}", t.atom)?;
            } else {
                write!(f, "{coef}·{}", t.atom)?;
            }
        }
        Ok(())
    }
}

/// One equation in normal form.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NormalEquation {
    pub lhs: String,
    pub rhs: Combination,
}

impl std::fmt::Display for NormalEquation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {}", self.lhs, self.rhs)
    }
}

fn merge(mut acc: Vec<Term>, more: Vec<Term>) -> Vec<Term> {
    for t in more {
        match acc.iter_mut().find(|a| a.atom == t.atom) {
            Some(a) => a.coef = std::mem::take(&mut a.coef).add(t.coef),
            None => acc.push(t),
        }
    }
    acc.retain(|t| !t.coef.0.is_empty());
    acc
}

fn scaled(terms: Vec<Term>, c: &SymCoef) -> Vec<Term> {
    terms
        .into_iter()
        .map(|t| Term {
            coef: t.coef.mul(c),
            atom: t.atom,
        })
        .filter(|t| !t.coef.0.is_empty())
        .collect()
}

fn sym(e: &Expr) -> SymCoef {
    match &e.ex {
        Ex::Num(v) => SymCoef::constant(*v),
        Ex::Neg(a) => sym(a).scale(-1.0),
        Ex::Bin(BinOp::Add, a, b) => sym(a).add(sym(b)),
        Ex::Bin(BinOp::Sub, a, b) => sym(a).add(sym(b).scale(-1.0)),
        Ex::Bin(BinOp::Mul, a, b) => sym(a).mul(&sym(b)),
        Ex::Bin(BinOp::Div, a, b) => match b.ex {
            Ex::Num(d) if d != 0.0 => sym(a).scale(1.0 / d),
            _ => SymCoef::factor(format!("({e})")),
        },
        Ex::Var(_) | Ex::Index(..) | Ex::Call(..) => SymCoef::factor(e.to_string()),
        _ => SymCoef::factor(format!("({e})")),
    }
}

/// The linear combination a (validated) right-hand side denotes.
pub fn linear_form(spec: &Spec, e: &Expr) -> Vec<Term> {
    let one = || SymCoef::constant(1.0);
    match &e.ex {
        Ex::Index(..) => vec![Term {
            coef: one(),
            atom: Atom::State {
                text: e.to_string(),
            },
        }],
        Ex::Neg(a) => scaled(linear_form(spec, a), &SymCoef::constant(-1.0)),
        Ex::Bin(BinOp::Add, a, b) => merge(linear_form(spec, a), linear_form(spec, b)),
        Ex::Bin(BinOp::Sub, a, b) => merge(
            linear_form(spec, a),
            scaled(linear_form(spec, b), &SymCoef::constant(-1.0)),
        ),
        Ex::Bin(BinOp::Mul, a, b) => {
            let (l, c) = if spec.is_linear(a) { (a, b) } else { (b, a) };
            scaled(linear_form(spec, l), &sym(c))
        }
        Ex::Bin(BinOp::Div, a, b) => {
            let c = match b.ex {
                Ex::Num(d) if d != 0.0 => SymCoef::constant(1.0 / d),
                _ => SymCoef::factor(format!(
                    "1/{}",
                    if b.to_string().contains(' ') {
                        format!("({b})")
                    } else {
                        b.to_string()
                    }
                )),
            };
            scaled(linear_form(spec, a), &c)
        }
        Ex::Call(f, args) if f == "grad" => {
            let arg = args
                .first()
                .map(|a| linear_form(spec, a))
                .unwrap_or_default();
            vec![Term {
                coef: one(),
                atom: Atom::Grad { arg },
            }]
        }
        Ex::Call(..) => vec![Term {
            coef: one(),
            atom: Atom::Aggregate {
                text: e.to_string(),
            },
        }],
        _ => Vec::new(),
    }
}

/// Every equation of the spec (initial values first, then the step in evaluation order, then
/// the output) in normal form.
pub fn normal_form(spec: &Spec) -> Vec<NormalEquation> {
    let eq = |lhs: String, e: &Expr| NormalEquation {
        lhs,
        rhs: Combination(linear_form(spec, e)),
    };
    spec.init
        .iter()
        .chain(&spec.step)
        .map(|e| eq(e.lhs.clone(), &e.rhs))
        .chain(std::iter::once(eq("output".into(), &spec.output)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::load_str;

    #[test]
    fn heavy_ball_and_nesterov_normalise() {
        let hb = load_str(
            "hb.yaml",
            "name: hb\nparams:\n  h: 1.0\n  beta: 0.9\nstate: [z]\ninit:\n  z[-1]: z[0]\nstep:\n  z[k+1]: z[k] - h * grad(z[k]) + beta * (z[k] - z[k-1])\noutput: z\n",
        )
        .unwrap();
        let n: Vec<String> = normal_form(&hb).iter().map(|e| e.to_string()).collect();
        assert_eq!(
            n,
            [
                "z[-1] = z[0]",
                "z[k+1] = (1 + beta)·z[k] - h·grad(z[k]) - beta·z[k-1]",
                "output = z[K]"
            ]
        );
        let lm = load_str(
            "lm.yaml",
            "name: lm\nparams:\n  c: { init: 0.1, learn: true }\nstate: [z, y]\ninit:\n  z[-1]: z[0]\nstep:\n  y[k]: 2 * (z[k] - z[k-1]) / 4 + z[k]\n  z[k+1]: (1 - c) * y[k] + c * z[k-1] - grad(0.5 * y[k] + 0.5 * y[k])\noutput: z\n",
        )
        .unwrap();
        let n: Vec<String> = normal_form(&lm).iter().map(|e| e.to_string()).collect();
        assert_eq!(n[1], "y[k] = 1.5·z[k] - 0.5·z[k-1]");
        assert_eq!(n[2], "z[k+1] = (1 - c)·y[k] + c·z[k-1] - grad(y[k])");
        let e = crate::expr::parse("gamma * v[k] - (1 - gamma) * grad(z[k])").unwrap();
        let mr = load_str(
            "m.yaml",
            "name: m
params:
  gamma: 0.9
state: [z, v]
input: z
init:
  v[0]: 0
step:
  v[k+1]: gamma * v[k] - (1 - gamma) * grad(z[k])
  z[k+1]: z[k] + v[k+1]
output: z
",
        )
        .unwrap();
        assert_eq!(
            Combination(linear_form(&mr, &e)).to_string(),
            "gamma·v[k] - (1 - gamma)·grad(z[k])"
        );
    }
}
