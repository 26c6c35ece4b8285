//! `optarch export DIR`: a search's winner, or a run directory.

use crate::Failure;
use clap::Args;
use optarch_search::export::{self, Exported, Formats};
use optarch_search::train::{Precision, PrecisionConfig, Switch};
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
    /// The precision traced into model.pt: fp32 (exact, the default), bf16 (the mixed
    /// precision optarch trains in), or auto (bf16 where this CPU computes in bfloat16). The
    /// weights file stays fp32.
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Trace with NHWC strides: auto (on with bf16), on or off; `--channels-last` alone is on.
    #[arg(
        long = "channels-last",
        value_enum,
        num_args = 0..=1,
        default_value_t = Switch::Auto,
        default_missing_value = "on"
    )]
    pub channels_last: Switch,
    /// What to write besides spec.yaml, weights.safetensors and export.json: pytorch
    /// (model.py, an nn.Module to fine-tune), torchscript (model.pt, traced, for inference),
    /// rust (model.rs, for the derive); comma-separated, default all three.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Format::Pytorch, Format::Torchscript, Format::Rust])]
    pub format: Vec<Format>,
    /// Print what was exported (export.json's content) as JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// An artifact of the export.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Pytorch,
    Torchscript,
    Rust,
}

pub fn run(a: ExportArgs) -> Result<(), Failure> {
    let out = a.out.clone().unwrap_or_else(|| a.dir.join("export"));
    if a.precision == Precision::Fp16 {
        eprintln!(
            "error: --precision fp16 cannot be exported: it is CUDA autocast, not a traced \
             cast; use fp32 or bf16"
        );
        return Err(Failure::Exit(crate::EXIT_USAGE));
    }
    let mut p = PrecisionConfig {
        precision: a.precision,
        channels_last: a.channels_last,
    };
    p.resolve(tch::Device::Cpu, 0); // the CPU's choice does not depend on the step's size
    let formats = Formats {
        pytorch: a.format.contains(&Format::Pytorch),
        torchscript: a.format.contains(&Format::Torchscript),
        rust: a.format.contains(&Format::Rust),
    };
    let e = if a.run {
        export::export_run(&a.dir, &out, p.compute(), formats)
    } else {
        export::export_winner(&a.dir, &out, p.compute(), formats)
    }
    .map_err(anyhow::Error::from)?;
    if a.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&e).map_err(anyhow::Error::from)?
        );
    } else {
        print(&e);
    }
    Ok(())
}

/// The line that says what was exported.
pub fn print(e: &Exported) {
    let pt = if e.files.iter().any(|f| f == "model.pt") {
        format!(" (model.pt traced in {})", e.compute)
    } else {
        String::new()
    };
    out!(
        "exported {} ({} parameters) from {} to {}: {}{pt}; input {:?} on the [0, 1] scale; \
         in PyTorch: `{}` in model.py",
        e.spec_name,
        e.parameters,
        e.run.display(),
        e.out.display(),
        e.files.join(", "),
        e.input_shape,
        e.python_class
    );
}
