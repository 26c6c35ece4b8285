//! The Slurm executor against a real Slurm: the single-node cluster `scripts/slurm-cluster.sh`
//! starts (`.ci/run` and `scripts/test.sh` start it and set `OPTARCH_SLURM=1` and `SLURM_CONF`;
//! without them these tests say so and pass, except under CI, where they must run).
//!
//! Run alone: `scripts/slurm-cluster.sh start && eval "$(scripts/slurm-cluster.sh env)" &&
//! OPTARCH_SLURM=1 cargo nextest run -p optarch-search --test slurm`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optarch_search::data::synthetic;
use optarch_search::search::ids::TrialId;
use optarch_search::search::store::{Store, TrialStatus};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn exe() -> &'static str {
    env!("CARGO_BIN_EXE_optarch")
}

fn specs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs")
}

/// Whether a cluster is there to use; under CI it must be.
fn cluster() -> bool {
    let on = std::env::var("OPTARCH_SLURM").is_ok_and(|v| v == "1")
        && std::env::var_os("SLURM_CONF").is_some();
    if !on {
        let msg = "OPTARCH_SLURM=1 and SLURM_CONF are not set: no Slurm cluster to test against \
                   (scripts/test.sh starts one with scripts/slurm-cluster.sh)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("SKIPPED: {msg}");
    }
    on
}

/// A tiny search on synthetic CIFAR-10 with `executor`; `epochs` is the largest rung.
fn config(dir: &Path, executor: &str, body: &str) -> PathBuf {
    let data = synthetic::write_cifar10(&dir.join("synthetic"), 60, 7).unwrap();
    let text = format!(
        "name: tiny\n\
         train:\n\
         \x20 data: {{dataset: cifar10, path: {data}, val: 60, download: false, augment: false}}\n\
         \x20 arch: {{preset: cifar-resnet, widths: [4, 8, 8], stage_steps: [2, 2, 2]}}\n\
         \x20 optim: {{batch_size: 32, lr: 0.05}}\n\
         \x20 schedule: {{kind: cosine}}\n\
         \x20 run: {{seed: 3, device: cpu, threads: 1}}\n\
         execution: {{workers: 2, max_attempts: 3}}\n\
         executor: {executor}\n\
         {body}",
        data = data.display(),
    );
    let p = dir.join("tiny.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

const FOUR: &str = "budget: {min_epochs: 1, max_epochs: 2, eta: 2, trials: 4}\n\
     finalists: {top_k: 2, seeds: 3}\n\
     candidates:\n";

fn candidates() -> String {
    let s = specs().display().to_string();
    format!(
        "  - spec: {s}/gradient_descent.yaml\n  - spec: {s}/heavy_ball.yaml\n    grid: {{beta: \
         [0.0, 0.5]}}\n  - spec: {s}/nesterov.yaml\n  - spec: {s}/lm_resnet.yaml\n"
    )
}

fn search(args: &[&str]) -> std::process::Output {
    Command::new(exe())
        .arg("search")
        .args(args)
        .env_remove("OPTARCH_FAULT")
        .output()
        .unwrap()
}

fn ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn store(dir: &Path) -> Store {
    Store::open_existing(&dir.join("search.db")).unwrap()
}

/// Completed-epoch lines per (trial, epoch) over every trial log.
fn completions(dir: &Path) -> BTreeMap<(TrialId, usize), usize> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir.join("trials")).unwrap() {
        let Ok(text) = std::fs::read_to_string(e.unwrap().path().join("log.txt")) else {
            continue;
        };
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("completed epoch ") {
                let mut it = rest.split(" of trial ");
                let epoch: usize = it.next().unwrap().parse().unwrap();
                let trial: TrialId = it.next().unwrap().trim().parse().unwrap();
                *out.entry((trial, epoch)).or_insert(0) += 1;
            }
        }
    }
    out
}

/// Every trial done, every epoch trained once and recorded, and one job submitted per
/// attempt (none twice).
fn check_complete(dir: &Path) {
    let s = store(dir);
    assert_eq!(s.experiment().unwrap().unwrap().status, "done");
    let done = completions(dir);
    let events = s.events().unwrap();
    for t in s.trials().unwrap() {
        assert_eq!(t.status, TrialStatus::Done, "trial {}: {:?}", t.id, t.error);
        assert_eq!(t.epochs_done, t.budget, "trial {}", t.id);
        let epochs: Vec<usize> = s.epochs(t.id).unwrap().iter().map(|e| e.epoch).collect();
        assert_eq!(
            epochs,
            (0..t.epochs_done).collect::<Vec<_>>(),
            "trial {}",
            t.id
        );
        for e in 0..t.epochs_done {
            assert_eq!(
                done.get(&(t.id, e)).copied(),
                Some(1),
                "epoch {e} of trial {}",
                t.id
            );
        }
        assert!(t.job.is_some(), "trial {} has no job id", t.id);
        let submitted = events
            .iter()
            .filter(|(_, id, m)| *id == Some(t.id) && m.starts_with("submitted as Slurm job"))
            .count();
        assert_eq!(
            submitted as u32, t.attempts,
            "trial {}: jobs against attempts",
            t.id
        );
    }
}

