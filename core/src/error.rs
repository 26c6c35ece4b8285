//! Spec diagnostics: every error names the file, line and column, says what is wrong and hints
//! at the fix.

use serde::Serialize;
use std::fmt;

/// The class of a spec error; its `code()` is stable and appears in messages and JSON output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    Io,
    /// The file or text is larger than a spec may be (`spec::MAX_SPEC_BYTES`).
    TooLarge,
    /// Not UTF-8 text, or a character no spec may hold (NUL and other control characters).
    Encoding,
    Empty,
    YamlSyntax,
    UnknownKey,
    MissingKey,
    Duplicate,
    WrongType,
    InvalidValue,
    BadExpression,
    UnknownState,
    UnknownParam,
    FutureReference,
    NonLinear,
    MissingInit,
    Cycle,
    BadSchedule,
    DivisionByZero,
    Internal,
}

impl ErrorKind {
    /// The kebab-case code, e.g. `unknown-state`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::TooLarge => "too-large",
            ErrorKind::Encoding => "encoding",
            ErrorKind::Empty => "empty",
            ErrorKind::YamlSyntax => "yaml-syntax",
            ErrorKind::UnknownKey => "unknown-key",
            ErrorKind::MissingKey => "missing-key",
            ErrorKind::Duplicate => "duplicate",
            ErrorKind::WrongType => "wrong-type",
            ErrorKind::InvalidValue => "invalid-value",
            ErrorKind::BadExpression => "bad-expression",
            ErrorKind::UnknownState => "unknown-state",
            ErrorKind::UnknownParam => "unknown-param",
            ErrorKind::FutureReference => "future-reference",
            ErrorKind::NonLinear => "non-linear",
            ErrorKind::MissingInit => "missing-init",
            ErrorKind::Cycle => "cycle",
            ErrorKind::BadSchedule => "bad-schedule",
            ErrorKind::DivisionByZero => "division-by-zero",
            ErrorKind::Internal => "internal",
        }
    }
}

/// A position in a spec file: 1-based line and column (columns count characters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// An error in a spec, with its location and a hint (boxed: errors travel through many
/// `Result`s and the success path should stay small). Fields are reached through `Deref`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(transparent)]
pub struct SpecError(Box<SpecErrorData>);

/// The contents of a [`SpecError`].
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpecErrorData {
    pub kind: ErrorKind,
    pub file: String,
    /// 1-based line and column; `None` when the error concerns the whole file.
    pub pos: Option<Pos>,
    pub message: String,
    pub hint: Option<String>,
    /// The offending source line, for the caret display.
    #[serde(skip)]
    pub source_line: Option<String>,
}

impl std::ops::Deref for SpecError {
    type Target = SpecErrorData;
    fn deref(&self) -> &SpecErrorData {
        &self.0
    }
}

impl std::ops::DerefMut for SpecError {
    fn deref_mut(&mut self) -> &mut SpecErrorData {
        &mut self.0
    }
}

impl SpecError {
    /// A new error without location (attach one with [`SpecError::at`]).
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        SpecError(Box::new(SpecErrorData {
            kind,
            file: String::new(),
            pos: None,
            message: message.into(),
            hint: None,
            source_line: None,
        }))
    }

    /// An internal inconsistency (a bug in optarch, reported instead of panicking).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
            .with_hint("this is a bug in optarch; please report it with the spec that caused it")
    }

    /// Adds a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets the file and position, and picks the source line from `text`.
    pub fn at(mut self, file: &str, text: &str, pos: Option<Pos>) -> Self {
        self.file = file.to_string();
        self.pos = pos;
        self.source_line = pos
            .and_then(|p| text.lines().nth(p.line.saturating_sub(1)))
            .map(str::to_string);
        self
    }

    /// `file:line:column`.
    pub fn location(&self) -> String {
        match self.pos {
            Some(p) => format!("{}:{}:{}", self.file, p.line, p.column),
            None => self.file.clone(),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: error[{}]: {}",
            self.location(),
            self.kind.code(),
            self.message
        )?;
        if let (Some(line), Some(pos)) = (&self.source_line, self.pos) {
            let gutter = pos.line.to_string();
            let pad = " ".repeat(gutter.len());
            let caret_pad: String = line
                .chars()
                .take(pos.column.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            write!(f, "\n {pad} |\n {gutter} | {line}\n {pad} | {caret_pad}^")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// The closest candidate to `word` by edit distance, when it is close enough to be a typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        if word.chars().count().max(c.chars().count()) <= 2 {
            continue;
        }
        let d = edit_distance(word, c);
        if d <= word.len().max(c.len()).div_ceil(3) && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut prev2: Vec<usize> = prev.clone();
    for i in 1..=a.len() {
        let mut cur = vec![i; b.len() + 1];
        for j in 1..=b.len() {
            let sub = prev[j - 1] + usize::from(a[i - 1] != b[j - 1]);
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                cur[j] = cur[j].min(prev2[j - 2] + 1);
            }
        }
        prev2 = std::mem::replace(&mut prev, cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(did_you_mean("bta", ["beta", "h"]), Some("beta"));
        assert_eq!(
            did_you_mean("stpe", ["step", "state", "init"]),
            Some("step")
        );
        assert_eq!(did_you_mean("qqqq", ["beta", "h"]), None);
    }

    #[test]
    fn display_points_at_the_column() {
        let e = SpecError::new(ErrorKind::UnknownState, "unknown state `w`")
            .with_hint("declare it")
            .at(
                "a.yaml",
                "x: 1\n  z[k+1]: w[k]\n",
                Some(Pos {
                    line: 2,
                    column: 11,
                }),
            );
        let s = e.to_string();
        assert!(
            s.starts_with("a.yaml:2:11: error[unknown-state]: unknown state `w`"),
            "{s}"
        );
        assert!(s.contains("  z[k+1]: w[k]\n"), "{s}");
        assert!(s.contains("|           ^"), "{s}");
        assert!(s.ends_with("= hint: declare it"), "{s}");
    }
}
