//! `optarch train`: train a spec's network, or resume a run.

use crate::spec_args::{load, SpecArgs};
use crate::Failure;
use anyhow::anyhow;
use clap::Args;
use optarch_core::device::DeviceChoice;
use optarch_search::train::TrainConfig;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The spec file.
    #[arg(long, value_name = "SPEC", required_unless_present = "resume")]
    pub spec: Option<PathBuf>,
    /// Continue the interrupted run in this directory (same schedule, same data order).
    #[arg(long, value_name = "DIR", conflicts_with = "spec")]
    pub resume: Option<PathBuf>,
    #[command(flatten)]
    pub train: TrainConfig,
    /// Run directory (default runs/<spec>-<preset><depth>-s<seed>).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub spec_args: SpecArgs,
}

/// Progress on a terminal: a bar per epoch with the running loss.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
}

impl optarch_search::train::Progress for Bar {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize) {
        let bar = indicatif::ProgressBar::new(batches as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("epoch {}/{epochs}", epoch + 1));
        self.bar = Some(bar);
    }
    fn batch(&mut self, loss: f64) {
        if let Some(b) = &self.bar {
            b.set_message(format!("loss {loss:.3}"));
            b.inc(1);
        }
    }
    fn epoch_end(&mut self, m: &optarch_search::train::EpochMetrics) -> bool {
        let line = optarch_search::train::epoch_line(m);
        match self.bar.take() {
            Some(b) => {
                b.finish_and_clear();
                b.println(line);
            }
            None => eprintln!("{line}"),
        }
        true
    }
}

pub fn run(a: TrainArgs, device: DeviceChoice, threads: Option<usize>) -> Result<(), Failure> {
    use optarch_search::train::{self as tr, Lines, Progress, RunConfigFile, RunSpec};
    use std::io::IsTerminal;
    let mut bar = Bar { bar: None };
    let mut lines = Lines;
    let progress: &mut dyn Progress = if std::io::stderr().is_terminal() {
        &mut bar
    } else {
        &mut lines
    };
    let summary = if let Some(dir) = &a.resume {
        tr::resume(dir, progress).map_err(anyhow::Error::from)?
    } else {
        let spec_path = a
            .spec
            .clone()
            .ok_or_else(|| anyhow!("--spec is required"))?;
        let (s, overrides) = load(&spec_path, &a.spec_args)?;
        let mut train = a.train.clone();
        train.run.device = device;
        train.run.threads = threads;
        let out = a.out.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "runs/{}-{}{}-s{}",
                s.name, train.arch.preset, train.arch.depth, train.run.seed
            ))
        });
        let cfg = RunConfigFile {
            spec: RunSpec {
                path: spec_path,
                text: s.text.clone(),
                overrides,
            },
            train,
        };
        eprintln!("run directory: {}", out.display());
        tr::train(cfg, &out, progress).map_err(anyhow::Error::from)?
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(anyhow::Error::from)?
        );
    } else {
        println!("{summary}");
    }
    if summary.status == tr::Status::Diverged {
        return Err(Failure::Invalid(
            "the run diverged (NaN or infinite loss): status `diverged` recorded".into(),
        ));
    }
    Ok(())
}
