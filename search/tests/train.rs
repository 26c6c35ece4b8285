//! The trainer end to end: exact resume, divergence, and (with real data) a learning check.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optarch_core::device::DeviceChoice;
use optarch_search::train::{
    self, EpochMetrics, Precision, Progress, RunConfigFile, RunSpec, Status, Switch, TrainConfig,
};
use std::path::{Path, PathBuf};

/// libtorch's seed and thread count are global to the process: tests that train run one at a
/// time even under `cargo test`'s threads (nextest gives each test its own process anyway).
static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    TRAINING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops after `stop_after` epochs, as an interrupt would.
struct StopAfter(usize, usize);

impl Progress for StopAfter {
    fn epoch_start(&mut self, _: usize, _: usize, _: usize) {}
    fn batch(&mut self, _: f64) {}
    fn epoch_end(&mut self, _: &EpochMetrics) -> bool {
        self.1 += 1;
        self.1 < self.0
    }
}

/// A small CIFAR-10 folder of random images (the official layout, 60 per file).
fn fake_cifar(dir: &Path) -> PathBuf {
    optarch_search::data::synthetic::write_cifar10(dir, 60, 12345).unwrap()
}

/// A run of `spec` (a file of `specs/`) on CPU with `data`, `epochs` epochs and `seed`.
fn run_config(spec: &str, data: &Path, epochs: usize, seed: u64) -> RunConfigFile {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../specs")
        .join(spec);
    let mut train = TrainConfig::default();
    train.data.path = Some(data.to_path_buf());
    train.data.download = false;
    train.schedule.epochs = epochs;
    train.run.device = DeviceChoice::Cpu;
    train.run.seed = seed;
    RunConfigFile {
        spec: RunSpec {
            text: std::fs::read_to_string(&path).unwrap(),
            path,
            overrides: Default::default(),
        },
        train,
    }
}

fn config(data: &Path, epochs: usize) -> RunConfigFile {
    let mut c = run_config("heavy_ball.yaml", data, epochs, 7);
    c.train.arch.depth = 8;
    c.train.data.val = 50;
    c.train.optim.batch_size = 32;
    c
}

