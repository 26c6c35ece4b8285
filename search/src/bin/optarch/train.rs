//! `optarch train`: train a spec's network, or resume a run.

use crate::spec_args::{load, SpecArgs};
use crate::Failure;
use anyhow::anyhow;
use clap::Args;
use optarch_core::device::DeviceChoice;
use optarch_search::checks::Checks;
use optarch_search::train::TrainConfig;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

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

/// Progress on a terminal: a bar per epoch with the running loss, the epoch's ETA and, from
/// the second epoch this process trains, the whole run's.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
    /// When this process began training, and at which epoch.
    started: Option<(std::time::Instant, usize)>,
}

impl optarch_search::train::Progress for Bar {
    fn epoch_start(&mut self, epoch: usize, epochs: usize, batches: usize) {
        let (t0, e0) = *self
            .started
            .get_or_insert_with(|| (std::time::Instant::now(), epoch));
        let run_eta = match epoch.checked_sub(e0) {
            Some(done) if done > 0 => {
                let per_epoch = t0.elapsed() / u32::try_from(done).unwrap_or(u32::MAX);
                let left = u32::try_from(epochs.saturating_sub(epoch)).unwrap_or(u32::MAX);
                format!(", run ETA {}", indicatif::HumanDuration(per_epoch * left))
            }
            _ => String::new(),
        };
        let bar = indicatif::ProgressBar::new(batches as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {pos}/{len} {msg}, epoch ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(format!("epoch {}/{epochs}{run_eta}", epoch + 1));
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

/// The options `--resume` takes besides its directory: the run's own settings come from its
/// `config.json`.
const RESUME_OPTIONS: [&str; 4] = ["resume", "json", "device", "threads"];

/// Refuses options a resumed run would ignore: a resumed run continues with the settings it
/// was started with (its schedule spans the epochs it was started for, so it cannot be
/// extended either); `--device` and `--threads` may be given only as they were recorded.
fn check_resume(
    dir: &std::path::Path,
    given: &[String],
    device: DeviceChoice,
    threads: Option<usize>,
) -> Result<(), Failure> {
    let ignored: Vec<String> = given
        .iter()
        .filter(|g| !RESUME_OPTIONS.contains(&g.as_str()))
        .map(|g| format!("--{g}"))
        .collect();
    if !ignored.is_empty() {
        return Err(Failure::Other(anyhow!(
            "--resume continues the run in {} with the settings of its config.json; {} cannot \
             change it (a run cannot be extended either: its learning-rate schedule spans the \
             epochs it was started with). Start a new run with --out to train differently",
            dir.display(),
            ignored.join(", ")
        )));
    }
    let cfg: optarch_search::train::RunConfigFile =
        optarch_search::train::read_run_config(dir).map_err(anyhow::Error::from)?;
    let recorded = &cfg.train.run;
    if given.iter().any(|g| g == "device") && device != recorded.device {
        return Err(Failure::Other(anyhow!(
            "{} was started with --device {}; it resumes there (drop --device {device})",
            dir.display(),
            recorded.device
        )));
    }
    if given.iter().any(|g| g == "threads") && threads != recorded.threads {
        return Err(Failure::Other(anyhow!(
            "{} was started with {} intra-op threads; it resumes with them so that it computes \
             bit for bit the same (drop --threads)",
            dir.display(),
            recorded.threads.map_or_else(
                || "libtorch's default number of".to_string(),
                |n| n.to_string()
            )
        )));
    }
    Ok(())
}

pub fn run(
    a: TrainArgs,
    device: DeviceChoice,
    threads: Option<usize>,
    given: &[String],
) -> Result<(), Failure> {
    use optarch_search::train::{self as tr, Lines, Progress, RunConfigFile, RunSpec};
    use std::io::IsTerminal;
    let mut bar = Bar {
        bar: None,
        started: None,
    };
    let mut lines = Lines;
    let progress: &mut dyn Progress = if std::io::stderr().is_terminal() {
        &mut bar
    } else {
        &mut lines
    };
    // Ctrl-C stops the run at the next batch, at its last finished epoch (resumable).
    let _ = ctrlc::set_handler(|| tr::interrupt_flag().store(true, Ordering::SeqCst));
    let (summary, dir) = if let Some(dir) = &a.resume {
        check_resume(dir, given, device, threads)?;
        (
            tr::resume(dir, progress).map_err(anyhow::Error::from)?,
            dir.clone(),
        )
    } else {
        let spec_path = a
            .spec
            .clone()
            .ok_or_else(|| anyhow!("--spec is required"))?;
        let (s, overrides) = load(&spec_path, &a.spec_args)?;
        let mut train = a.train.clone();
        train.run.device = device;
        train.run.threads = threads;
        // Every flag's range, before anything is loaded.
        let mut checks = Checks::flags();
        train.check(&mut checks, false);
        if let Err(e) = checks.finish() {
            eprintln!("{e}");
            return Err(Failure::Exit(crate::EXIT_USAGE));
        }
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
        (
            tr::train(cfg, &out, progress).map_err(anyhow::Error::from)?,
            out,
        )
    };
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&summary).map_err(anyhow::Error::from)?
        );
    } else {
        println!("{summary}");
    }
    match summary.status {
        tr::Status::Diverged => Err(Failure::Invalid(
            "the run diverged (NaN or infinite loss): status `diverged` recorded".into(),
        )),
        tr::Status::Interrupted => {
            eprintln!(
                "interrupted after epoch {}: continue with `optarch train --resume {}`",
                summary.epochs,
                dir.display()
            );
            Err(Failure::Exit(crate::EXIT_INTERRUPTED))
        }
        tr::Status::Running | tr::Status::Done => Ok(()),
    }
}
