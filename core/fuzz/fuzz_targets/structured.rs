//! Fuzz target `structured`: specs built from the grammar of the spec language, rendered as
//! YAML text and pushed through the pipeline of the `load` target.
//!
//! The fuzzer's bytes are read (through `arbitrary::Unstructured`) as choices in a grammar:
//! states and their step equations (`z[k+1]` or `y[k]`), parameters (numbers, schedules in
//! `k`/`K` and other parameters, recursive schedules with `start` values, chains of schedules
//! using schedules, learnable, range and choice parameters), initial values and an output,
//! with expressions of nested calls (`grad`, `cat`, `sum`, math functions), history ranges,
//! `if`/`else`, comparisons and stress forms near the limits (brackets nested 60 to 70 deep,
//! sums of 500 to 520 terms, hundreds of unary minus signs, schedule chains of 14 to 18).
//! Each value is written plain, quoted, folded over lines or as a block, and the text may get
//! a byte order mark, CRLF line ends, one look-alike character (`−`, `×`, a no-break space,
//! ...) or one NUL byte anywhere.
//!
//! Almost every input is a spec that parses, so the validator, the evaluator, the unroller,
//! the analyses and the rate see far more valid specs than the byte-level `load` target
//! produces. Besides panics, stack overflows, timeouts and memory blow-ups, three properties
//! are checked:
//! * a NUL byte is reported as `encoding` at its own line and column;
//! * an error that names the inserted look-alike (by its `U+` code) points at it exactly;
//! * every expression of a loaded spec prints (`Display`) to text that parses back and prints
//!   the same.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use optarch_core::error::{ErrorKind, Pos};
use optarch_core::{analysis, expr, linear, spec, theory, topology};

const STATES: [&str; 4] = ["z", "y", "v", "m"];
const MATH1: [&str; 9] = [
    "sqrt", "exp", "ln", "log", "abs", "sin", "cos", "floor", "ceil",
];
const MATH2: [&str; 3] = ["pow", "min", "max"];
const NUMBERS: [&str; 12] = [
    "0",
    "1",
    "2",
    "0.5",
    "0.9",
    "1e-3",
    "3.0",
    "1e308",
    "0.0000001",
    "10",
    "1.5",
    "100",
];
const OPS: [&str; 12] = [
    " + ", " - ", " * ", " / ", " < ", " <= ", " > ", " >= ", " == ", " != ", " && ", " || ",
];
/// Inserted into the text: look-alikes of ASCII operators and spaces, and other non-ASCII.
const ODD: [char; 16] = [
    '\u{2212}', '\u{2013}', '\u{2014}', '\u{00D7}', '\u{2217}', '\u{00B7}', '\u{2018}', '\u{2019}',
    '\u{201C}', '\u{201D}', '\u{00A0}', '\u{2264}', '\u{2265}', '\u{200B}', 'β', '√',
];

/// A parameter as the expressions see it.
#[derive(Clone)]
struct Name {
    name: String,
    /// Learnable `per: edge`: only as the weight of `sum(..)`.
    edge: bool,
}

struct Gen<'a, 'b> {
    u: &'b mut Unstructured<'a>,
    /// The declared states and the index offset of each one's step equation (1: `z[k+1]`).
    states: Vec<(&'static str, i64)>,
    params: Vec<Name>,
}

/// Where a scalar expression stands.
#[derive(Clone, Copy)]
struct Scalar<'s> {
    /// The parameters it may use (a schedule: those declared before it, so chains form).
    upto: usize,
    /// A recursive schedule's own name, used as `name[k-1]`.
    own: Option<&'s str>,
    /// Inside the weight of `sum(..)`: `j` and edge parameters are allowed.
    weight: bool,
    /// The index variable: `k`, or `K` in the output.
    var: char,
}

