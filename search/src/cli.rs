//! The command line: `optarch check | graph | rate | train | env | search | report | export | codegen`
//!
//! Exit codes: 0 success, 1 an invalid spec (or a failed check, or a diverged training run),
//! 2 bad usage, 3 any other failure (files, data, devices).

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use optarch_core::analysis;
use optarch_core::error::SpecError;
use optarch_core::render::{self, Format};
use optarch_core::spec::{self, Overrides, Reading, Spec};
use optarch_core::theory::{self, RateOptions};
use optarch_core::topology;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Exit status for an invalid spec, a failed check or a diverged training run.
pub const EXIT_INVALID: u8 = 1;
/// Exit status for bad usage (clap's own).
pub const EXIT_USAGE: u8 = 2;
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
    pub device: String,
    /// Intra-op threads for libtorch (default: libtorch's choice).
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<i32>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate specs: every error names file, line and column and hints at the fix.
    Check(CheckArgs),
    /// Unroll a spec and draw its topology (SVG, PNG or DOT), with its analyses.
    Graph(GraphArgs),
    /// Convergence of a spec on quadratics: worst-case contraction and asymptotic rate.
    Rate(RateArgs),
    /// Train a spec's network on CIFAR-10/100 or MNIST, or resume an interrupted run.
    Train(Box<TrainArgs>),
    /// Show libtorch, CUDA, cuDNN and thread information.
    Env(EnvArgs),
    /// Search optimizer-inspired structures: train candidates under successive halving (ASHA)
    /// in parallel trial processes, survive crashes and kills, rank, report.
    Search(SearchArgs),
    /// The report of a search: leaderboard (terminal, CSV, JSON) and a self-contained HTML page.
    Report(ReportArgs),
    /// Export a search's winner (or a run directory): filled-in spec, weights, generated Rust
    /// code and a TorchScript module.
    Export(ExportArgs),
    /// Internal: one trial of a search, in its own process (started by `optarch search`).
    #[command(hide = true)]
    Trial(TrialArgs),
    /// Internal: a server that loads libtorch once and forks trial processes for
    /// `optarch search` (requests on stdin, see the `forkserver` module).
    #[command(hide = true)]
    TrialServer(TrialServerArgs),
    /// Print the Rust module `#[derive(Unroll)]` generates for a spec (pretty-printed).
    Codegen(CodegenArgs),
}

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
    #[command(flatten)]
    pub spec_args: SpecArgs,
}

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
    /// Parallel trial processes on CPU (overrides execution.workers).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Where the data is (overrides data.path; default $OPTARCH_DATA, else a download).
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The search directory.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Topology pictures for the best K candidates.
    #[arg(long, default_value_t = 5, value_name = "K")]
    pub top_k: usize,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A search directory (its winner is exported into DIR/export), or with --run, a run
    /// directory of `optarch train`.
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// DIR is a run directory (config.json, best.safetensors), not a search.
    #[arg(long)]
    pub run: bool,
    /// Where to write (default DIR/export).
    #[arg(long, value_name = "OUT")]
    pub out: Option<PathBuf>,
}

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
    pub id: i64,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The spec file.
    #[arg(long, value_name = "SPEC", required_unless_present = "resume")]
    pub spec: Option<PathBuf>,
    /// Continue the interrupted run in this directory (same schedule, same data order).
    #[arg(long, value_name = "DIR", conflicts_with = "spec")]
    pub resume: Option<PathBuf>,
    /// Macro-architecture: cifar-resnet (depth 6n+2), cifar-densenet (6n+4), imagenet.
    #[arg(long, default_value = "cifar-resnet")]
    pub preset: String,
    /// Depth of the preset.
    #[arg(long, default_value_t = 20)]
    pub depth: usize,
    /// A YAML architecture config replacing --preset/--depth (see docs/EXECUTOR.md).
    #[arg(long, value_name = "FILE")]
    pub arch: Option<PathBuf>,
    /// Stage widths, e.g. 32,64,128 (one per stage).
    #[arg(long, value_delimiter = ',', value_name = "W,W,W")]
    pub widths: Option<Vec<i64>>,
    /// Steps (blocks) per stage, e.g. 3,3,3.
    #[arg(long, value_delimiter = ',', value_name = "N,N,N")]
    pub stage_steps: Option<Vec<usize>>,
    /// cifar10, cifar100, cifar100-coarse or mnist.
    #[arg(long, default_value = "cifar10")]
    pub dataset: String,
    /// Where the data is (archive, folder or data root); default $OPTARCH_DATA, else a
    /// download into ~/.cache/optarch/data.
    #[arg(long, value_name = "PATH")]
    pub data: Option<PathBuf>,
    /// Never download.
    #[arg(long)]
    pub no_download: bool,
    /// Train on a seeded subset of this many training images.
    #[arg(long, value_name = "N")]
    pub train_subset: Option<usize>,
    /// Hold out this many training images for validation.
    #[arg(long, default_value_t = 5000)]
    pub val: usize,
    /// Test on the first N test images only.
    #[arg(long, value_name = "N")]
    pub test_subset: Option<usize>,
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.1)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Plain momentum instead of Nesterov's.
    #[arg(long)]
    pub no_nesterov: bool,
    #[arg(long, default_value_t = 5e-4)]
    pub weight_decay: f64,
    /// Also decay BatchNorm parameters, biases and coefficients.
    #[arg(long)]
    pub decay_bn_bias: bool,
    /// cosine, onecycle[:warmup], multistep[:m1,m2] (milestones as fractions of the run).
    #[arg(long, default_value = "onecycle:0.15", value_parser = optarch_search::train::Schedule::parse)]
    pub schedule: optarch_search::train::Schedule,
    #[arg(long, default_value_t = 0.0)]
    pub label_smoothing: f64,
    /// Clip the global gradient norm to this value.
    #[arg(long)]
    pub grad_clip: Option<f64>,
    /// No random crops and flips.
    #[arg(long)]
    pub no_augment: bool,
    /// Mixed precision on CUDA: fp16 (with dynamic loss scaling).
    #[arg(long, value_name = "MODE")]
    pub amp: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run directory (default runs/<spec>-<preset><depth>-s<seed>).
    #[arg(long, short)]
    pub out: Option<PathBuf>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub spec_args: SpecArgs,
}