fn squeue_state(job: &str) -> String {
    let o = Command::new("squeue")
        .args([
            "--noheader",
            "--states=all",
            "--format=%T",
            &format!("--jobs={job}"),
        ])
        .env_remove("SQUEUE_FORMAT")
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dry_run_prints_the_batch_scripts() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "{kind: local}",
        &format!("{FOUR}{}", candidates()),
    );
    let out = tmp.path().join("s");
    let o = search(&[
        cfg.to_str().unwrap(),
        "--dry-run",
        "--out",
        out.to_str().unwrap(),
        "--executor",
        "slurm",
        "--partition",
        "gpu",
        "--gres",
        "gpu:1",
        "--time-limit",
        "1:00:00",
    ]);
    ok(&o);
    let text = String::from_utf8_lossy(&o.stdout);
    for want in [
        "#SBATCH --partition=gpu",
        "#SBATCH --gres=gpu:1",
        "#SBATCH --time=1:00:00",
        "#SBATCH --signal=B:TERM@60",
        "trial --job",
        "trials/0001/job.json",
    ] {
        assert!(text.contains(want), "{want} missing:\n{text}");
    }
    assert!(!out.exists(), "a dry run made {}", out.display());
    // A bad override is a configuration error, said before anything is made.
    let o = search(&[
        cfg.to_str().unwrap(),
        "--dry-run",
        "--executor",
        "slurm",
        "--time-limit",
        "soon",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("time_limit"));
}

#[test]
fn a_slurm_search_gives_the_local_leaderboard() {
    if !cluster() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "{kind: slurm, gres: 'gpu:1', max_in_flight: 2, poll_seconds: 1}",
        &format!("{FOUR}{}", candidates()),
    );
    let local = tmp.path().join("local");
    let slurm = tmp.path().join("slurm");
    ok(&search(&[
        cfg.to_str().unwrap(),
        "--out",
        local.to_str().unwrap(),
        "--executor",
        "local",
    ]));
    ok(&search(&[
        cfg.to_str().unwrap(),
        "--out",
        slurm.to_str().unwrap(),
    ]));
    let board = |d: &Path| std::fs::read_to_string(d.join("report/leaderboard.csv")).unwrap();
    assert_eq!(board(&slurm), board(&local), "the leaderboards differ");
    check_complete(&slurm);
    // Each job got a GPU of the node's two (fake) ones through its gres.
    let log = std::fs::read_to_string(slurm.join("trials/0001/log.txt")).unwrap();
    assert!(
        log.contains("CUDA_VISIBLE_DEVICES=0") || log.contains("CUDA_VISIBLE_DEVICES=1"),
        "{log}"
    );
    // The store stays with the driver; the trial directories hold the job protocol's files.
    assert!(slurm.join("trials/0001/job.json").is_file());
    assert!(slurm.join("trials/0001/job.sh").is_file());
    assert!(slurm.join("trials/0001/result.json").is_file());
}

