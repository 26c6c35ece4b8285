//! Options shared by the commands that read a spec, and writing their outputs.

use crate::Failure;
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use optarch_core::error::SpecError;
use optarch_core::spec::{self, Overrides, Reading, Spec};
use std::io::Write;
use std::path::Path;

/// Options that pick a spec's parameters.
#[derive(Debug, Args, Clone)]
pub struct SpecArgs {
    /// Set a parameter, e.g. `--set beta=0.9` (repeatable); fixes search ranges too.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_override)]
    pub set: Vec<(String, f64)>,
    /// Override the spec's reading of grad: residual (grad = -B) or objective (grad = v - B).
    #[arg(long, value_enum)]
    pub reading: Option<ReadingArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReadingArg {
    Residual,
    Objective,
}

fn parse_override(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE (e.g. --set beta=0.9)"))?;
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number (in --set {s})"))?;
    if !v.is_finite() {
        return Err(format!("`{value}` is not a finite number"));
    }
    Ok((name.trim().to_string(), v))
}

/// Loads a spec with the `--reading` and `--set` options applied (overrides checked).
/// Errors of the spec file are [`Failure::Spec`]; errors of `--set` are bad usage.
pub fn load(path: &Path, args: &SpecArgs) -> Result<(Spec, Overrides), Failure> {
    let mut s = spec::load(path)?;
    if let Some(r) = args.reading {
        s.reading = match r {
            ReadingArg::Residual => Reading::Residual,
            ReadingArg::Objective => Reading::Objective,
        };
    }
    let mut overrides = Overrides::new();
    for (name, v) in &args.set {
        if let Some(first) = overrides.insert(name.clone(), *v) {
            return Err(Failure::Usage(
                SpecError::new(
                    optarch_core::error::ErrorKind::InvalidValue,
                    format!("--set {name} is given twice ({first} and {v})"),
                )
                .with_hint("give each parameter once")
                .at(&s.file, "", None)
                .to_string(),
            ));
        }
    }
    s.check_overrides(&overrides)
        .map_err(|e| Failure::Usage(e.to_string()))?;
    Ok((s, overrides))
}

/// Writes `bytes` to `path`, or to standard output for `-`.
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    if path == Path::new("-") {
        std::io::stdout()
            .write_all(bytes)
            .context("cannot write to standard output")?;
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_and_reject_garbage() {
        assert_eq!(parse_override("beta=0.9").unwrap(), ("beta".into(), 0.9));
        assert!(parse_override("beta").unwrap_err().contains("NAME=VALUE"));
        assert!(parse_override("beta=x")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_override("beta=inf").is_err());
    }
}