/// Options that pick a spec's parameters.
#[derive(Debug, Args, Clone)]
pub struct SpecArgs {
    /// Set a parameter, e.g. `--set beta=0.9` (repeatable); fixes search ranges too.
    #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_override)]
    pub set: Vec<(String, f64)>,
    /// Override the spec's reading of grad: residual (grad = -B) or objective (grad = v - B).
    #[arg(long, value_enum)]
    pub reading: Option<ReadingArg>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ReadingArg {
    Residual,
    Objective,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Spec files, or folders whose *.yaml files are all checked.
    #[arg(required = true, value_name = "SPEC")]
    pub specs: Vec<PathBuf>,
    /// Also unroll each spec for this many steps.
    #[arg(long, default_value_t = 8)]
    pub steps: usize,
    /// Print a JSON array of results instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The spec file.
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// Steps to unroll.
    #[arg(long, short = 'k', default_value_t = 8)]
    pub steps: usize,
    /// Picture format.
    #[arg(long, short, value_enum, default_value_t = FormatArg::Svg)]
    pub format: FormatArg,
    /// Output file; `-` writes to standard output. Default: `<name>_k<steps>.<format>`.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Print the analyses as JSON instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub spec_args: SpecArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FormatArg {
    Svg,
    Png,
    Dot,
}

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

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

fn parse_override(s: &str) -> Result<(String, f64), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE (e.g. --set beta=0.9)"))?;
    let v: f64 = value
        .trim()
        .parse()
        .map_err(|_| format!("`{value}` is not a number (in --set {s})"))?;
    if !v.is_finite() {
        return Err(format!("`{value}` is not a finite number"));
    }
    Ok((name.trim().to_string(), v))
}

/// Why a command failed, which decides the exit status.
enum Failure {
    Spec(SpecError),
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

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Spec(e)) => {
            eprintln!("{e}");
            ExitCode::from(EXIT_INVALID)
        }
        Err(Failure::Invalid(msg)) => {
            if !msg.is_empty() {
                eprintln!("{msg}");
            }
            ExitCode::from(EXIT_INVALID)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
        Err(Failure::Exit(code)) => ExitCode::from(code),
    }
}

