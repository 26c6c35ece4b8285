//! `optarch rate SPEC...`: convergence on quadratics.

use crate::spec_args::{load, write_output, SpecArgs};
use crate::Failure;
use anyhow::{anyhow, Context};
use clap::Args;
use optarch_core::render;
use optarch_core::spec::Overrides;
use optarch_core::theory::{self, RateOptions};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct RateArgs {
    /// Spec files (several are compared; JSON is then an array).
    #[arg(value_name = "SPEC", required = true)]
    pub specs: Vec<PathBuf>,
    /// Condition number κ: λ ranges over [1/κ, 1].
    #[arg(long, default_value_t = 100.0)]
    pub kappa: f64,
    /// Steps N for the contraction max|p_N(λ)|.
    #[arg(long, short = 'k', default_value_t = 20)]
    pub steps: usize,
    /// Points of the λ grid.
    #[arg(long, default_value_t = theory::DEFAULT_GRID)]
    pub grid: usize,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Draw the contraction curves max|p_n(λ)|, n = 1..N, of every spec (.svg or .png).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<PathBuf>,
    #[command(flatten)]
    pub spec_args: SpecArgs,
}

pub fn run(a: RateArgs) -> Result<(), Failure> {
    let opts = RateOptions {
        kappa: a.kappa,
        steps: a.steps,
        grid: a.grid,
    };
    let mut reports = Vec::with_capacity(a.specs.len());
    if a.specs.len() == 1 {
        let (s, o) = load(&a.specs[0], &a.spec_args)?;
        reports.push(theory::rate(&s, &opts, &o)?);
    } else {
        // Comparing: each `--set` applies to the specs that have the parameter.
        let lenient = SpecArgs {
            set: Vec::new(),
            reading: a.spec_args.reading,
        };
        let mut used = vec![false; a.spec_args.set.len()];
        for path in &a.specs {
            let (s, _) = load(path, &lenient)?;
            let mut o = Overrides::new();
            for (i, (name, v)) in a.spec_args.set.iter().enumerate() {
                if s.param(name).is_some() {
                    o.insert(name.clone(), *v);
                    used[i] = true;
                }
            }
            reports.push(theory::rate(&s, &opts, &o)?);
        }
        if let Some(i) = used.iter().position(|u| !u) {
            let name = &a.spec_args.set[i].0;
            return Err(Failure::Invalid(format!(
                "error: --set {name}=...: none of the specs has a parameter `{name}`"
            )));
        }
    }
    if a.json {
        let text = match reports.as_slice() {
            [one] => serde_json::to_string_pretty(one),
            many => serde_json::to_string_pretty(many),
        };
        println!("{}", text.map_err(anyhow::Error::from)?);
    } else {
        for r in &reports {
            print!("{r}");
        }
    }
    if let Some(plot) = &a.plot {
        let series: Vec<render::chart::Series> = reports
            .iter()
            .map(|r| render::chart::Series {
                label: r.name.clone(),
                values: r.rate.curve.clone(),
            })
            .collect();
        let svg = render::chart::log_line_chart(
            "Worst-case contraction on quadratics",
            &format!("max over λ ∈ [1/κ, 1] of |p_n(λ)|, κ = {}", a.kappa),
            "step n",
            "contraction",
            &series,
        );
        let bytes = match plot.extension().and_then(|e| e.to_str()) {
            Some("png") => render::svg_to_png(&svg).context("cannot draw the chart")?,
            Some("svg") => svg.into_bytes(),
            _ => {
                return Err(anyhow!(
                    "--plot needs a .svg or .png file name, not {}",
                    plot.display()
                )
                .into())
            }
        };
        write_output(plot, &bytes)?;
        if !a.json {
            println!("wrote {}", plot.display());
        }
    }
    Ok(())
}
