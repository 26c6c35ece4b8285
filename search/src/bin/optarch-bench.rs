//! `optarch-bench`: training-step time and peak memory of the executor's networks on the CPU
//! (or a GPU with `--device cuda`).
//!
//! * The executor's ResNet-20 (gradient descent on `cifar-resnet`) against the hand-written
//!   tch ResNet-20 with the same weights, timed in interleaved rounds; the ratio is
//!   executor / hand-written (median over rounds).
//! * Heavy ball, Nesterov and DenseNet-BC against gradient descent at (about) equal depth: each
//!   network runs in its own process for its step time, and in another for its peak memory: the
//!   growth of the resident set's high-water mark (`VmHWM`) over a training step, measured with
//!   glibc's mmap threshold fixed at 128 KiB so that freed tensors leave the resident set (the
//!   allocator's cache would otherwise count). GPU memory is not reported (see BENCHMARKS.md).
//! * Besides, the timed process's own high-water growth over all its steps ("resident MB"),
//!   under the allocator settings `optarch` runs with (`optarch_core::malloc`: freed memory is
//!   kept for the next step unless `OPTARCH_MALLOC=glibc`).
//!
//! ```text
//! cargo run --release -p optarch-search --bin optarch-bench -- --threads 1
//! ```

use anyhow::{anyhow, Context, Result};
use clap::Parser;
use optarch_core::exec::reference::HandResNet;
use optarch_core::exec::{Arch, Compute, Network};
use optarch_core::spec::{self, Overrides};
use optarch_search::train::{OptimConfig, Sgd};
use serde::Serialize;
use std::time::Instant;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// Training-step time and peak memory of optarch's networks.
#[derive(Debug, Parser)]
#[command(name = "optarch-bench", version)]
struct Args {
    /// Intra-op threads of libtorch.
    #[arg(long, default_value_t = 1)]
    threads: i32,
    /// Images per step.
    #[arg(long, default_value_t = 128)]
    batch: i64,
    /// Timed steps per round.
    #[arg(long, default_value_t = 5)]
    iters: usize,
    /// Rounds (the executor and the hand-written network alternate).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 2)]
    warmup: usize,
    /// auto, cpu, cuda, cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    /// fp16 autocast around the forward pass (CUDA only).
    #[arg(long)]
    amp: bool,
    /// The networks compared with gradient descent: names from gradient_descent, heavy_ball,
    /// nesterov, densenet (cifar-densenet depth 22), densenet100 (depth 100), imagenet
    /// (gradient descent on the imagenet preset, ResNet-18 shape, 224×224, 1000 classes) and
    /// imagenet_heavy_ball.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "gradient_descent,heavy_ball,nesterov,densenet"
    )]
    networks: Vec<String>,
    /// The precisions and layouts each network is measured in: fp32, fp32+cl, bf16, bf16+cl
    /// (`+cl`: channels_last); each network's ratios are to the first.
    #[arg(long, value_delimiter = ',', default_value = "fp32")]
    computes: Vec<String>,
    /// Internal: measure one network in this process (spec name) and print JSON.
    #[arg(long, hide = true)]
    one: Option<String>,
}

/// `fp32`, `fp32+cl`, `bf16` or `bf16+cl`.
fn compute_of(s: &str) -> Result<Compute> {
    s.parse::<Compute>().map_err(|e| anyhow!(e))
}

#[derive(Debug, Serialize, serde::Deserialize)]
struct One {
    name: String,
    compute: String,
    preset: String,
    depth: usize,
    parameters: i64,
    step_ms: f64,
    images_per_sec: f64,
    /// Growth of the resident set's high-water mark over the steps (CPU only). In the report,
    /// that of the memory process: the peak of live memory.
    peak_mb: Option<f64>,
    /// The timed process's high-water growth over all its steps, under the allocator settings
    /// the run has (`malloc`): what the resident set of a training process reaches (CPU only).
    #[serde(default)]
    resident_mb: Option<f64>,
}

#[derive(Debug, Serialize)]
struct Report {
    device: String,
    /// glibc's allocator in the timed processes (optarch_core::malloc).
    malloc: String,
    amp: bool,
    threads: i32,
    batch: i64,
    executor_step_ms: f64,
    hand_written_step_ms: f64,
    ratio: f64,
    networks: Vec<One>,
}

/// `specs/` in the working directory (a prebuilt binary on another machine, run from a
/// checkout), else the one beside this source tree.
fn specs_dir() -> std::path::PathBuf {
    let here = std::path::PathBuf::from("specs");
    if here.join("gradient_descent.yaml").is_file() {
        return here;
    }
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../specs")
}

