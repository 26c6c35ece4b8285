//! `optarch export DIR`: a search's winner, or a run directory.

use crate::Failure;
use clap::Args;
use optarch_search::export::{self, Exported};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A search directory (its winner is exported into DIR/export), or with --run, a run
    /// directory of `optarch train`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// DIR is a run directory (config.json, best.safetensors), not a search.
    #[arg(long)]
    pub run: bool,
    /// Where to write (default DIR/export).
    #[arg(long, value_name = "OUT")]
    pub out: Option<PathBuf>,
}

pub fn run(a: ExportArgs) -> Result<(), Failure> {
    let out = a.out.clone().unwrap_or_else(|| a.dir.join("export"));
    let e = if a.run {
        export::export_run(&a.dir, &out)
    } else {
        export::export_winner(&a.dir, &out)
    }
    .map_err(anyhow::Error::from)?;
    print(&e);
    Ok(())
}

/// The line that says what was exported.
pub fn print(e: &Exported) {
    out!(
        "exported {} ({} parameters) from {} to {}: spec.yaml, weights.safetensors, model.rs, \
         model.pt (TorchScript, input {:?} on the [0, 1] scale)",
        e.spec_name,
        e.parameters,
        e.run.display(),
        e.out.display(),
        e.input_shape
    );
}