impl<'a> Gen<'a, '_> {
    fn pick<T: Copy>(&mut self, xs: &[T]) -> Result<T> {
        Ok(*self.u.choose(xs)?)
    }

    fn count(&mut self, lo: usize, hi: usize) -> Result<usize> {
        self.u.int_in_range(lo..=hi)
    }

    fn number(&mut self) -> Result<String> {
        Ok(match self.u.int_in_range(0u8..=3)? {
            0 => self.u.int_in_range(0u32..=1000)?.to_string(),
            1 => format!("{:?}", f64::from(self.u.int_in_range(-100i32..=100)?) / 8.0),
            _ => self.pick(&NUMBERS)?.to_string(),
        })
    }

    /// `k`, `k+1`, `k-2`, `K`, `3` as an index.
    fn index(&mut self, var: char) -> Result<String> {
        Ok(match self.u.int_in_range(0u8..=5)? {
            0 => var.to_string(),
            1 => format!("{var}-1"),
            2 => format!("{var}+1"),
            3 => format!("{var}-{}", self.count(2, 4)?),
            4 => format!("{}", self.u.int_in_range(-2i64..=2)?),
            _ => "K".to_string(),
        })
    }

    fn scalar_leaf(&mut self, c: Scalar) -> Result<String> {
        Ok(match self.u.int_in_range(0u8..=7)? {
            0 | 1 => self.number()?,
            2 => c.var.to_string(),
            3 => "K".to_string(),
            4 if c.weight => "j".to_string(),
            5 | 6 if c.upto > 0 => {
                let i = self.count(0, c.upto - 1)?;
                let p = self.params[i].clone();
                if p.edge && !c.weight {
                    return self.number();
                }
                match self.u.int_in_range(0u8..=2)? {
                    0 => p.name,
                    _ => format!("{}[{}]", p.name, self.index(c.var)?),
                }
            }
            7 if c.own.is_some() => {
                let own = c.own.unwrap_or("k");
                format!("{own}[k-{}]", self.count(1, 3)?)
            }
            _ => self.number()?,
        })
    }

    /// A scalar: a coefficient, a schedule, a condition.
    fn scalar(&mut self, c: Scalar, depth: usize) -> Result<String> {
        if depth == 0 {
            return self.scalar_leaf(c);
        }
        let d = depth - 1;
        Ok(match self.u.int_in_range(0u8..=15)? {
            0..=3 => self.scalar_leaf(c)?,
            4..=6 => {
                let op = self.pick(&OPS)?;
                format!("{}{op}{}", self.scalar(c, d)?, self.scalar(c, d)?)
            }
            7 => format!("-{}", self.scalar(c, d)?),
            8 => format!("!({})", self.scalar(c, d)?),
            9 => format!("({})", self.scalar(c, d)?),
            10 => format!("{}({})", self.pick(&MATH1)?, self.scalar(c, d)?),
            11 => format!(
                "{}({}, {})",
                self.pick(&MATH2)?,
                self.scalar(c, d)?,
                self.scalar(c, d)?
            ),
            12 => format!(
                "if {} {{ {} }} else {{ {} }}",
                self.scalar(c, d)?,
                self.scalar(c, d)?,
                self.scalar(c, d)?
            ),
            13 => {
                let leaf = self.scalar_leaf(c)?;
                self.stress(&leaf)?
            }
            _ => format!("{} * {}", self.scalar(c, d)?, self.scalar(c, d)?),
        })
    }

    /// A count: one time in four near `limit` (from `limit - 8` to `limit + 8`), else small.
    fn around(&mut self, limit: usize) -> Result<usize> {
        if chance(self.u, 4)? {
            self.count(limit - 8, limit + 8)
        } else {
            self.count(1, 12)
        }
    }

    /// Forms near the limits: deep brackets, long sums, many unary minus signs.
    fn stress(&mut self, leaf: &str) -> Result<String> {
        Ok(match self.u.int_in_range(0u8..=4)? {
            0 => {
                let n = self.around(64)?;
                format!("{}{leaf}{}", "(".repeat(n), ")".repeat(n))
            }
            1 => {
                let n = self.around(512)?;
                let op = self.pick(&[" + ", " - ", " * "])?;
                vec![leaf; n + 1].join(op)
            }
            2 => format!("{}{leaf}", "-".repeat(self.around(512)?)),
            3 => format!("{}{leaf}", "- ".repeat(self.around(64)?)),
            _ => {
                let n = self.around(64)?;
                format!("{}{leaf}{}", "abs(".repeat(n), ")".repeat(n))
            }
        })
    }

    /// A state term: `z[k]`, `y[k+1]`, `z[0]`, `z[K-1]`.
    fn state_ref(&mut self, var: char, absolute: bool) -> Result<String> {
        let (s, _) = self.pick(&self.states.clone())?;
        let idx = if absolute {
            self.u.int_in_range(-2i64..=0)?.to_string()
        } else {
            self.index(var)?
        };
        Ok(format!("{s}[{idx}]"))
    }

    fn range(&mut self, var: char) -> Result<String> {
        let (s, _) = self.pick(&self.states.clone())?;
        let lo = self.pick(&["0", "1", "-1", "k-2"])?;
        let op = self.pick(&["..=", ".."])?;
        let hi = self
            .pick(&[var.to_string().as_str(), "k-1", "0", "K"])?
            .to_string();
        Ok(format!("{s}[{lo}{op}{hi}]"))
    }

    /// A linear combination of feature maps.
    fn linear(&mut self, var: char, absolute: bool, depth: usize) -> Result<String> {
        let c = Scalar {
            upto: self.params.len(),
            own: None,
            weight: false,
            var,
        };
        if depth == 0 {
            return self.state_ref(var, absolute);
        }
        let d = depth - 1;
        Ok(match self.u.int_in_range(0u8..=16)? {
            0..=2 => self.state_ref(var, absolute)?,
            3 | 4 => format!("grad({})", self.linear(var, absolute, d)?),
            5 => {
                let n = self.count(1, 4)?;
                let parts = (0..n)
                    .map(|_| self.linear(var, absolute, d))
                    .collect::<Result<Vec<_>>>()?;
                format!("cat({})", parts.join(", "))
            }
            6 => format!("cat({})", self.range(var)?),
            7 => format!("sum({})", self.range(var)?),
            8 => {
                let w = Scalar { weight: true, ..c };
                let w = match self.params.iter().position(|p| p.edge) {
                    Some(i) if chance(self.u, 2)? => self.params[i].name.clone(),
                    _ => self.scalar(w, d.min(3))?,
                };
                format!("sum({}, {w})", self.range(var)?)
            }
            9 | 10 => format!(
                "{} * {}",
                self.scalar(c, d.min(3))?,
                self.linear(var, absolute, d)?
            ),
            11 | 12 => {
                let op = self.pick(&[" + ", " - "])?;
                format!(
                    "{}{op}{}",
                    self.linear(var, absolute, d)?,
                    self.linear(var, absolute, d)?
                )
            }
            13 => format!("-{}", self.linear(var, absolute, d)?),
            14 => format!("({})", self.linear(var, absolute, d)?),
            15 => format!(
                "{} / {}",
                self.linear(var, absolute, d)?,
                self.scalar(c, d.min(2))?
            ),
            _ => {
                let leaf = self.state_ref(var, absolute)?;
                self.stress(&leaf)?
            }
        })
    }
}

