//! `optarch`: design neural-network structures from optimization algorithms.
//!
//! The command line: `optarch check | graph | rate | train | env | search | report | export |
//! codegen | new | schema`, one module per command (and `trial`, `trial-server`, the search's own). This file
//! holds the options every command shares, the dispatch and the exit codes: 0 success, 1 an
//! invalid spec or search configuration (or a failed check, or a diverged training run), 2 bad
//! usage, 3 any other failure (files that cannot be read, data, devices), 130 an interrupted
//! search.

/// `println!` that ignores a closed standard output (`optarch search ... | head -1`): what the
/// search, report and export commands print never stops them before their files are written.
macro_rules! out {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

mod check;
mod codegen;
mod env;
mod export;
mod graph;
mod new;
mod rate;
mod report;
mod schema;
mod search;
mod spec_args;
mod train;
mod trial;

use anyhow::Context;
use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use optarch_core::device::DeviceChoice;
use optarch_core::error::SpecError;
use std::process::ExitCode;

/// Exit status for an invalid spec, a failed check or a diverged training run.
pub const EXIT_INVALID: u8 = 1;
/// Exit status for bad usage (clap's own).
pub const EXIT_USAGE: u8 = 2;
/// Exit status of an interrupted search or training run (as a shell reports SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;
/// Exit status for other failures: files, devices.
pub const EXIT_FAILURE: u8 = 3;

/// Design neural-network structures from optimization algorithms.
///
/// A spec (YAML) writes a first-order method as a recurrence; optarch checks it, unrolls it
/// into a topology, draws it, and studies its convergence on quadratics. Shipped specs live in
/// `specs/`. Exit codes: 0 ok, 1 invalid spec or diverged run, 2 bad usage, 3 other failure.
#[derive(Debug, Parser)]
#[command(
    name = "optarch",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct Global {
    /// Device for tensor work: auto, cpu, cuda or cuda:N. `cuda` fails loudly when CUDA is
    /// missing; nothing ever falls back silently.
    #[arg(long, global = true, default_value = "auto", value_name = "DEVICE")]
    pub device: DeviceChoice,
    /// Intra-op threads for libtorch (default: libtorch's choice).
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    pub threads: Option<u16>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate specs: every error names file, line and column and hints at the fix.
    Check(check::CheckArgs),
    /// Unroll a spec and draw its topology (SVG, PNG or DOT), with its analyses.
    Graph(graph::GraphArgs),
    /// Convergence of a spec on quadratics: worst-case contraction and asymptotic rate.
    Rate(rate::RateArgs),
    /// Train a spec's network on CIFAR-10/100 or MNIST, or resume an interrupted run.
    Train(Box<train::TrainArgs>),
    /// Show libtorch, CUDA, cuDNN and thread information.
    Env(env::EnvArgs),
    /// Search optimizer-inspired structures: train candidates under successive halving (ASHA)
    /// in parallel trial processes, survive crashes and kills, rank, report.
    Search(search::SearchArgs),
    /// The report of a search: leaderboard (terminal, CSV, JSON) and a self-contained HTML page.
    Report(report::ReportArgs),
    /// Export a search's winner (or a run directory): filled-in spec, weights, generated Rust
    /// code and a TorchScript module.
    Export(export::ExportArgs),
    /// Internal: one trial of a search, in its own process (started by `optarch search`).
    #[command(hide = true)]
    Trial(trial::TrialArgs),
    /// Internal: a server that loads libtorch once and forks trial processes for
    /// `optarch search` (requests on stdin, see the `forkserver` module).
    #[command(hide = true)]
    TrialServer(trial::TrialServerArgs),
    /// Print the Rust module `#[derive(Unroll)]` generates for a spec (pretty-printed).
    Codegen(codegen::CodegenArgs),
    /// Make a crate of your own that derives a network from a spec: `optarch new NAME`, then
    /// `cd NAME && cargo run` (no environment variables needed).
    New(new::NewArgs),
    /// Print the JSON Schema of spec files or of search configurations (for editors with a
    /// YAML language server; the shipped copies are schemas/*.schema.json).
    Schema(schema::SchemaArgs),
}

/// Why a command failed, which decides the exit status.
pub enum Failure {
    Spec(SpecError),
    /// Bad usage found after parsing (an unknown `--set` parameter): said, exit 2.
    Usage(String),
    Invalid(String),
    Other(anyhow::Error),
    /// Exit with this status (a message already printed).
    Exit(u8),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

impl From<SpecError> for Failure {
    fn from(e: SpecError) -> Self {
        Failure::Spec(e)
    }
}

fn main() -> ExitCode {
    let parsed = Cli::command()
        .try_get_matches()
        .and_then(|m| Ok((Cli::from_arg_matches(&m)?, given(&m))));
    let (cli, given) = match parsed {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli, &given) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Spec(e)) => {
            eprintln!("{e}");
            // A spec that cannot be read at all is a file problem, not an invalid spec.
            match e.kind {
                optarch_core::error::ErrorKind::Io => ExitCode::from(EXIT_FAILURE),
                _ => ExitCode::from(EXIT_INVALID),
            }
        }
        Err(Failure::Usage(msg)) => {
            eprintln!("{msg}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Invalid(msg)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(EXIT_INVALID)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::Exit(code)) => ExitCode::from(code),
    }
}

/// An error and its causes on one line, each said once: a message that already quotes its
/// cause (`{path}: {source}`) is not followed by it again.
pub fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// The long names of the options given on the command line (not defaulted) of the
/// subcommand, global ones included.
fn given(m: &clap::ArgMatches) -> Vec<String> {
    let Some((name, sub)) = m.subcommand() else {
        return Vec::new();
    };
    let cmd = Cli::command();
    let Some(sc) = cmd.find_subcommand(name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for id in sub.ids() {
        let explicit = matches!(
            sub.value_source(id.as_str()),
            Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
        );
        let long = sc
            .get_arguments()
            .chain(cmd.get_arguments())
            .find(|a| a.get_id() == id)
            .and_then(|a| a.get_long());
        if let (true, Some(long)) = (explicit, long) {
            if !out.iter().any(|o| o == long) {
                out.push(long.to_string());
            }
        }
    }
    out
}

/// Restores SIGPIPE's default disposition (Rust's runtime ignores it).
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to the default at start-up, before any other
    // thread exists; no handler is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn run(cli: Cli, given: &[String]) -> Result<(), Failure> {
    // A closed pipe ends the printing commands quietly, as it does `ls` or `grep`. Not the
    // search (it writes to its trial servers' pipes and handles their end) nor the commands it
    // prints through `out!`.
    if !matches!(
        cli.command,
        Command::Search(_)
            | Command::Trial(_)
            | Command::TrialServer(_)
            | Command::Report(_)
            | Command::Export(_)
    ) {
        default_sigpipe();
    }
    // Freed tensors stay in the process for the next training step (optarch_core::malloc);
    // OPTARCH_MALLOC=glibc or the user's own MALLOC_*/GLIBC_TUNABLES settings leave glibc be.
    optarch_core::malloc::tune_for_training().map_err(Failure::Usage)?;
    if let Command::TrialServer(a) = &cli.command {
        return trial::server(a, &cli.global);
    }
    let device = cli.global.device.resolve().context("bad --device")?;
    let threads = cli.global.threads.map(usize::from);
    if let Some(n) = cli.global.threads {
        tch::set_num_threads(i32::from(n));
    }
    match cli.command {
        Command::Check(a) => check::run(a),
        Command::Graph(a) => graph::run(a),
        Command::Rate(a) => rate::run(a),
        Command::Train(a) => train::run(*a, cli.global.device, threads, given),
        Command::Env(a) => env::run(a, device),
        Command::Search(a) => search::run(a, cli.global.device),
        Command::Report(a) => report::run(a),
        Command::Export(a) => export::run(a),
        Command::Trial(a) => trial::run(&a, cli.global.device),
        Command::TrialServer(a) => trial::server(&a, &cli.global),
        Command::Codegen(a) => codegen::run(a),
        Command::New(a) => new::run(a),
        Command::Schema(a) => schema::run(a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
