//! Crash consistency of `optarch train` (and so of every search trial, which runs the same
//! code): the run is killed (SIGKILL), interrupted (SIGINT) or hit by a full disk (ENOSPC) at
//! each numbered write, sync, rename and removal of its run directory in turn, then resumed;
//! it must end with the metrics and the weights of an uninterrupted run, bit for bit.
//!
//! CI kills the run once at every kind of point (a kind: what is done to which file, whatever
//! the epoch), and interrupts it and fills the disk at every other kind.
//! `OPTARCH_CRASH_SWEEP=full` tries every point with every fault (docs/RELIABILITY.md gives
//! the command and the figures).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The short run every case repeats: two epochs of a small heavy-ball network on synthetic
/// CIFAR-10, one thread, into `out`.
fn train(data: &Path, out: &Path, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_optarch"));
    cmd.current_dir(root())
        .args(["--threads", "1", "--device", "cpu", "train"])
        .args(["--spec", "specs/heavy_ball.yaml", "--depth", "8"])
        .args(["--widths", "4,8,8", "--epochs", "2", "--batch-size", "32"])
        .args(["--val", "40", "--no-download", "--data"])
        .arg(data)
        .arg("-o")
        .arg(out);
    for k in ["OPTARCH_CRASH_AT", "OPTARCH_ENOSPC_AT", "OPTARCH_IO_TRACE"] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("cannot run optarch")
}

fn resume(dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_optarch"))
        .current_dir(root())
        .arg("train")
        .arg("--resume")
        .arg(dir)
        .env_remove("OPTARCH_CRASH_AT")
        .env_remove("OPTARCH_ENOSPC_AT")
        .output()
        .expect("cannot run optarch")
}

/// What a finished run leaves that must not depend on its interruptions: each epoch's
/// numbers (not its timings), both weight files, the state's best epoch.
#[derive(Debug, PartialEq)]
struct Outcome {
    metrics: Vec<[Option<f64>; 6]>,
    last: Vec<u8>,
    best: Vec<u8>,
    best_epoch: serde_json::Value,
    status: serde_json::Value,
}

fn outcome(dir: &Path) -> Outcome {
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            [
                "epoch",
                "lr",
                "train_loss",
                "train_acc",
                "val_loss",
                "val_acc",
            ]
            .map(|k| v[k].as_f64())
        })
        .collect();
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).unwrap()).unwrap();
    Outcome {
        metrics,
        last: std::fs::read(dir.join("last.safetensors")).unwrap(),
        best: std::fs::read(dir.join("best.safetensors")).unwrap(),
        best_epoch: state["best_epoch"].clone(),
        status: state["status"].clone(),
    }
}

/// The fault points of the reference run, from its trace: `(number, what and file)`.
fn points(stderr: &str) -> Vec<(usize, String)> {
    stderr
        .lines()
        .filter_map(|l| l.strip_prefix("io point "))
        .filter_map(|l| {
            let (n, rest) = l.split_once(": ")?;
            Some((n.parse().ok()?, rest.to_string()))
        })
        .collect()
}

/// A point's kind: what it does to which file, without the run directory and the epoch.
fn kind(what: &str, dir: &Path) -> String {
    let s = what.replace(&dir.display().to_string(), "");
    s.chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    Kill,
    Interrupt,
    FullDisk,
}

/// Injects `fault` at point `n` of a run into `dir`, checks how the run stops, finishes it
/// as a user would (resume, or start again when it never committed a state) and returns its
/// outcome.
fn survive(data: &Path, dir: &Path, n: usize, fault: Fault) -> Result<Outcome, String> {
    let env = match fault {
        Fault::Kill => vec![("OPTARCH_CRASH_AT", n.to_string())],
        Fault::Interrupt => vec![
            ("OPTARCH_CRASH_AT", n.to_string()),
            ("OPTARCH_CRASH_SIGNAL", "INT".to_string()),
        ],
        Fault::FullDisk => vec![("OPTARCH_ENOSPC_AT", n.to_string())],
    };
    let out = train(data, dir, &env);
    let stderr = text(&out.stderr);
    let stopped = match fault {
        Fault::Kill => out.status.signal() == Some(9),
        // Interrupted (130), or done when the signal came during the last epoch's commit.
        Fault::Interrupt => matches!(out.status.code(), Some(130 | 0)),
        Fault::FullDisk => out.status.code() == Some(3) && stderr.contains("No space left"),
    };
    if !stopped {
        return Err(format!(
            "{fault:?} at point {n}: unexpected end {:?}: {stderr}",
            out.status
        ));
    }
    if fault == Fault::Interrupt && out.status.code() == Some(130) && !stderr.contains("--resume") {
        return Err(format!("interrupt at {n}: no resume hint: {stderr}"));
    }
    let again = if dir.join("state.json").exists() {
        resume(dir)
    } else {
        // Killed before the run's first state: `--resume` says to start again, and so we do.
        let r = resume(dir);
        if !text(&r.stderr).contains("without --resume") {
            return Err(format!(
                "{fault:?} at {n}: --resume of an unstarted run: {}",
                text(&r.stderr)
            ));
        }
        train(data, dir, &[])
    };
    if !again.status.success() {
        return Err(format!(
            "{fault:?} at point {n}: finishing failed: {}",
            text(&again.stderr)
        ));
    }
    Ok(outcome(dir))
}