/// True one time in `n`; false once the bytes run out (`Unstructured::ratio` is then true,
/// which would put every rare mutation into every short input).
fn chance(u: &mut Unstructured, n: u8) -> Result<bool> {
    Ok(!u.ratio(n - 1, n)?)
}

/// How a value is written in the YAML text.
fn render(u: &mut Unstructured, value: &str, indent: usize) -> Result<String> {
    let pad = " ".repeat(indent + 2);
    let plain_ok = !value.is_empty()
        && !value.starts_with([
            '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"', '%',
            '@', '`',
        ])
        && !value.contains(": ")
        && !value.contains(" #")
        && !value.ends_with(':');
    let wrapped = |u: &mut Unstructured, sep: &str| -> Result<String> {
        let mut out = String::new();
        for (i, word) in value.split(' ').enumerate() {
            if i > 0 {
                if chance(u, 4)? {
                    out.push_str(sep);
                } else {
                    out.push(' ');
                }
            }
            out.push_str(word);
        }
        Ok(out)
    };
    Ok(match u.int_in_range(0u8..=6)? {
        0 | 1 if plain_ok => value.to_string(),
        2 if plain_ok => wrapped(u, &format!("\n{pad}"))?,
        3 => format!("'{}'", value.replace('\'', "''")),
        4 => format!("|-\n{pad}{}", wrapped(u, &format!("\n{pad}  "))?),
        5 => format!(">-\n{pad}{}", wrapped(u, &format!("\n{pad}"))?),
        _ => {
            let escaped = value.replace('\\', "\\\\").replace('"', "\\\"");
            // An escaped tab or line break now and then.
            let escaped = if chance(u, 4)? {
                escaped.replacen(' ', "\\t", 1)
            } else if chance(u, 4)? {
                escaped.replacen(' ', &format!("\\\n{pad}"), 1)
            } else {
                escaped
            };
            format!("\"{escaped}\"")
        }
    })
}

