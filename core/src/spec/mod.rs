//! The spec language: YAML in, a validated recurrence out.
//!
//! [`load`] (a file) and [`load_str`] (text) are the only entry points; everything about the
//! YAML library stays behind them. A spec looks like this:
//!
//! ```yaml
//! name: nesterov
//! summary: Nesterov's accelerated gradient with theta_k = 2/(k+2)
//! gradient: residual            # grad(v) = -B(v); `objective` means grad(v) = v - B(v)
//! params:
//!   h: 1.0
//!   beta: { schedule: "(k - 1) / (k + 2)" }
//! state: [z, y]
//! init:
//!   z[-1]: z[0]
//! step:
//!   y[k]: z[k] + beta[k] * (z[k] - z[k-1])
//!   z[k+1]: y[k] - h * grad(y[k])
//! output: z
//! ```
//!
//! The full reference is `docs/SPEC.md`.

pub mod eval;
mod raw;
pub use raw::schema as json_schema;
pub mod validate;
pub mod yaml_pos;

use crate::error::{ErrorKind, Pos, SpecError};
use crate::expr::{Ex, Expr, Idx};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// How `grad(v)` relates to the learned block `B`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reading {
    /// `grad(v) = -B(v)`: a learned descent direction (gradient descent is ResNet).
    #[default]
    Residual,
    /// `grad(v) = v - B(v)`: the objective reading (gradient descent with h = 1 is a plain net).
    Objective,
}

impl std::fmt::Display for Reading {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reading::Residual => "residual",
            Reading::Objective => "objective",
        })
    }
}

/// How many scalars a learnable parameter has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    /// One scalar for the whole network.
    #[default]
    Shared,
    /// One scalar per step.
    Step,
    /// One scalar per edge of a history sum (`sum(z[0..=k], w)`).
    Edge,
}

/// What a parameter is.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamKind {
    /// A fixed number.
    Const(f64),
    /// A function of `k` (and `j` inside history sums), possibly recursive in itself.
    Schedule {
        expr: Expr,
        /// Values given explicitly for some `k` (needed by recursive schedules).
        start: BTreeMap<i64, f64>,
    },
    /// A learned scalar (or one per step / per edge) starting at `init`.
    Learnable { init: f64, per: Per },
    /// A search range; `default` is used when nothing is sampled.
    Range { lo: f64, hi: f64, default: f64 },
    /// A set of choices for the search; `default` is used when nothing is sampled.
    Choices { values: Vec<f64>, default: f64 },
}

/// A named parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    pub name: String,
    pub kind: ParamKind,
    /// Where the parameter is defined.
    pub pos: Option<Pos>,
    /// True when its schedule refers to its own earlier values.
    pub recursive: bool,
}

/// A state sequence such as `z`, `y` or `v`.
#[derive(Clone, Debug, PartialEq)]
pub struct State {
    pub name: String,
    /// The step equation defines `name[k + offset]`.
    pub offset: i64,
}

/// One equation: `state[index] = rhs`.
#[derive(Clone, Debug, PartialEq)]
pub struct Equation {
    pub state: usize,
    /// `k + offset` for step equations, an absolute index for `init`.
    pub index: Idx,
    /// The left-hand side as written.
    pub lhs: String,
    /// The right-hand side; positions inside it are file positions.
    pub rhs: Expr,
    pub pos: Option<Pos>,
}

/// A validated spec: the typed recurrence.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub file: String,
    pub text: String,
    pub name: String,
    pub summary: String,
    pub reading: Reading,
    pub params: Vec<Param>,
    pub states: Vec<State>,
    /// The state whose index 0 is the network input.
    pub input: usize,
    /// Initial values, in evaluation order.
    pub init: Vec<Equation>,
    /// Step equations, in evaluation order.
    pub step: Vec<Equation>,
    /// The output expression (in terms of `K`, the number of steps).
    pub output: Expr,
}

/// Functions of feature maps.
pub const MAP_FUNCTIONS: &[&str] = &["grad", "cat", "sum"];

/// Parameter values that replace a spec's own (sampled search values, command-line overrides).
pub type Overrides = BTreeMap<String, f64>;

