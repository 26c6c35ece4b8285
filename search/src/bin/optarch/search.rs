//! `optarch search CONFIG` and `optarch search --resume DIR`.

use crate::Failure;
use clap::Args;
use optarch_core::device::DeviceChoice;
use optarch_search::report::thousands;
use optarch_search::search::config::{ExecutorKind, ExecutorOverrides};
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The search configuration (see specs/search/ and docs/SEARCH.md).
    #[arg(value_name = "CONFIG", required_unless_present = "resume")]
    pub config: Option<PathBuf>,
    /// Continue the search in this directory (after a kill, a crash or Ctrl-C); completed
    /// trials are never run again.
    #[arg(long, value_name = "DIR", conflicts_with_all = ["config", "out"])]
    pub resume: Option<PathBuf>,
    /// The search directory (default runs/search/<name>).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Check the configuration and build its candidate pool, then stop: nothing is made or
    /// trained.
    #[arg(long, conflicts_with = "resume")]
    pub check: bool,
    /// With --resume: queue the trials that failed (or ran out of memory) again, once their
    /// cause is fixed; each continues from its last finished epoch.
    #[arg(long)]
    pub retry_failed: bool,
    /// Parallel trial processes on CPU (overrides execution.workers; 1 to 512).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=512))]
    pub workers: Option<u16>,
    /// Where the data is (overrides data.path; default $OPTARCH_DATA, else a download).
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Print the batch scripts a Slurm search would submit (the first trials'), then stop:
    /// nothing is made, submitted or trained.
    #[arg(long, conflicts_with_all = ["resume", "check"])]
    pub dry_run: bool,
    /// Where trials run: local processes, or Slurm jobs (overrides executor.kind).
    #[arg(long, value_enum, value_name = "KIND")]
    pub executor: Option<ExecutorKind>,
    /// Slurm partition (overrides executor.partition).
    #[arg(long, value_name = "NAME")]
    pub partition: Option<String>,
    /// Slurm generic resources per trial, e.g. gpu:1 (overrides executor.gres).
    #[arg(long, value_name = "GRES")]
    pub gres: Option<String>,
    /// Slurm time limit per job, e.g. 2:00:00 (overrides executor.time_limit).
    #[arg(long, value_name = "TIME")]
    pub time_limit: Option<String>,
    /// Cores per Slurm job (overrides executor.cpus_per_trial).
    #[arg(long, value_name = "N")]
    pub cpus_per_trial: Option<usize>,
    /// Slurm jobs queued or running at once (overrides executor.max_in_flight).
    #[arg(long, value_name = "N")]
    pub max_in_flight: Option<usize>,
    /// A folder the compute nodes share, for the trials' directories (overrides
    /// executor.shared_dir).
    #[arg(long, value_name = "DIR")]
    pub shared_dir: Option<PathBuf>,
    /// Print one JSON object at the end (`outcome`, `leaderboard`, `export`) instead of text;
    /// progress and the summary line go to stderr.
    #[arg(long)]
    pub json: bool,
}

/// A configuration that is there but wrong is invalid input (exit 1), like a spec; the rest
/// (files, data, the store, Slurm) are other failures (exit 3).
fn failure(e: optarch_search::search::driver::SearchError) -> Failure {
    use optarch_search::search::driver::SearchError;
    match e {
        SearchError::Config(c) => Failure::Invalid(format!("{c}")),
        e => Failure::Other(anyhow::Error::from(e)),
    }
}