/// The spec text the bytes choose.
fn spec_text(u: &mut Unstructured) -> Result<String> {
    let n_states = u.int_in_range(1usize..=3)?;
    let mut states = Vec::new();
    for (i, s) in STATES.iter().take(n_states).enumerate() {
        let offset = if i == 0 || chance(u, 2)? { 1 } else { 0 };
        states.push((*s, offset));
    }
    let mut g = Gen {
        u,
        states,
        params: Vec::new(),
    };
    let mut out = String::from("# structured fuzz input\nname: fuzz\n");
    if chance(g.u, 3)? {
        out.push_str("summary: a generated spec\n");
    }
    match g.u.int_in_range(0u8..=2)? {
        0 => out.push_str("gradient: residual\n"),
        1 => out.push_str("gradient: objective\n"),
        _ => {}
    }

    // Parameters; a chain of schedules using schedules now and then.
    let mut params = String::new();
    let n_params = g.count(0, 6)?;
    for i in 0..n_params {
        let name = format!("p{i}");
        let before = g.params.len();
        let line = match g.u.int_in_range(0u8..=9)? {
            0 => format!("{}", g.number()?),
            1 => format!("{{ value: {} }}", g.number()?),
            2 | 3 => {
                let c = Scalar {
                    upto: before,
                    own: None,
                    weight: false,
                    var: 'k',
                };
                let s = g.scalar(c, 4)?;
                if chance(g.u, 2)? {
                    render(g.u, &s, 2)?
                } else {
                    format!("{{ schedule: \"{}\" }}", s.replace('"', ""))
                }
            }
            4 => {
                let c = Scalar {
                    upto: before,
                    own: Some(&name),
                    weight: false,
                    var: 'k',
                };
                let s = g.scalar(c, 4)?;
                let own = format!("{name}[k-1]");
                let s = if s.contains(&own) {
                    s
                } else {
                    format!("0.5 * {own} + {s}")
                };
                let n_start = g.count(0, 3)?;
                let start: Vec<String> = (0..n_start)
                    .map(|k| Ok(format!("{}: {}", k as i64 - 1, g.number()?)))
                    .collect::<Result<_>>()?;
                format!(
                    "{{ schedule: \"{}\", start: {{ {} }} }}",
                    s.replace('"', ""),
                    start.join(", ")
                )
            }
            5 => {
                let per = g.pick(&["shared", "step", "edge"])?;
                if per == "edge" {
                    g.params.push(Name {
                        name: name.clone(),
                        edge: true,
                    });
                    params.push_str(&format!(
                        "  {name}: {{ init: {}, learn: true, per: edge }}\n",
                        g.number()?
                    ));
                    continue;
                }
                format!("{{ init: {}, learn: true, per: {per} }}", g.number()?)
            }
            6 => {
                let (a, b) = (g.number()?, g.number()?);
                format!("{{ range: [{a}, {b}], default: {} }}", g.number()?)
            }
            7 => format!(
                "{{ choices: [{}, {}], doc: \"a choice\" }}",
                g.number()?,
                g.number()?
            ),
            _ => {
                // A chain c{i}_0 <- c{i}_1 <- ... around the limit of 16.
                let n = if chance(g.u, 2)? {
                    g.count(14, 18)?
                } else {
                    g.count(1, 4)?
                };
                for j in 0..n {
                    let body = if j == 0 {
                        "k + 1".to_string()
                    } else {
                        format!("c{i}_{} * 0.5 + 1 / (k + 2)", j - 1)
                    };
                    params.push_str(&format!("  c{i}_{j}: \"{body}\"\n"));
                    g.params.push(Name {
                        name: format!("c{i}_{j}"),
                        edge: false,
                    });
                }
                g.number()?
            }
        };
        params.push_str(&format!("  {name}: {line}\n"));
        g.params.push(Name { name, edge: false });
    }
    if !params.is_empty() {
        out.push_str("params:\n");
        out.push_str(&params);
    }
    let names: Vec<&str> = g.states.iter().map(|(s, _)| *s).collect();
    out.push_str(&format!("state: [{}]\n", names.join(", ")));
    if chance(g.u, 4)? {
        out.push_str(&format!("input: {}\n", g.pick(&names)?));
    }

    // Initial values at absolute indices: each of `s[-3]` to `s[-1]` now and then (rarely
    // `s[0]`, which only a state that is not the input may have).
    let mut init = String::new();
    for (s, offset) in g.states.clone() {
        for i in -3i64..=0 {
            let wanted = if i < 0 {
                !chance(g.u, 3)?
            } else {
                offset == 1 && chance(g.u, 4)?
            };
            if !wanted {
                continue;
            }
            let rhs = if chance(g.u, 2)? {
                g.linear('k', true, 2)?
            } else {
                format!("{s}[0]")
            };
            let rhs = render(g.u, &rhs, 2)?;
            init.push_str(&format!("  {s}[{i}]: {rhs}\n"));
        }
    }
    if !init.is_empty() {
        out.push_str("init:\n");
        out.push_str(&init);
    }

    // One step equation per state (now and then one missing or twice).
    out.push_str("step:\n");
    for (s, offset) in g.states.clone() {
        let depth = g.count(0, 6)?;
        let rhs = g.linear('k', false, depth)?;
        let rhs = render(g.u, &rhs, 2)?;
        let lhs = if offset == 1 {
            format!("{s}[k+1]")
        } else {
            format!("{s}[k]")
        };
        out.push_str(&format!("  {lhs}: {rhs}\n"));
    }

    let output = match g.u.int_in_range(0u8..=3)? {
        0 | 1 => names[0].to_string(),
        2 => g.linear('K', false, 2)?,
        _ => format!("cat({}[0..=K])", names[0]),
    };
    let output = render(g.u, &output, 0)?;
    out.push_str(&format!("output: {output}\n"));
    Ok(out)
}