/// A benchmarked network: (spec, preset, depth, image side, classes).
fn entry(name: &str) -> Result<(&'static str, &'static str, usize, i64, i64)> {
    Ok(match name {
        "gradient_descent" => ("gradient_descent", "cifar-resnet", 20, 32, 10),
        "heavy_ball" => ("heavy_ball", "cifar-resnet", 20, 32, 10),
        "nesterov" => ("nesterov", "cifar-resnet", 20, 32, 10),
        "densenet" => ("densenet", "cifar-densenet", 22, 32, 10),
        "densenet100" => ("densenet", "cifar-densenet", 100, 32, 10),
        "imagenet" => ("gradient_descent", "imagenet", 18, 224, 1000),
        "imagenet_heavy_ball" => ("heavy_ball", "imagenet", 18, 224, 1000),
        other => {
            return Err(anyhow!(
                "unknown network `{other}`: expected gradient_descent, heavy_ball, nesterov, \
                 densenet, densenet100, imagenet or imagenet_heavy_ball"
            ))
        }
    })
}

fn batch(n: i64, side: i64, classes: i64, device: Device) -> (Tensor, Tensor) {
    let x = Tensor::randn([n, 3, side, side], (Kind::Float, device));
    let y = Tensor::randint(classes, [n], (Kind::Int64, device));
    (x, y)
}

