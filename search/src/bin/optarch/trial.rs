//! `optarch trial` and `optarch trial-server`: internal commands the search runs.

use crate::{Failure, Global};
use anyhow::Context;
use clap::Args;
use optarch_core::device::DeviceChoice;
use optarch_search::search::executor::forkserver;
use optarch_search::search::ids::TrialId;
use optarch_search::search::trial;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct TrialServerArgs {
    /// The search directory.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct TrialArgs {
    /// The search directory.
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "job",
        requires = "id"
    )]
    pub dir: Option<PathBuf>,
    /// The trial's id in the search database.
    #[arg(long)]
    pub id: Option<TrialId>,
    /// A cluster job's attempt (`RUN_DIR/job.json`, written by the driver): reports through
    /// files in the run directory instead of the search database.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["dir", "id"])]
    pub job: Option<PathBuf>,
}

/// `optarch trial`: runs the trial and ends the process with its exit status.
pub fn run(a: &TrialArgs, device: DeviceChoice) -> ! {
    let code = match (&a.job, &a.dir, a.id) {
        (Some(job), _, _) => trial::job_status(job),
        (None, Some(dir), Some(id)) => {
            let parent = std::os::unix::process::parent_id();
            trial::status(dir, id, device, parent)
        }
        _ => {
            eprintln!("error: optarch trial needs --dir DIR --id N, or --job FILE");
            crate::EXIT_USAGE.into()
        }
    };
    forkserver::exit_now(code)
}

/// `optarch trial-server`: before anything touches CUDA or the thread pools (the server forks
/// its trials, which set their own threads and devices).
pub fn server(a: &TrialServerArgs, global: &Global) -> Result<(), Failure> {
    forkserver::serve(&a.dir, global.device, global.threads.map(usize::from))
        .context("trial server")?;
    Ok(())
}