/// `optarch trial-server`: before anything touches CUDA or the thread pools (the server forks
/// its trials, which set their own threads and devices).
fn trial_server(a: &TrialServerArgs, global: &Global) -> Result<(), Failure> {
    if global.threads.is_some_and(|n| n < 1) {
        return Err(anyhow!("--threads must be at least 1").into());
    }
    optarch_search::search::forkserver::serve(&a.dir, &global.device, global.threads)
        .map_err(|e| anyhow!("trial server: {e}"))?;
    Ok(())
}

fn run(cli: Cli) -> Result<(), Failure> {
    if let Command::TrialServer(a) = &cli.command {
        return trial_server(a, &cli.global);
    }
    let device = optarch_core::device::parse_device(&cli.global.device)
        .map_err(|e| anyhow!("{e}"))
        .context("bad --device")?;
    if let Some(n) = cli.global.threads {
        if n < 1 {
            return Err(anyhow!("--threads must be at least 1").into());
        }
        tch::set_num_threads(n);
    }
    match cli.command {
        Command::Check(a) => check(a),
        Command::Graph(a) => graph(a),
        Command::Rate(a) => rate(a),
        Command::Train(a) => train(*a, &cli.global.device),
        Command::Env(a) => env(a, device),
        Command::Search(a) => search(a, &cli.global.device),
        Command::Report(a) => report(&a.dir, a.top_k),
        Command::Export(a) => {
            use optarch_search::search::export;
            let e = if a.run {
                let out = a.out.clone().unwrap_or_else(|| a.dir.join("export"));
                export::export_run(&a.dir, &out)
            } else {
                export::export_winner(&a.dir)
            }
            .map_err(|e| anyhow!("{e}"))?;
            print_export(&e);
            Ok(())
        }
        Command::Trial(a) => {
            use optarch_search::search::{forkserver, trial};
            let parent = std::os::unix::process::parent_id();
            forkserver::exit_now(trial::status(&a.dir, a.id, &cli.global.device, parent))
        }
        Command::TrialServer(a) => trial_server(&a, &cli.global),
        Command::Codegen(a) => {
            let (s, o) = load(&a.spec, &a.spec_args)?;
            let code = optarch_core::codegen::source(&s, a.steps, &o, a.name.as_deref(), a.shared)?;
            print!("{code}");
            Ok(())
        }
    }
}

/// Exit status of an interrupted search (as a shell reports SIGINT).
pub const EXIT_INTERRUPTED: u8 = 130;