#[test]
fn an_interrupted_run_resumes_bit_for_bit() {
    let _guard = exclusive();
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let data = fake_cifar(tmp.path());
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let full = train::train(config(&data, 3), &a, &mut StopAfter(usize::MAX, 0)).unwrap();
    assert_eq!(full.status, Status::Done);
    let part = train::train(config(&data, 3), &b, &mut StopAfter(1, 0)).unwrap();
    assert_eq!(part.status, Status::Running, "stopped after one epoch");
    assert_eq!(part.epochs, 1);
    // A second `train` into the same directory is refused.
    assert!(train::train(config(&data, 3), &b, &mut StopAfter(1, 0)).is_err());
    let resumed = train::resume(&b, &mut StopAfter(usize::MAX, 0)).unwrap();
    assert_eq!(resumed.status, Status::Done);
    assert_eq!(resumed.epochs, 3);
    let wa = std::fs::read(a.join("last.safetensors")).unwrap();
    let wb = std::fs::read(b.join("last.safetensors")).unwrap();
    assert!(wa == wb, "weights differ after resume");
    let ma: Vec<EpochMetrics> = std::fs::read_to_string(a.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mb: Vec<EpochMetrics> = std::fs::read_to_string(b.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ma.len(), 3);
    assert_eq!(mb.len(), 3);
    for (x, y) in ma.iter().zip(&mb) {
        assert_eq!(
            (x.train_loss, x.test_acc, x.val_acc, x.lr),
            (y.train_loss, y.test_acc, y.val_acc, y.lr)
        );
    }
    for f in [
        "config.json",
        "state.json",
        "best.safetensors",
        "last.safetensors",
        "topology.svg",
        "summary.json",
    ] {
        assert!(a.join(f).is_file(), "{f} missing");
    }
    // `--test-at-end` (a search's final trials): the test set after the last epoch only, and
    // the run otherwise the same, weights and the last test accuracy included.
    let c = tmp.path().join("c");
    let mut at_end = config(&data, 3);
    at_end.train.data.test_every_epoch = false;
    let last = train::train(at_end, &c, &mut StopAfter(usize::MAX, 0)).unwrap();
    assert_eq!(last.final_test_acc, full.final_test_acc);
    assert!(std::fs::read(c.join("last.safetensors")).unwrap() == wa);
    let mc: Vec<EpochMetrics> = std::fs::read_to_string(c.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let tests: Vec<Option<f64>> = mc.iter().map(|m| m.test_acc).collect();
    assert_eq!(tests, [None, None, ma[2].test_acc], "{mc:?}");
    assert!(ma[2].test_acc.is_some());
    for (x, y) in ma.iter().zip(&mc) {
        assert_eq!((x.train_loss, x.val_acc), (y.train_loss, y.val_acc));
    }
}

#[test]
fn a_nan_loss_marks_the_run_diverged() {
    let _guard = exclusive();
    tch::set_num_threads(1);
    let tmp = tempfile::tempdir().unwrap();
    let data = fake_cifar(tmp.path());
    let mut cfg = config(&data, 2);
    cfg.train.optim.lr = 1e12;
    cfg.train.schedule.kind = train::Schedule::Cosine;
    let dir = tmp.path().join("d");
    let s = train::train(cfg, &dir, &mut StopAfter(usize::MAX, 0)).unwrap();
    assert_eq!(s.status, Status::Diverged);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["status"], "diverged");
}

/// ResNet-20 (gradient descent) on 10,000 CIFAR-10 images for 5 epochs on CPU reaches at
/// least 40 % on the 10,000 test images, in fp32 and, where the CPU computes in bfloat16 (AMX or
/// AVX-512-BF16, as `optarch env` reports), in bf16 with channels_last.
///
/// With bfloat16 instructions both precisions train seeds 0 and 1, and their means must end
/// within 2.5 points of each other: measured on 2026-12-02 (Intel, AMX), fp32 60.68 % (61.28,
/// 60.08) and bf16 59.21 % (60.18, 58.24), 1.47 points apart, which misses issue 13's 1-point
/// target; the guard catches a broken bf16 path, not that gap. Without them libtorch emulates
/// bf16: a ResNet-20 step took 10.0 s against fp32's 1.23 s on an AVX2-only AMD EPYC
/// (`optarch-bench --networks gradient_descent --computes fp32,bf16+cl`), so four runs would
/// take hours; the check then trains fp32 seed 0 alone and says that bf16 was left out (the
/// bf16 path's numbers are still checked against fp32 on every shipped spec by
/// `core/tests/precision.rs`).
#[test]
fn resnet20_learns_cifar10() {
    let Some(root) = std::env::var_os("OPTARCH_DATA").filter(|v| !v.is_empty()) else {
        eprintln!("SKIPPED resnet20_learns_cifar10: set OPTARCH_DATA to the folder holding cifar-10-binary.tar.gz (.ci/run does)");
        return;
    };
    // The allocator as `optarch train` runs it: freed tensors kept for the next step.
    optarch_core::malloc::tune_for_training().unwrap();
    let bf16 = optarch_core::device::cpu_bf16();
    let (computes, seeds): (&[(Precision, Switch)], &[u64]) = match &bf16 {
        Some(_) => (
            &[
                (Precision::Fp32, Switch::Off),
                (Precision::Bf16, Switch::On),
            ],
            &[0, 1],
        ),
        None => {
            eprintln!(
                "bf16 LEFT OUT of resnet20_learns_cifar10: this CPU has no bfloat16 instructions \
                 (AMX or AVX-512-BF16), so libtorch would emulate bf16 at ~8x fp32's time; \
                 training fp32, seed 0 only"
            );
            (&[(Precision::Fp32, Switch::Off)], &[0])
        }
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut mean = Vec::new();
    for &(precision, channels_last) in computes {
        let mut sum = 0.0;
        for &seed in seeds {
            let mut cfg = run_config("gradient_descent.yaml", Path::new(&root), 5, seed);
            cfg.train.data.train_subset = Some(10_000);
            cfg.train.data.val = 0;
            cfg.train.precision.precision = precision;
            cfg.train.precision.channels_last = channels_last;
            // One thread: two spin-waiting threads on a shared 2-core machine run 10× slower.
            cfg.train.run.threads = Some(1);
            let dir = tmp.path().join(format!("r20-{precision:?}-{seed}"));
            let s = train::train(cfg, &dir, &mut StopAfter(usize::MAX, 0)).unwrap();
            eprintln!(
                "ResNet-20, 10k images, 5 epochs, {}, seed {seed}: test accuracy {:?}, {:.0} s",
                s.compute, s.final_test_acc, s.wall_seconds
            );
            assert_eq!(s.parameters, 269_722, "He et al.'s ResNet-20, option A");
            let a = s.final_test_acc.unwrap();
            assert!(a >= 0.40, "{s}");
            sum += a;
        }
        mean.push(sum / seeds.len() as f64);
    }
    if let [fp32, bf16] = mean[..] {
        eprintln!(
            "means over 2 seeds: fp32 {:.2} %, bf16 {:.2} %",
            100.0 * fp32,
            100.0 * bf16
        );
        assert!(
            (fp32 - bf16).abs() <= 0.025,
            "fp32 {:.2} % against bf16 {:.2} % (means over 2 seeds): more than 2.5 points apart",
            100.0 * fp32,
            100.0 * bf16
        );
    }
}