impl Spec {
    /// The parameter called `name`.
    pub fn param(&self, name: &str) -> Option<usize> {
        self.params.iter().position(|p| p.name == name)
    }

    /// The state called `name`.
    pub fn state(&self, name: &str) -> Option<usize> {
        self.states.iter().position(|s| s.name == name)
    }

    /// True when the expression involves feature maps (states, grad, cat, sum).
    pub fn is_linear(&self, e: &Expr) -> bool {
        match &e.ex {
            Ex::Num(_) => false,
            Ex::Var(n) | Ex::Index(n, _) | Ex::Range { name: n, .. } => self.state(n).is_some(),
            Ex::Call(f, args) => {
                MAP_FUNCTIONS.contains(&f.as_str()) || args.iter().any(|a| self.is_linear(a))
            }
            Ex::Neg(a) | Ex::Not(a) => self.is_linear(a),
            Ex::Bin(_, a, b) => self.is_linear(a) || self.is_linear(b),
            Ex::If(c, a, b) => self.is_linear(c) || self.is_linear(a) || self.is_linear(b),
        }
    }

    /// An error located at `pos` in this spec's file.
    pub fn error_at(
        &self,
        pos: Option<Pos>,
        kind: ErrorKind,
        message: impl Into<String>,
    ) -> SpecError {
        SpecError::new(kind, message).at(&self.file, &self.text, pos)
    }

    /// Checks that every override names a parameter and gives it a finite value. A value may
    /// leave a parameter's search `range:` or `choices:` (they bound what a search draws, not
    /// what a user fixes: `optarch rate --set` explores beyond them). The error is located at
    /// the parameter's definition.
    pub fn check_overrides(&self, overrides: &Overrides) -> Result<(), SpecError> {
        for (name, &v) in overrides {
            if let Some(p) = self.param(name).and_then(|i| self.params.get(i)) {
                if !v.is_finite() {
                    return Err(SpecError::new(
                        ErrorKind::InvalidValue,
                        format!("`{name}` is set to {v}; it must be a finite number"),
                    )
                    .at(&self.file, &self.text, p.pos));
                }
            }
            if self.param(name).is_none() {
                let mut e = SpecError::new(
                    ErrorKind::UnknownParam,
                    format!(
                        "override `{name}` names no parameter of spec `{}`",
                        self.name
                    ),
                );
                let names: Vec<&str> = self.params.iter().map(|p| p.name.as_str()).collect();
                e = match crate::error::did_you_mean(name, names.iter().copied()) {
                    Some(s) => e.with_hint(format!("did you mean `{s}`?")),
                    None => e.with_hint(format!("the parameters are: {}", names.join(", "))),
                };
                return Err(e.at(&self.file, &self.text, None));
            }
        }
        Ok(())
    }
}

/// The most bytes a spec may have (1 MiB): a file is read no further, and longer text is
/// refused before it is parsed. Shipped specs are under 2 KiB.
pub const MAX_SPEC_BYTES: usize = 1 << 20;

/// Reads at most [`MAX_SPEC_BYTES`] + 1 bytes of `path` (one more tells a file that is too
/// long), so that `/dev/zero` or a huge file ends at once.
fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(MAX_SPEC_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

fn too_large(file: &str) -> SpecError {
    SpecError::new(
        ErrorKind::TooLarge,
        format!("the spec is larger than 1 MiB ({MAX_SPEC_BYTES} bytes), the most optarch reads"),
    )
    .with_hint(
        "a spec is a short text file (the shipped ones are under 2 KiB): is this the right file?",
    )
    .at(file, "", None)
}

/// The text of the spec file `path`: at most [`MAX_SPEC_BYTES`] are read, and bytes that are
/// not UTF-8 are reported at their line and column.
pub fn read_text(path: impl AsRef<Path>) -> Result<String, SpecError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let bytes = read_capped(path).map_err(|e| {
        SpecError::new(ErrorKind::Io, format!("cannot read the spec: {e}"))
            .with_hint("check the path; the shipped specs are in specs/")
            .at(&file, "", None)
    })?;
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(too_large(&file));
    }
    String::from_utf8(bytes).map_err(|e| {
        let bytes = e.as_bytes();
        let good = e.utf8_error().valid_up_to();
        let prefix = String::from_utf8_lossy(bytes.get(..good).unwrap_or_default());
        let line = prefix.matches('\n').count() + 1;
        let column = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        let utf16 = bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]);
        let (message, hint) = if utf16 {
            (
                "the spec is UTF-16 text; optarch reads UTF-8".to_string(),
                "save the file as UTF-8",
            )
        } else {
            (
                format!(
                    "the byte 0x{:02X} is not UTF-8 text",
                    bytes.get(good).copied().unwrap_or(0)
                ),
                "a spec is UTF-8 text: save the file as UTF-8, or check that it is a spec",
            )
        };
        SpecError::new(ErrorKind::Encoding, message)
            .with_hint(hint)
            .at(
                &file,
                &String::from_utf8_lossy(bytes),
                Some(Pos { line, column }),
            )
    })
}