pub fn run(a: SearchArgs, device: DeviceChoice) -> Result<(), Failure> {
    use optarch_search::search::driver;
    if a.retry_failed && a.resume.is_none() {
        eprintln!("error: --retry-failed continues a search: give it with --resume DIR");
        return Err(Failure::Exit(crate::EXIT_USAGE));
    }
    let executor = ExecutorOverrides {
        kind: a.executor,
        partition: a.partition.clone(),
        gres: a.gres.clone(),
        time_limit: a.time_limit.clone(),
        cpus_per_trial: a.cpus_per_trial,
        max_in_flight: a.max_in_flight,
        shared_dir: a.shared_dir.clone(),
    };
    if a.dry_run {
        let config = a
            .config
            .ok_or_else(|| anyhow::anyhow!("--dry-run needs a CONFIG"))?;
        let text = driver::dry_run(&config, a.out.as_deref(), &executor).map_err(failure)?;
        out!("{}", text.trim_end());
        return Ok(());
    }
    if a.check {
        let config = a
            .config
            .ok_or_else(|| anyhow::anyhow!("--check needs a CONFIG"))?;
        let p = driver::preview(&config).map_err(failure)?;
        out!(
            "{}: valid; search `{}`: {} candidates ({} pruned, {} duplicate topologies \
             merged), rungs {:?} epochs, about {} epochs in all",
            config.display(),
            p.name,
            p.candidates.len(),
            p.pruned,
            p.merged,
            p.rungs,
            p.epochs
        );
        let width = p.candidates.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &p.candidates {
            let vs = match (&p.size_base, c.parameters_vs_base) {
                (Some(b), _) if *b == c.name => "(the base of the comparison)".to_string(),
                (Some(b), Some(v)) => format!("{:+.1} % of {b}'s", 100.0 * v),
                _ => String::new(),
            };
            let line = format!(
                "  {:width$}  {:>11} parameters  {:>7} M multiply-adds  {vs}",
                c.name,
                thousands(c.parameters),
                c.multiply_adds
                    .map_or_else(|| "-".into(), |m| format!("{:.1}", m as f64 / 1e6)),
            );
            out!("{}", line.trim_end());
        }
        for m in &p.merges {
            out!("  merged {m}");
        }
        for d in &p.divergent {
            out!("warning: {d}");
        }
        for u in &p.unmatched {
            out!("warning: {u}");
        }
        return Ok(());
    }
    let opts = driver::Options {
        config: a.config,
        resume: a.resume,
        out: a.out,
        workers: a.workers.map(usize::from),
        device: (device != DeviceChoice::Auto).then_some(device),
        data: a.data,
        exe: None,
        retry_failed: a.retry_failed,
        stop_after_launches: None,
        executor,
    };
    let o = driver::run(&opts).map_err(failure)?;
    let line = format!(
        "search {} in {}: {} trials, {} epochs, {:.1} s wall on {} slot(s), overhead {:.1} %{}",
        o.status,
        o.dir.display(),
        o.trials,
        o.epochs,
        o.wall_seconds,
        o.slots,
        100.0 * o.overhead,
        match o.waiting_share {
            Some(w) => format!(
                " ({:.1} % waiting for work, {:.1} % the search's own)",
                100.0 * w,
                100.0 * (o.overhead - w).max(0.0)
            ),
            None => String::new(),
        }
    );
    if a.json {
        eprintln!("{line}");
    } else {
        out!("{line}");
    }
    if !o.failed.is_empty() {
        let n: usize = o.failed.iter().map(|g| g.trials).sum();
        eprintln!("{n} of {} trials ended without a result:", o.trials);
        for g in &o.failed {
            eprintln!("  {} × {}: {}", g.trials, g.status, g.cause);
        }
        eprintln!(
            "fix the cause, then queue them again with `optarch search --resume {} \
             --retry-failed`",
            o.dir.display()
        );
    }
    if o.status != "done" {
        if a.json {
            print_json(&o, None, None)?;
        }
        return Err(Failure::Exit(crate::EXIT_INTERRUPTED));
    }
    if o.winner.is_none() {
        eprintln!(
            "error: no winner: no trial of the search finished an epoch (see `optarch report {}`)",
            o.dir.display()
        );
        if a.json {
            print_json(&o, None, None)?;
        }
        return Err(Failure::Exit(crate::EXIT_FAILURE));
    }
    // The results are in the store whatever happens next: a failed report or export is said,
    // and can be run again with `optarch report` / `optarch export`.
    let leaderboard = if a.json {
        let opts = optarch_search::report::ReportOptions { top_k: 5 };
        match optarch_search::report::write_report(&o.dir, &opts) {
            Ok((_, paths)) => std::fs::read_to_string(&paths.json)
                .ok()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok()),
            Err(e) => {
                eprintln!("warning: the report failed: {e}");
                None
            }
        }
    } else {
        if let Err(Failure::Other(e)) = crate::report::write(&o.dir, 5) {
            eprintln!("warning: the report failed: {}", crate::describe(&e));
        }
        None
    };
    let exported = match optarch_search::export::export_winner(
        &o.dir,
        &o.dir.join("export"),
        optarch_core::exec::Compute::FP32,
        optarch_search::export::Formats::ALL,
    ) {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("warning: the export failed: {e}");
            None
        }
    };
    if a.json {
        print_json(&o, leaderboard, exported.as_ref())?;
    } else if let Some(e) = &exported {
        crate::export::print(e);
    }
    Ok(())
}

/// `--json`: the outcome, the leaderboard and the export in one object on stdout.
fn print_json(
    o: &optarch_search::search::driver::Outcome,
    leaderboard: Option<serde_json::Value>,
    exported: Option<&optarch_search::export::Exported>,
) -> Result<(), Failure> {
    let v = serde_json::json!({
        "outcome": o,
        "leaderboard": leaderboard,
        "export": exported,
    });
    out!(
        "{}",
        serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?
    );
    Ok(())
}