/// Line and column (1-based, characters) of byte `at` in `text`.
fn pos_of(text: &str, at: usize) -> Pos {
    let before = &text[..at];
    Pos {
        line: before.matches('\n').count() + 1,
        column: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1,
    }
}

/// Puts `c` at a character boundary the bytes choose.
fn insert_at(u: &mut Unstructured, text: &mut String, c: char) -> Result<()> {
    let bounds: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
    let at = *u.choose(&bounds)?;
    text.insert(at, c);
    Ok(())
}

fn mutate(u: &mut Unstructured, text: &mut String) -> Result<()> {
    if chance(u, 8)? {
        *text = text.replace('\n', "\r\n");
    }
    if chance(u, 6)? {
        let c = *u.choose(&ODD)?;
        insert_at(u, text, c)?;
    }
    if chance(u, 16)? {
        insert_at(u, text, '\0')?;
    }
    if chance(u, 8)? {
        text.insert(0, '\u{FEFF}');
    }
    Ok(())
}

/// Every expression of a loaded spec prints to text that parses and prints the same.
fn check_printing(spec: &spec::Spec) {
    let mut exprs: Vec<&expr::Expr> = spec.step.iter().map(|e| &e.rhs).collect();
    exprs.extend(spec.init.iter().map(|e| &e.rhs));
    exprs.push(&spec.output);
    for p in &spec.params {
        if let spec::ParamKind::Schedule { expr, .. } = &p.kind {
            exprs.push(expr);
        }
    }
    for e in exprs {
        let printed = e.to_string();
        match expr::parse(&printed) {
            Ok(again) => assert_eq!(again.to_string(), printed, "printing is not stable"),
            Err(err) => panic!("`{printed}` (printed from a loaded spec) does not parse: {err:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let Ok(mut text) = spec_text(&mut u) else {
        return;
    };
    let _ = mutate(&mut u, &mut text);
    let steps = u.int_in_range(5usize..=12).unwrap_or(6);

    let result = spec::load_str("fuzz.yaml", &text);
    // `OPTARCH_FUZZ_PRINT=1 cargo +nightly fuzz run structured <input>` shows the spec an input
    // stands for, and how loading it ended.
    if std::env::var_os("OPTARCH_FUZZ_PRINT").is_some() {
        match &result {
            Ok(s) => eprintln!("{text}\n=> loaded `{}`", s.name),
            Err(e) => eprintln!("{text}\n=> {e}"),
        }
    }
    // Positions count from the character after a byte order mark.
    let body = text.strip_prefix('\u{FEFF}').unwrap_or(&text);
    if text.len() <= spec::MAX_SPEC_BYTES {
        if let Some(at) = body.find('\0') {
            let e = result.as_ref().err();
            assert_eq!(e.map(|e| e.kind), Some(ErrorKind::Encoding), "{text:?}");
            assert_eq!(e.and_then(|e| e.pos), Some(pos_of(body, at)), "{text:?}");
        }
    }
    if let Err(e) = &result {
        for c in ODD {
            let code = format!("U+{:04X}", u32::from(c));
            if e.message.contains(&code) && body.matches(c).count() == 1 {
                let at = body.find(c).map(|i| pos_of(body, i));
                assert_eq!(e.pos, at, "{e}\n{text:?}");
            }
        }
    }
    let spec = match result {
        Ok(spec) => spec,
        Err(err) => {
            std::hint::black_box(err.to_string());
            return;
        }
    };
    check_printing(&spec);
    for eq in linear::normal_form(&spec) {
        std::hint::black_box(eq.to_string());
    }

    // The `load` target's pipeline, and one longer unrolling.
    let overrides = spec::Overrides::default();
    for steps in [1, 2, 3, 4, steps] {
        match topology::unroll(&spec, steps, &overrides) {
            Ok(topo) => {
                match analysis::analyse(&topo) {
                    Ok(a) => {
                        std::hint::black_box(a.to_string());
                    }
                    Err(err) => {
                        std::hint::black_box(err.to_string());
                    }
                }
                if let Err(err) = analysis::memory(&topo) {
                    std::hint::black_box(err.to_string());
                }
            }
            Err(err) => {
                std::hint::black_box(err.to_string());
            }
        }
    }
    let opts = theory::RateOptions {
        kappa: 10.0,
        steps: 3,
        grid: 5,
    };
    match theory::rate(&spec, &opts, &overrides) {
        Ok(report) => {
            std::hint::black_box(report);
        }
        Err(err) => {
            std::hint::black_box(err.to_string());
        }
    }
});