thread_local! {
    /// `--amp`: fp16 autocast around the forward pass.
    static AMP: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn step(net: &dyn ModuleT, opt: &mut Sgd, x: &Tensor, y: &Tensor) {
    opt.zero_grad();
    let logits = optarch_core::device::autocast_fp16(AMP.get(), || net.forward_t(x, true));
    let loss = logits.to_kind(Kind::Float).cross_entropy_for_logits(y);
    loss.backward();
    opt.step(0.01);
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Median seconds per step over `iters` steps.
fn time_steps(
    net: &dyn ModuleT,
    opt: &mut Sgd,
    x: &Tensor,
    y: &Tensor,
    iters: usize,
    device: Device,
) -> f64 {
    let mut times = Vec::with_capacity(iters);
    for _ in 0..iters {
        sync(device);
        let t = Instant::now();
        step(net, opt, x, y);
        sync(device);
        times.push(t.elapsed().as_secs_f64());
    }
    median(&mut times)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn rss_kb(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn build(
    name: &str,
    preset: &str,
    depth: usize,
    classes: i64,
    vs: &nn::VarStore,
) -> Result<Network> {
    let s = spec::load(specs_dir().join(format!("{name}.yaml"))).map_err(|e| anyhow!("{e}"))?;
    let arch = Arch::preset(preset, depth, classes)?;
    Ok(Network::new(&vs.root(), &s, &Overrides::new(), &arch)?)
}

fn one(args: &Args, name: &str, device: Device) -> Result<One> {
    let (spec_name, preset, depth, side, classes) = entry(name)?;
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let mut net = build(spec_name, preset, depth, classes, &vs)?;
    let compute = args.computes.first().map(String::as_str).unwrap_or("fp32");
    net.set_compute(compute_of(compute)?);
    let mut opt = Sgd::new(&vs, &OptimConfig::default());
    let (x, y) = batch(args.batch, side, classes, device);
    sync(device);
    let base = rss_kb("VmRSS:").unwrap_or(0.0);
    for _ in 0..args.warmup {
        step(&net, &mut opt, &x, &y);
    }
    let secs = time_steps(&net, &mut opt, &x, &y, args.iters * args.rounds, device);
    // On CUDA the allocator's peak would be the measure, but tch 0.24 exposes no binding for
    // it: GPU memory is not reported (docs/BENCHMARKS.md says so).
    let peak_mb =
        (!device.is_cuda()).then(|| (rss_kb("VmHWM:").unwrap_or(0.0) - base).max(0.0) / 1024.0);
    Ok(One {
        name: name.into(),
        compute: compute.into(),
        preset: preset.into(),
        depth,
        parameters: optarch_core::exec::parameter_count(&vs),
        step_ms: secs * 1e3,
        images_per_sec: args.batch as f64 / secs,
        peak_mb,
        resident_mb: None,
    })
}

/// glibc's fixed mmap threshold for the memory children: every tensor above 128 KiB gets its own
/// mapping, returned to the kernel when it is freed, so the resident set's high-water mark is the
/// peak of live memory rather than of the allocator's cache (and the dynamic threshold, which
/// depends on the allocation history, no longer differs between networks).
const MMAP_THRESHOLD: &str = "131072";

/// Runs `--one name` in a fresh process. With `memory`, under [`MMAP_THRESHOLD`] and with one
/// warm-up and one timed step (its step time is then not representative and is discarded).
fn child(args: &Args, name: &str, compute: &str, memory: bool) -> Result<One> {
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["--one", name])
        .args(["--computes", compute])
        .args(["--threads", &args.threads.to_string()])
        .args(["--batch", &args.batch.to_string()])
        .args(["--device", &args.device]);
    if args.amp {
        cmd.arg("--amp");
    }
    if memory {
        cmd.args(["--iters", "1", "--rounds", "1", "--warmup", "1"])
            .env("MALLOC_MMAP_THRESHOLD_", MMAP_THRESHOLD);
    } else {
        cmd.args(["--iters", &args.iters.to_string()])
            .args(["--rounds", &args.rounds.to_string()])
            .args(["--warmup", &args.warmup.to_string()]);
    }
    let out = cmd.output()?;
    if !out.status.success() {
        return Err(anyhow!("{name}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(serde_json::from_slice::<One>(&out.stdout)?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    // As `optarch` does: the step times are those of the programs users run. The memory
    // children set MALLOC_MMAP_THRESHOLD_, which this leaves alone.
    let malloc = optarch_core::malloc::tune_for_training().map_err(|e| anyhow!(e))?;
    tch::set_num_threads(args.threads);
    let device = optarch_core::device::parse_device(&args.device).map_err(|e| anyhow!("{e}"))?;
    if args.amp && !device.is_cuda() {
        return Err(anyhow!("--amp needs a CUDA device (--device cuda)"));
    }
    for n in &args.networks {
        entry(n)?;
    }
    for c in &args.computes {
        compute_of(c)?;
    }
    AMP.set(args.amp);
    if let Some(name) = &args.one {
        let r = one(&args, name, device)?;
        println!("{}", serde_json::to_string(&r)?);
        return Ok(());
    }
    // Executor against hand-written ResNet-20, same weights, interleaved.
    tch::manual_seed(0);
    let exec_vs = nn::VarStore::new(device);
    let net = build("gradient_descent", "cifar-resnet", 20, 10, &exec_vs)?;
    let mut hand_vs = nn::VarStore::new(device);
    let hand = HandResNet::new(&hand_vs.root(), 3, 10);
    hand_vs
        .copy(&exec_vs)
        .context("the hand-written ResNet-20 does not take the executor's weights")?;
    let mut opt_e = Sgd::new(&exec_vs, &OptimConfig::default());
    let mut opt_h = Sgd::new(&hand_vs, &OptimConfig::default());
    let (x, y) = batch(args.batch, 32, 10, device);
    for _ in 0..args.warmup {
        step(&net, &mut opt_e, &x, &y);
        step(&hand, &mut opt_h, &x, &y);
    }
    let (mut te, mut th, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        let e = time_steps(&net, &mut opt_e, &x, &y, args.iters, device);
        let h = time_steps(&hand, &mut opt_h, &x, &y, args.iters, device);
        te.push(e);
        th.push(h);
        ratios.push(e / h);
    }
    // One process per network for step time, and another for peak memory.
    let mut networks = Vec::new();
    for name in &args.networks {
        for compute in &args.computes {
            let mut timed = child(&args, name, compute, false)?;
            if !device.is_cuda() {
                timed.resident_mb = timed.peak_mb;
                timed.peak_mb = child(&args, name, compute, true)?.peak_mb;
            }
            networks.push(timed);
        }
    }
    let report = Report {
        device: format!("{device:?}"),
        malloc: malloc.to_string(),
        amp: args.amp,
        threads: args.threads,
        batch: args.batch,
        executor_step_ms: median(&mut te) * 1e3,
        hand_written_step_ms: median(&mut th) * 1e3,
        ratio: median(&mut ratios),
        networks,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "device {}, {} thread(s), batch {}; allocator {}",
        report.device, report.threads, report.batch, report.malloc
    );
    println!(
        "ResNet-20 training step: executor {:.1} ms, hand-written {:.1} ms, ratio {:.3}",
        report.executor_step_ms, report.hand_written_step_ms, report.ratio
    );
    // Ratios: to the first network in the same compute, and to the same network in the first
    // compute.
    let find = |name: &str, compute: &str| {
        report
            .networks
            .iter()
            .find(|n| n.name == name && n.compute == compute)
            .map(|n| (n.step_ms, n.peak_mb.unwrap_or(f64::NAN)))
            .unwrap_or((f64::NAN, f64::NAN))
    };
    let (first_net, first_compute) = (
        args.networks.first().cloned().unwrap_or_default(),
        args.computes.first().cloned().unwrap_or_default(),
    );
    println!(
        "{:<18} {:<9} {:<15} {:>10} {:>9} {:>7} {:>7} {:>9} {:>7} {:>7} {:>11}",
        "spec",
        "compute",
        "preset",
        "params",
        "step ms",
        "× first",
        "× same",
        "peak MB",
        "× first",
        "× same",
        "resident MB"
    );
    for n in &report.networks {
        let (net0, comp0) = (find(&first_net, &n.compute), find(&n.name, &first_compute));
        let peak = n.peak_mb.unwrap_or(f64::NAN);
        println!(
            "{:<18} {:<9} {:<15} {:>10} {:>9.1} {:>7.3} {:>7.3} {:>9.1} {:>7.3} {:>7.3} {:>11.1}",
            n.name,
            n.compute,
            format!("{}-{}", n.preset, n.depth),
            n.parameters,
            n.step_ms,
            n.step_ms / net0.0,
            n.step_ms / comp0.0,
            peak,
            peak / net0.1,
            peak / comp0.1,
            n.resident_mb.unwrap_or(f64::NAN)
        );
    }
    println!(
        "× first: against {first_net} in the same compute; × same: against the same network in \
         {first_compute}; peak MB: live memory at a step's peak; resident MB: the high-water \
         mark of the timed process over all its steps"
    );
    Ok(())
}
