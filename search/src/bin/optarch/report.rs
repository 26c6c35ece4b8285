//! `optarch report DIR`: the leaderboard and the HTML report of a search.

use crate::Failure;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The search directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Topology pictures for the best K candidates.
    #[arg(long, default_value_t = 5, value_name = "K")]
    pub top_k: usize,
    /// Print the leaderboard as JSON (leaderboard.json's content) instead of text; the files
    /// are written either way.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: ReportArgs) -> Result<(), Failure> {
    if !a.json {
        return write(&a.dir, a.top_k);
    }
    let opts = optarch_search::report::ReportOptions { top_k: a.top_k };
    let (_, paths) =
        optarch_search::report::write_report(&a.dir, &opts).map_err(anyhow::Error::from)?;
    let json = std::fs::read_to_string(&paths.json)
        .map_err(|e| anyhow::anyhow!("{}: {e}", paths.json.display()))?;
    out!("{}", json.trim_end());
    Ok(())
}

/// Writes the report of the search in `dir` and prints its leaderboard.
pub fn write(dir: &Path, top_k: usize) -> Result<(), Failure> {
    use optarch_search::report;
    let opts = report::ReportOptions { top_k };
    let (text, paths) = report::write_report(dir, &opts).map_err(anyhow::Error::from)?;
    out!("{text}");
    out!(
        "report: {}\nleaderboard: {}, {}",
        paths.html.display(),
        paths.csv.display(),
        paths.json.display()
    );
    Ok(())
}
