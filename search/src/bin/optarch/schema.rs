//! `optarch schema spec|search`: the JSON Schema of a file format, as editors with a YAML
//! language server read it (the shipped copies are `schemas/*.schema.json`).

use crate::spec_args::write_output;
use crate::Failure;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which format: `spec` (a method's YAML) or `search` (a search configuration).
    #[arg(value_enum)]
    pub format: SchemaFormat,
    /// Write it to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SchemaFormat {
    Spec,
    Search,
}

/// The schema's text: pretty JSON with a final newline, as the shipped files hold it.
pub fn text(format: SchemaFormat) -> String {
    let v = match format {
        SchemaFormat::Spec => optarch_core::spec::json_schema(),
        SchemaFormat::Search => optarch_search::search::config::schema(),
    };
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

pub fn run(a: SchemaArgs) -> Result<(), Failure> {
    let text = text(a.format);
    let out = a.output.unwrap_or_else(|| PathBuf::from("-"));
    write_output(&out, text.as_bytes())?;
    Ok(())
}