fn search(a: SearchArgs, device: &str) -> Result<(), Failure> {
    use optarch_search::search::driver;
    let opts = driver::Options {
        config: a.config,
        resume: a.resume,
        out: a.out,
        workers: a.workers,
        device: (device != "auto").then(|| device.to_string()),
        data: a.data,
        exe: None,
        stop_after_launches: None,
    };
    let o = driver::run(&opts).map_err(|e| anyhow!("{e}"))?;
    println!(
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
    if o.status != "done" {
        return Err(Failure::Exit(EXIT_INTERRUPTED));
    }
    // The results are in the store whatever happens next: a failed report or export is said,
    // and can be run again with `optarch report` / `optarch export`.
    if let Err(Failure::Other(e)) = report(&o.dir, 5) {
        eprintln!("warning: the report failed: {e:#}");
    }
    match optarch_search::search::export::export_winner(&o.dir) {
        Ok(e) => print_export(&e),
        Err(e) => eprintln!("warning: the export failed: {e}"),
    }
    Ok(())
}

fn report(dir: &Path, top_k: usize) -> Result<(), Failure> {
    use optarch_search::search::report;
    let opts = report::ReportOptions {
        top_k,
        ..Default::default()
    };
    let (text, paths) = report::write_report(dir, &opts).map_err(|e| anyhow!("{e}"))?;
    println!("{text}");
    println!(
        "report: {}\nleaderboard: {}, {}",
        paths.html.display(),
        paths.csv.display(),
        paths.json.display()
    );
    Ok(())
}

fn print_export(e: &optarch_search::search::export::Exported) {
    println!(
        "exported {} ({} parameters) from {} to {}: spec.yaml, weights.safetensors, model.rs, \
         model.pt (TorchScript, input {:?} on the [0, 1] scale)",
        e.spec_name,
        e.parameters,
        e.run.display(),
        e.out.display(),
        e.input_shape
    );
}

fn load(path: &Path, args: &SpecArgs) -> Result<(Spec, Overrides), SpecError> {
    let mut s = spec::load(path)?;
    if let Some(r) = args.reading {
        s.reading = match r {
            ReadingArg::Residual => Reading::Residual,
            ReadingArg::Objective => Reading::Objective,
        };
    }
    let overrides: Overrides = args.set.iter().cloned().collect();
    s.check_overrides(&overrides)?;
    Ok((s, overrides))
}

fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read folder {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.is_file()
                        && matches!(f.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
                })
                .collect();
            files.sort();
            if files.is_empty() {
                bail!("no *.yaml spec in folder {}", p.display());
            }
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

#[derive(serde::Serialize)]
struct CheckResult {
    file: String,
    ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    /// The recurrence in normal form, one equation per line.
    #[serde(skip_serializing_if = "Option::is_none")]
    recurrence: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocks: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    peak_live_maps: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<SpecError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rendered: Option<String>,
}

fn check_one(path: &Path, steps: usize) -> CheckResult {
    let file = path.display().to_string();
    let result = spec::load(path).and_then(|s| {
        let t = topology::unroll(&s, steps, &Overrides::new())?;
        let m = analysis::memory(&t)?;
        Ok((s, t.block_count(), m.peak))
    });
    match result {
        Ok((s, blocks, peak)) => CheckResult {
            file,
            ok: true,
            recurrence: Some(
                optarch_core::linear::normal_form(&s)
                    .iter()
                    .map(|e| e.to_string())
                    .collect(),
            ),
            name: Some(s.name),
            summary: Some(s.summary),
            blocks: Some(blocks),
            peak_live_maps: Some(peak),
            error: None,
            rendered: None,
        },
        Err(e) => CheckResult {
            file,
            ok: false,
            name: None,
            summary: None,
            recurrence: None,
            blocks: None,
            peak_live_maps: None,
            rendered: Some(e.to_string()),
            error: Some(e),
        },
    }
}

fn check(a: CheckArgs) -> Result<(), Failure> {
    let files = expand(&a.specs)?;
    let results: Vec<CheckResult> = files.iter().map(|f| check_one(f, a.steps)).collect();
    let bad = results.iter().filter(|r| !r.ok).count();
    if a.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&results).map_err(anyhow::Error::from)?
        );
    } else {
        for r in &results {
            match (&r.rendered, &r.name) {
                (Some(err), _) => eprintln!("{err}\n"),
                (None, Some(name)) => {
                    println!(
                        "ok  {:<40} {:<28} {} blocks at {} steps, peak {} live maps",
                        r.file,
                        name,
                        r.blocks.unwrap_or(0),
                        a.steps,
                        r.peak_live_maps.unwrap_or(0)
                    );
                    for eq in r.recurrence.iter().flatten() {
                        println!("      {eq}");
                    }
                }
                _ => {}
            }
        }
        if files.len() > 1 || bad > 0 {
            println!(
                "{} spec(s) checked, {} valid, {} invalid",
                results.len(),
                results.len() - bad,
                bad
            );
        }
    }
    if bad > 0 {
        return Err(Failure::Invalid(String::new()));
    }
    Ok(())
}

fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    if path == Path::new("-") {
        std::io::stdout()
            .write_all(bytes)
            .context("cannot write to standard output")?;
        return Ok(());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn graph(a: GraphArgs) -> Result<(), Failure> {
    let (s, o) = load(&a.spec, &a.spec_args)?;
    let t = topology::unroll(&s, a.steps, &o)?;
    let (format, ext) = match a.format {
        FormatArg::Svg => (Format::Svg, "svg"),
        FormatArg::Png => (Format::Png, "png"),
        FormatArg::Dot => (Format::Dot, "dot"),
    };
    let bytes = render::render(&t, format).map_err(|e| anyhow!("cannot draw the topology: {e}"))?;
    let out = a
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}_k{}.{ext}", s.name, a.steps)));
    write_output(&out, &bytes)?;
    let report = analysis::analyse(&t)?;
    let to_stdout = out == Path::new("-");
    if a.json {
        let mut v = serde_json::to_value(&report).map_err(anyhow::Error::from)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "picture".into(),
                serde_json::Value::String(out.display().to_string()),
            );
        }
        let text = serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?;
        if to_stdout {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    } else {
        let text = format!("{report}wrote {} ({} bytes)", out.display(), bytes.len());
        if to_stdout {
            eprintln!("{text}");
        } else {
            println!("{text}");
        }
    }
    Ok(())
}

fn rate(a: RateArgs) -> Result<(), Failure> {
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
            Some("png") => {
                render::svg_to_png(&svg).map_err(|e| anyhow!("cannot draw the chart: {e}"))?
            }
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

fn train(a: TrainArgs, device: &str) -> Result<(), Failure> {
    use optarch_search::train::{self as tr, Lines, Progress, TrainConfig};
    use std::io::IsTerminal;
    let mut bar = Bar { bar: None };
    let mut lines = Lines;
    let progress: &mut dyn Progress = if std::io::stderr().is_terminal() {
        &mut bar
    } else {
        &mut lines
    };
    let summary = if let Some(dir) = &a.resume {
        tr::resume(dir, progress).map_err(|e| anyhow!("{e}"))?
    } else {
        let spec_path = a
            .spec
            .clone()
            .ok_or_else(|| anyhow!("--spec is required"))?;
        let (s, overrides) = load(&spec_path, &a.spec_args)?;
        let arch = match &a.arch {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| {
                    format!("cannot read the architecture config {}", p.display())
                })?;
                Some(
                    optarch_core::exec::Arch::from_yaml(&text)
                        .map_err(|e| anyhow!("{}: {e}", p.display()))?,
                )
            }
            None => None,
        };
        let cfg = TrainConfig {
            spec_path: spec_path.clone(),
            spec_text: s.text.clone(),
            overrides,
            preset: a.preset.clone(),
            depth: a.depth,
            arch,
            widths: a.widths.clone(),
            stage_steps: a.stage_steps.clone(),
            dataset: a.dataset.clone(),
            data_path: a.data.clone(),
            download: !a.no_download,
            train_subset: a.train_subset,
            val: a.val,
            test_subset: a.test_subset,
            epochs: a.epochs,
            batch_size: a.batch_size,
            lr: a.lr,
            momentum: a.momentum,
            nesterov: !a.no_nesterov,
            weight_decay: a.weight_decay,
            no_decay_bn_bias: !a.decay_bn_bias,
            schedule: a.schedule.clone(),
            label_smoothing: a.label_smoothing,
            grad_clip: a.grad_clip,
            augment: !a.no_augment,
            amp: a.amp.clone(),
            seed: a.seed,
            device: device.to_string(),
        };
        let out = a.out.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "runs/{}-{}{}-s{}",
                s.name, a.preset, a.depth, a.seed
            ))
        });
        eprintln!("run directory: {}", out.display());
        tr::train(cfg, &out, progress).map_err(|e| anyhow!("{e}"))?
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

fn env(a: EnvArgs, device: tch::Device) -> Result<(), Failure> {
    let info = optarch_core::device::env_info();
    if a.json {
        let mut v = serde_json::to_value(&info).map_err(anyhow::Error::from)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "selected_device".into(),
                serde_json::Value::String(format!("{device:?}")),
            );
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?
        );
    } else {
        println!("{info}");
        println!("selected device      {device:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn overrides_parse_and_reject_garbage() {
        assert_eq!(parse_override("beta=0.9").unwrap(), ("beta".into(), 0.9));
        assert!(parse_override("beta").unwrap_err().contains("NAME=VALUE"));
        assert!(parse_override("beta=x")
            .unwrap_err()
            .contains("not a number"));
        assert!(parse_override("beta=inf").is_err());
    }
}
