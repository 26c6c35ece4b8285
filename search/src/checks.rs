//! Range checks of configuration values, and the errors they make: the one place that says
//! where a value came from and what to do about it.
//!
//! A value is named by its key path (`["train", "optim", "lr"]`). Read from a YAML file, a
//! problem is located at the value's line and column (`search.yaml:7:12: train.optim.lr is
//! -1 ...`); given on the command line, it names the flag (`--lr is -1 ...`). The same check
//! serves both: [`crate::train::TrainConfig::check`] is called by `optarch train` for its
//! flags and by a search configuration for its `train:` section.

use optarch_core::error::Pos;
use optarch_core::spec::yaml_pos::PosMap;
use std::path::Path;

/// One problem of a configuration: where it is, what is wrong, how to fix it.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The file, or `command line`.
    pub file: String,
    /// The position of the offending value (or key), when the file says.
    pub pos: Option<Pos>,
    pub message: String,
    pub hint: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(p) = self.pos {
            write!(f, ":{}:{}", p.line, p.column)?;
        }
        write!(f, ": {}\n  hint: {}", self.message, self.hint)
    }
}

/// Why a configuration cannot be used: every problem found, each located.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{}", .problems.iter().map(Problem::to_string).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
}

impl ConfigError {
    /// One problem of `file` with no position.
    pub fn new(file: &Path, message: impl Into<String>, hint: impl Into<String>) -> Self {
        ConfigError {
            problems: vec![Problem {
                file: file.display().to_string(),
                pos: None,
                message: message.into(),
                hint: hint.into(),
            }],
        }
    }
}

/// Where the values being checked came from.
enum Source<'a> {
    /// A YAML file, with the positions of its keys and values.
    File { file: &'a Path, pos: &'a PosMap },
    /// The command line's flags.
    Flags,
}

/// The checks of a configuration's values: each failed check becomes a [`Problem`] located at
/// its key path (e.g. `["budget", "eta"]`), under the current prefix (see [`Checks::within`]).
pub struct Checks<'a> {
    source: Source<'a>,
    prefix: Vec<String>,
    problems: Vec<Problem>,
}

/// The flag of a key path of [`crate::train::TrainConfig`] where it is not the last key with
/// dashes.
const FLAGS: &[(&str, &str)] = &[
    ("data.path", "--data"),
    ("schedule.kind", "--schedule"),
    ("arch.custom", "--arch"),
    ("run.threads", "--threads"),
    ("run.device", "--device"),
];

impl<'a> Checks<'a> {
    /// Checks of the values of the YAML file `file`, whose positions are `pos`.
    pub fn new(file: &'a Path, pos: &'a PosMap) -> Self {
        Checks {
            source: Source::File { file, pos },
            prefix: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Checks of command-line flags.
    pub fn flags() -> Checks<'static> {
        Checks {
            source: Source::Flags,
            prefix: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Runs `f` with `key` added to the prefix of every path (a section of the file).
    pub fn within(&mut self, key: &str, f: impl FnOnce(&mut Self)) {
        self.prefix.push(key.to_string());
        f(self);
        self.prefix.pop();
    }

    fn full(&self, path: &[&str]) -> Vec<String> {
        self.prefix
            .iter()
            .cloned()
            .chain(path.iter().map(|s| s.to_string()))
            .collect()
    }

    /// What a user calls the value at `path`: its dotted key path in a file
    /// (`train.optim.lr`), its flag on the command line (`--lr`).
    pub fn name(&self, path: &[&str]) -> String {
        match self.source {
            Source::File { .. } => self.full(path).join("."),
            Source::Flags => {
                let dotted = path.join(".");
                FLAGS
                    .iter()
                    .find(|(k, _)| *k == dotted)
                    .map(|(_, f)| f.to_string())
                    .unwrap_or_else(|| {
                        format!("--{}", path.last().unwrap_or(&"").replace('_', "-"))
                    })
            }
        }
    }

    /// Records a problem at `path` unless `ok`. The position is the value's, else its nearest
    /// enclosing key's.
    pub fn require(&mut self, ok: bool, path: &[&str], message: String, hint: &str) {
        if ok {
            return;
        }
        let (file, pos) = match &self.source {
            Source::File { file, pos: map } => {
                let full = self.full(path);
                let full: Vec<&str> = full.iter().map(String::as_str).collect();
                let pos = (0..=full.len())
                    .rev()
                    .find_map(|n| map.get(&full[..n]))
                    .map(|n| n.value);
                (file.display().to_string(), pos)
            }
            Source::Flags => ("command line".to_string(), None),
        };
        self.problems.push(Problem {
            file,
            pos,
            message,
            hint: hint.into(),
        });
    }

    /// Requires the number at `path` to be finite and within `range` (its text, e.g. `in
    /// [0, 1)`, says the range in the message).
    pub fn number(&mut self, v: f64, path: &[&str], ok: bool, range: &str, hint: &str) {
        let name = self.name(path);
        if !v.is_finite() {
            let range = if range.is_empty() {
                String::new()
            } else {
                format!(", {range}")
            };
            self.require(
                false,
                path,
                format!("{name} is {v}; it must be a finite number{range}"),
                hint,
            );
            return;
        }
        self.require(ok, path, format!("{name} is {v}; it must be {range}"), hint);
    }

    /// The problems found, if any.
    pub fn finish(self) -> Result<(), ConfigError> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                problems: self.problems,
            })
        }
    }
}
