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
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// The trial's id in the search database.
    #[arg(long)]
    pub id: TrialId,
}

/// `optarch trial`: runs the trial and ends the process with its exit status.
pub fn run(a: &TrialArgs, device: DeviceChoice) -> ! {
    let parent = std::os::unix::process::parent_id();
    forkserver::exit_now(trial::status(&a.dir, a.id, device, parent))
}

/// `optarch trial-server`: before anything touches CUDA or the thread pools (the server forks
/// its trials, which set their own threads and devices).
pub fn server(a: &TrialServerArgs, global: &Global) -> Result<(), Failure> {
    forkserver::serve(&a.dir, global.device, global.threads.map(usize::from))
        .context("trial server")?;
    Ok(())
}
