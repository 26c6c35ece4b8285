//! `optarch codegen SPEC`: the module `#[derive(Unroll)]` generates, pretty-printed.

use crate::spec_args::{load, SpecArgs};
use crate::Failure;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct CodegenArgs {
    /// The spec file.
    pub spec: PathBuf,
    /// Number of steps to unroll.
    #[arg(long, short = 'k', default_value_t = 3)]
    pub steps: usize,
    /// The struct name (default: the spec name in CamelCase).
    #[arg(long)]
    pub name: Option<String>,
    /// One block shared by every step (tied weights) instead of `Vec<B>`.
    #[arg(long)]
    pub shared: bool,
    /// Print JSON (`spec`, `steps`, `type`, `code`) instead of the code alone.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub spec_args: SpecArgs,
}

pub fn run(a: CodegenArgs) -> Result<(), Failure> {
    let (s, o) = load(&a.spec, &a.spec_args)?;
    let code = optarch_core::codegen::source(&s, a.steps, &o, a.name.as_deref(), a.shared)?;
    if a.json {
        let ty = a
            .name
            .clone()
            .unwrap_or_else(|| optarch_core::codegen::type_name(&s.name));
        let v = serde_json::json!({
            "spec": s.name,
            "steps": a.steps,
            "type": ty,
            "shared": a.shared,
            "code": code,
        });
        out!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?
        );
    } else {
        print!("{code}");
    }
    Ok(())
}