#[test]
fn a_run_survives_a_fault_at_every_write_sync_and_rename() {
    let tmp = tempfile::tempdir().unwrap();
    let data = optarch_search::data::synthetic::write_cifar10(tmp.path(), 60, 5).unwrap();
    let reference = tmp.path().join("reference");
    let out = train(&data, &reference, &[("OPTARCH_IO_TRACE", "1".into())]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let want = outcome(&reference);
    assert_eq!(want.metrics.len(), 2);
    let all = points(&text(&out.stderr));
    assert!(all.len() > 30, "too few fault points: {all:?}");
    let full = std::env::var("OPTARCH_CRASH_SWEEP").is_ok_and(|v| v == "full");
    // One point of each kind, for the faults CI samples.
    let mut seen = BTreeSet::new();
    let sampled: Vec<usize> = all
        .iter()
        .filter(|(_, what)| seen.insert(kind(what, &reference)))
        .map(|(n, _)| *n)
        .collect();
    let every: Vec<usize> = all.iter().map(|(n, _)| *n).collect();
    let mut jobs = Vec::new();
    for fault in [Fault::Kill, Fault::Interrupt, Fault::FullDisk] {
        // The full sweep: every fault at every point. CI's sample: a kill at every kind of
        // point, an interrupt and a full disk at every other kind.
        let points: Vec<usize> = match (full, fault) {
            (true, _) => every.clone(),
            (false, Fault::Kill) => sampled.clone(),
            _ => sampled.iter().step_by(2).copied().collect(),
        };
        jobs.extend(points.into_iter().map(|n| (fault, n)));
    }
    let tried = jobs.len();
    // Two at a time (each run uses one thread).
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(&(fault, n)) = jobs.get(i) else {
                    break;
                };
                let dir = tmp.path().join(format!("{fault:?}-{n}"));
                let problem = match survive(&data, &dir, n, fault) {
                    Ok(got) if got == want => None,
                    Ok(got) => Some(format!(
                        "{fault:?} at point {n} ({}): the finished run differs: {:?} vs {:?}",
                        all[n - 1].1,
                        got.metrics,
                        want.metrics
                    )),
                    Err(e) => Some(e),
                };
                if let Some(p) = problem {
                    failures.lock().unwrap().push(p);
                }
                let _ = std::fs::remove_dir_all(&dir);
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    eprintln!(
        "{tried} faults injected over {} points ({} kinds): {} survived",
        all.len(),
        sampled.len(),
        tried - failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_damaged_checkpoint_is_named_on_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let data = optarch_search::data::synthetic::write_cifar10(tmp.path(), 60, 5).unwrap();
    let dir = tmp.path().join("run");
    // Stopped after its first epoch's state (a kill at the next epoch's first write).
    let out = train(&data, &dir, &[("OPTARCH_IO_TRACE", "1".into())]);
    assert!(out.status.success());
    let first_epoch_done = points(&text(&out.stderr))
        .iter()
        .filter(|(_, w)| w.contains("rename") && w.ends_with("state.json"))
        .nth(1)
        .map(|(n, _)| *n)
        .unwrap();
    let run = tmp.path().join("cut");
    let out = train(
        &data,
        &run,
        &[("OPTARCH_CRASH_AT", (first_epoch_done + 1).to_string())],
    );
    assert_eq!(out.status.signal(), Some(9));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("state.json")).unwrap()).unwrap();
    assert_eq!(state["epochs_done"], 1);
    let weights = run
        .join(state["checkpoint"]["dir"].as_str().unwrap())
        .join("weights.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&weights, bytes).unwrap();
    let out = resume(&run);
    assert_eq!(out.status.code(), Some(3));
    let err = text(&out.stderr);
    assert!(
        err.contains("weights.safetensors") && err.contains("checksum"),
        "{err}"
    );
}