/// The text of the spec file `path` as [`std::io::Result`] (for readers that report I/O
/// errors their own way, such as the derive macro): at most [`MAX_SPEC_BYTES`] are read; a
/// longer file is `FileTooLarge`, one that is not UTF-8 `InvalidData`.
pub fn read_file(path: impl AsRef<Path>) -> std::io::Result<String> {
    let bytes = read_capped(path.as_ref())?;
    if bytes.len() > MAX_SPEC_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than 1 MiB ({MAX_SPEC_BYTES} bytes), the most a spec may have"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()))
}

/// Loads and validates the spec in `path` (read with [`read_text`]).
pub fn load(path: impl AsRef<Path>) -> Result<Spec, SpecError> {
    let path = path.as_ref();
    let text = read_text(path)?;
    load_str(&path.display().to_string(), &text)
}

/// The first character no spec may hold (YAML's printable set, less NEL): NUL and the other
/// control characters but tab, line feed and carriage return, and U+FFFE/U+FFFF.
fn check_characters(file: &str, text: &str) -> Result<(), SpecError> {
    for (line, l) in text.split('\n').enumerate() {
        for (column, ch) in l.chars().enumerate() {
            let bad = (ch.is_control() && !matches!(ch, '\t' | '\r'))
                || matches!(ch, '\u{FFFE}' | '\u{FFFF}');
            if !bad {
                continue;
            }
            let code = format!("U+{:04X}", u32::from(ch));
            let (what, hint) = if ch == '\0' {
                (
                    format!("a NUL byte ({code})"),
                    "delete it; a spec is plain text (a binary file, or one saved as UTF-16, \
                     holds NUL bytes)",
                )
            } else {
                (format!("a control character ({code})"), "delete it")
            };
            return Err(SpecError::new(
                ErrorKind::Encoding,
                format!("the spec holds {what}, which no YAML text may hold"),
            )
            .with_hint(hint)
            .at(
                file,
                text,
                Some(Pos {
                    line: line + 1,
                    column: column + 1,
                }),
            ));
        }
    }
    Ok(())
}

/// Validates the spec `text`; `file` names it in error messages. Text over
/// [`MAX_SPEC_BYTES`] is refused before it is parsed; a UTF-8 byte order mark at the start is
/// dropped (positions count from the character after it).
pub fn load_str(file: &str, text: &str) -> Result<Spec, SpecError> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(too_large(file));
    }
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    check_characters(file, text)?;
    let pos = yaml_pos::scan(file, text)?;
    if !pos.has_root {
        return Err(SpecError::new(ErrorKind::Empty, "the spec is empty")
            .with_hint(
                "a spec needs at least `name:`, `state:`, `step:` and `output:`; \
                 start from one of the files in specs/",
            )
            .at(file, text, None));
    }
    if !pos.root_is_map {
        return Err(SpecError::new(
            ErrorKind::WrongType,
            "a spec must be a mapping of keys such as `name:`, `state:`, `step:`",
        )
        .with_hint("start from one of the files in specs/")
        .at(file, text, Some(Pos { line: 1, column: 1 })));
    }
    let raw = raw::parse(file, text)?;
    validate::build(file, text, &pos, raw)
}

#[cfg(test)]
mod tests;