#[test]
fn a_killed_driver_reattaches_to_its_jobs() {
    if !cluster() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "{kind: slurm, max_in_flight: 2, poll_seconds: 1}",
        &format!(
            "budget: {{min_epochs: 3, max_epochs: 3, eta: 2, trials: 2}}\nbaseline: false\n\
             finalists: {{top_k: 0}}\ncandidates:\n{}",
            candidates()
        ),
    );
    let dir = tmp.path().join("s");
    let mut driver = Command::new(exe())
        .args([
            "search",
            cfg.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Killed while its jobs run.
    wait_for("a running job", 120, || {
        dir.join("search.db").exists()
            && store(&dir).trials().is_ok_and(|ts| {
                ts.iter()
                    .any(|t| t.job.is_some() && t.status == TrialStatus::Running)
            })
    });
    driver.kill().unwrap();
    driver.wait().unwrap();
    let running: Vec<String> = store(&dir)
        .trials()
        .unwrap()
        .into_iter()
        .filter(|t| t.status == TrialStatus::Running)
        .filter_map(|t| t.job)
        .collect();
    assert!(!running.is_empty());
    for j in &running {
        let st = squeue_state(j);
        assert!(
            ["PENDING", "RUNNING", "COMPLETING", "COMPLETED"].contains(&st.as_str()),
            "job {j} is {st} after the driver's death"
        );
    }
    ok(&search(&["--resume", dir.to_str().unwrap()]));
    check_complete(&dir);
    let events = store(&dir).events().unwrap();
    for j in &running {
        assert!(
            events
                .iter()
                .any(|(_, _, m)| m
                    == &format!("re-attached to Slurm job {j} after the driver stopped")),
            "job {j} was not re-attached: {events:?}"
        );
    }
}

/// A search of one trial of six epochs on the cluster, its driver started, once the first
/// epoch is on disk: the search directory and the driver.
fn one_trial_running(tmp: &Path) -> (PathBuf, std::process::Child) {
    let s = specs().display().to_string();
    let cfg = config(
        tmp,
        "{kind: slurm, max_in_flight: 1, poll_seconds: 1}",
        &format!(
            "budget: {{min_epochs: 6, max_epochs: 6, eta: 2, trials: 1}}\nbaseline: false\n\
             finalists: {{top_k: 0}}\ncandidates:\n  - spec: {s}/gradient_descent.yaml\n"
        ),
    );
    let dir = tmp.join("s");
    let driver = Command::new(exe())
        .args([
            "search",
            cfg.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let state = dir.join("trials/0001/state.json");
    wait_for("the first epoch", 120, || {
        std::fs::read_to_string(&state).is_ok_and(|s| !s.contains("\"epochs_done\": 0"))
    });
    (dir, driver)
}

/// One trial of six epochs; after its first epoch `disrupt(job)` is done to its job. The trial
/// must end done, as one attempt of one job that ran twice and resumed from its checkpoint.
fn disrupted(disrupt: impl FnOnce(&str)) {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, driver) = one_trial_running(tmp.path());
    let job = store(&dir).trial(TrialId(1)).unwrap().job.unwrap();
    disrupt(&job);
    let out = driver.wait_with_output().unwrap();
    ok(&out);
    check_complete(&dir);
    let t = store(&dir).trial(TrialId(1)).unwrap();
    assert_eq!(t.attempts, 1, "a requeued job is the same attempt");
    assert_eq!(t.job.as_deref(), Some(job.as_str()));
    let log = std::fs::read_to_string(dir.join("trials/0001/log.txt")).unwrap();
    assert!(
        log.contains("restart 1"),
        "the job did not run a second time:\n{log}"
    );
    assert!(
        log.contains("resuming trial 1 from its checkpoint"),
        "the trial did not resume from its checkpoint:\n{log}"
    );
}

fn scontrol(args: &[&str]) {
    let o = Command::new("scontrol").args(args).output().unwrap();
    assert!(
        o.status.success(),
        "scontrol {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_requeued_job_resumes_from_its_checkpoint() {
    if !cluster() {
        return;
    }
    // What a preemption does: Slurm stops the job and queues it again.
    disrupted(|job| scontrol(&["requeue", job]));
}

#[test]
fn the_warning_before_a_time_limit_requeues_the_job() {
    if !cluster() {
        return;
    }
    // What `--signal=B:TERM@60` sends a minute before the limit: the trial stops at its last
    // epoch and requeues its own job.
    disrupted(|job| {
        let o = Command::new("scancel")
            .args(["--signal=TERM", "--batch", job])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    });
}

/// A real time limit (one minute, Slurm's smallest): the warning (`--signal=B:TERM@60`, sent
/// at once since a minute is all there is) stops the trial at its last epoch, the job requeues
/// itself, and the trial finishes over as many runs of the same job as it needs (about a
/// minute and a half: Slurm checks limits every 30 s; the trial is long enough, about a
/// minute of training, to be signalled at least once).
#[test]
fn a_time_limited_trial_is_signalled_and_finishes_after_requeue() {
    if !cluster() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = specs().display().to_string();
    let cfg = config(
        tmp.path(),
        "{kind: slurm, max_in_flight: 1, poll_seconds: 1, time_limit: '1'}",
        &format!(
            "budget: {{min_epochs: 400, max_epochs: 400, eta: 2, trials: 1}}\nbaseline: \
             false\nfinalists: {{top_k: 0}}\ncandidates:\n  - spec: \
             {s}/gradient_descent.yaml\n"
        ),
    );
    let dir = tmp.path().join("s");
    ok(&search(&[
        cfg.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]));
    check_complete(&dir);
    // Requeued runs of one job are one attempt (checked exactly by the `disrupted` tests). With
    // a one-minute limit the warning can also reach a run still starting, before its handler
    // exists (loading libtorch on a loaded machine): that run dies, and the trial is
    // resubmitted once and resumes. Real limits (hours) warn long after the start.
    let t = store(&dir).trial(TrialId(1)).unwrap();
    assert!(
        (1..=2).contains(&t.attempts),
        "{} attempts: requeued runs of one job are one attempt",
        t.attempts
    );
    let log = std::fs::read_to_string(dir.join("trials/0001/log.txt")).unwrap();
    assert!(
        log.contains("requeued: the job resumes from its checkpoint"),
        "the trial was never signalled:\n{log}"
    );
}

/// A job that dies without a result (its process killed) is its own cause, and the trial is
/// resubmitted as a new attempt that resumes from the checkpoint.
#[test]
fn a_job_that_dies_is_resubmitted_from_its_checkpoint() {
    if !cluster() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (dir, driver) = one_trial_running(tmp.path());
    let job_file = std::fs::canonicalize(dir.join("trials/0001/job.json")).unwrap();
    let o = Command::new("pkill")
        .args([
            "-KILL",
            "-f",
            &format!("trial --job {}", job_file.display()),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "no trial process to kill");
    ok(&driver.wait_with_output().unwrap());
    check_complete(&dir);
    let t = store(&dir).trial(TrialId(1)).unwrap();
    assert_eq!(t.attempts, 2);
    let events = store(&dir).events().unwrap();
    assert!(
        events
            .iter()
            .any(|(_, _, m)| m.contains("ended without a result (Slurm state FAILED)")),
        "{events:?}"
    );
}

#[test]
fn a_node_failure_requeues_and_resumes() {
    if !cluster() {
        return;
    }
    // The node goes down under the job (Slurm requeues it) and comes back.
    disrupted(|_| {
        scontrol(&[
            "update",
            "NodeName=localhost",
            "State=DOWN",
            "Reason=optarch-test",
        ]);
        std::thread::sleep(Duration::from_secs(2));
        // Back by itself (ReturnToService=2 when slurmd registers again), or resumed here.
        let _ = Command::new("scontrol")
            .args(["update", "NodeName=localhost", "State=RESUME"])
            .output();
        wait_for("the node to come back", 60, || {
            Command::new("sinfo")
                .args(["--noheader", "--format=%T"])
                .output()
                .is_ok_and(|o| {
                    let st = String::from_utf8_lossy(&o.stdout);
                    ["idle", "mixed", "allocated"].contains(&st.trim())
                })
        });
    });
}

#[test]
fn job_failures_land_as_their_own_causes() {
    if !cluster() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = specs().display().to_string();
    let cfg = config(
        tmp.path(),
        "{kind: slurm, max_in_flight: 2, poll_seconds: 1}",
        &format!(
            "budget: {{min_epochs: 8, max_epochs: 8, eta: 2, trials: 2}}\nbaseline: false\n\
             finalists: {{top_k: 0}}\ncandidates:\n  - spec: {s}/gradient_descent.yaml\n  - \
             spec: {s}/heavy_ball.yaml\n    grid: {{beta: [0.5]}}\n"
        ),
    );
    let dir = tmp.path().join("s");
    // Trial 1 fails in its job (a non-zero exit with a result); trial 2 is cancelled.
    let driver = Command::new(exe())
        .args([
            "search",
            cfg.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
        ])
        .env("OPTARCH_FAULT", "fail@1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("trial 2's job", 120, || {
        dir.join("search.db").exists()
            && store(&dir)
                .trial(TrialId(2))
                .is_ok_and(|t| t.job.is_some() && t.status == TrialStatus::Running)
    });
    let job = store(&dir).trial(TrialId(2)).unwrap().job.unwrap();
    let o = Command::new("scancel").arg(&job).output().unwrap();
    assert!(o.status.success());
    let out = driver.wait_with_output().unwrap();
    // No winner: the search says so and exits 3.
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = store(&dir);
    let t1 = s.trial(TrialId(1)).unwrap();
    assert_eq!(t1.status, TrialStatus::Failed);
    assert!(
        t1.error.as_deref().unwrap().contains("injected"),
        "{:?}",
        t1.error
    );
    let t2 = s.trial(TrialId(2)).unwrap();
    assert_eq!(t2.status, TrialStatus::Failed);
    assert!(
        t2.error.as_deref().unwrap().contains("cancelled"),
        "{:?}",
        t2.error
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cancelled") && stderr.contains("injected"),
        "{stderr}"
    );
}

#[test]
fn the_probe_catches_an_optarch_the_nodes_cannot_run() {
    if !cluster() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "{kind: slurm, optarch: /nonexistent/optarch, probe_timeout: 120}",
        &format!("{FOUR}{}", candidates()),
    );
    let dir = tmp.path().join("s");
    let o = search(&[cfg.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("could not run /nonexistent/optarch"), "{e}");
    assert!(!dir.exists(), "a search that cannot run was made anyway");
}
