//! `optarch graph SPEC`: unroll, draw, and print the analyses.

use crate::spec_args::{load, write_output, SpecArgs};
use crate::Failure;
use anyhow::Context;
use clap::{Args, ValueEnum};
use optarch_core::analysis;
use optarch_core::render::{self, Format};
use optarch_core::topology;
use optarch_search::report::base64;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The spec file.
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// Steps to unroll.
    #[arg(long, short = 'k', default_value_t = 8)]
    pub steps: usize,
    /// Picture format.
    #[arg(long, short, value_enum, default_value_t = FormatArg::Svg)]
    pub format: FormatArg,
    /// Output file; `-` writes to standard output (with `--json`: into the JSON document, as
    /// `picture.data`). Default: `<name>_k<steps>.<format>`.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Print the analyses as one JSON document on standard output instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub spec_args: SpecArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Svg,
    Png,
    Dot,
}

pub fn run(a: GraphArgs) -> Result<(), Failure> {
    let (s, o) = load(&a.spec, &a.spec_args)?;
    let t = topology::unroll(&s, a.steps, &o)?;
    let (format, ext) = match a.format {
        FormatArg::Svg => (Format::Svg, "svg"),
        FormatArg::Png => (Format::Png, "png"),
        FormatArg::Dot => (Format::Dot, "dot"),
    };
    let bytes = render::render(&t, format).context("cannot draw the topology")?;
    let out = a
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}_k{}.{ext}", s.name, a.steps)));
    let to_stdout = out == Path::new("-");
    let report = analysis::analyse(&t)?;
    if a.json {
        // Standard output carries the JSON; a picture asked for there goes inside it.
        let picture = if to_stdout {
            let (encoding, data) = match std::str::from_utf8(&bytes) {
                Ok(text) if !matches!(format, Format::Png) => ("utf-8", text.to_string()),
                _ => ("base64", base64(&bytes)),
            };
            serde_json::json!({"path": "-", "format": ext, "bytes": bytes.len(), "encoding": encoding, "data": data})
        } else {
            write_output(&out, &bytes)?;
            serde_json::json!({"path": out.display().to_string(), "format": ext, "bytes": bytes.len()})
        };
        let mut v = serde_json::to_value(&report).map_err(anyhow::Error::from)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert("picture".into(), picture);
        }
        let text = serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?;
        println!("{text}");
        return Ok(());
    }
    write_output(&out, &bytes)?;
    let text = format!("{report}wrote {} ({} bytes)", out.display(), bytes.len());
    if to_stdout {
        eprintln!("{text}");
    } else {
        println!("{text}");
    }
    Ok(())
}
