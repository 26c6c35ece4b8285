//! `optarch check SPEC|DIR...`: validate specs.

use crate::Failure;
use anyhow::{bail, Context, Result};
use clap::Args;
use optarch_core::analysis;
use optarch_core::error::SpecError;
use optarch_core::spec::{self, Overrides};
use optarch_core::{theory, topology};
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Spec files, or folders whose *.yaml files are all checked.
    #[arg(required = true, value_name = "SPEC")]
    pub specs: Vec<PathBuf>,
    /// Also unroll each spec for this many steps.
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// Print a JSON array of results instead of text.
    #[arg(long)]
    pub json: bool,
}

fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("no *.yaml spec in folder {}", p.display());
            }
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

#[derive(serde::Serialize)]
struct CheckResult {
    file: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    /// The recurrence in normal form, one equation per line.
    #[serde(skip_serializing_if = "Option::is_none")]
    recurrence: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocks: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_live_maps: Option<usize>,
    /// Why the method diverges on quadratics (at its defaults), when it does.
    #[serde(skip_serializing_if = "Option::is_none")]
    diverges: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<SpecError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rendered: Option<String>,
}

fn check_one(path: &Path, steps: usize) -> CheckResult {
    let file = path.display().to_string();
    let result = spec::load(path).and_then(|s| {
        let t = topology::unroll(&s, steps, &Overrides::new())?;
        let m = analysis::memory(&t)?;
        Ok((s, t.block_count(), m.peak))
    });
    match result {
        Ok((s, blocks, peak)) => CheckResult {
            diverges: theory::diverges(&s, steps),
            file,
            ok: true,
            recurrence: Some(
                optarch_core::linear::normal_form(&s)
                    .iter()
                    .map(|e| e.to_string())
                    .collect(),
            ),
            name: Some(s.name),
            summary: Some(s.summary),
            blocks: Some(blocks),
            peak_live_maps: Some(peak),
            error: None,
            rendered: None,
        },
        Err(e) => CheckResult {
            file,
            ok: false,
            name: None,
            summary: None,
            recurrence: None,
            blocks: None,
            peak_live_maps: None,
            diverges: None,
            rendered: Some(e.to_string()),
            error: Some(e),
        },
    }
}

pub fn run(a: CheckArgs) -> Result<(), Failure> {
    let files = expand(&a.specs)?;
    let results: Vec<CheckResult> = files.iter().map(|f| check_one(f, a.steps)).collect();
    let bad = results.iter().filter(|r| !r.ok).count();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).map_err(anyhow::Error::from)?
        );
    } else {
        for r in &results {
            match (&r.rendered, &r.name) {
                (Some(err), _) => eprintln!("{err}\n"),
                (None, Some(name)) => {
                    println!(
                        "ok  {:<40} {:<28} {} blocks at {} steps, peak {} live maps",
                        r.file,
                        name,
                        r.blocks.unwrap_or(0),
                        a.steps,
                        r.peak_live_maps.unwrap_or(0)
                    );
                    for eq in r.recurrence.iter().flatten() {
                        println!("      {eq}");
                    }
                    if let Some(why) = &r.diverges {
                        println!("    warning: {name} diverges on quadratics: {why}");
                    }
                }
                _ => {}
            }
        }
        if files.len() > 1 || bad > 0 {
            println!(
                "{} spec(s) checked, {} valid, {} invalid",
                results.len(),
                results.len() - bad,
                bad
            );
        }
    }
    // A spec that is there but wrong is invalid (1); when every failure is a file that cannot
    // be read at all, it is a file problem (3), as for any other command.
    let unreadable = |r: &CheckResult| {
        r.error
            .as_ref()
            .is_some_and(|e| e.kind == optarch_core::error::ErrorKind::Io)
    };
    if bad > 0 && results.iter().filter(|r| !r.ok).all(unreadable) {
        return Err(Failure::Exit(crate::EXIT_FAILURE));
    }
    if bad > 0 {
        return Err(Failure::Invalid(String::new()));
    }
    Ok(())
}
