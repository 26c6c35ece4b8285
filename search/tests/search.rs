//! End-to-end searches on a small synthetic CIFAR-10 (no real data needed): the phases, the
//! fault handling, and resuming after the driver is killed at several points.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optarch_search::data::synthetic;
use optarch_search::search::ids::TrialId;
use optarch_search::search::store::{Phase, Store, TrialStatus};
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

/// A tiny search: 4 candidates, rungs 1 → 2 epochs (η = 2), 2 finalists × 3 seeds; trial
/// processes forked by the trial server, or (`fork: false`) each started as `optarch trial`.
fn config(dir: &Path, extra_candidates: &str, trials: usize, fork: bool) -> PathBuf {
    let data = synthetic::write_cifar10(&dir.join("synthetic"), 60, 7).unwrap();
    let text = format!(
        "name: tiny\n\
         train:\n\
         \x20 data: {{dataset: cifar10, path: {data}, val: 60, download: false, augment: false}}\n\
         \x20 arch: {{preset: cifar-resnet, widths: [4, 8, 8], stage_steps: [3, 3, 3]}}\n\
         \x20 optim: {{batch_size: 32, lr: 0.05}}\n\
         \x20 schedule: {{kind: cosine}}\n\
         \x20 run: {{seed: 3, device: cpu, threads: 1}}\n\
         budget: {{min_epochs: 1, max_epochs: 2, eta: 2, trials: {trials}}}\n\
         finalists: {{top_k: 2, seeds: 3}}\n\
         execution: {{workers: 2, max_attempts: 2, fork_server: {fork}}}\n\
         candidates:\n\
         \x20 - spec: {s}/gradient_descent.yaml\n\
         \x20 - spec: {s}/heavy_ball.yaml\n    grid: {{beta: [0.0, 0.5]}}\n\
         \x20 - spec: {s}/nesterov.yaml\n\
         {extra_candidates}",
        data = data.display(),
        s = specs().display()
    );
    let p = dir.join("tiny.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn search(args: &[&str], fault: Option<&str>) -> std::process::Output {
    let mut c = Command::new(exe());
    c.arg("search").args(args).env_remove("OPTARCH_FAULT");
    if let Some(f) = fault {
        c.env("OPTARCH_FAULT", f);
    }
    c.output().unwrap()
}

/// The text of every trial log of the search.
fn logs(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("trials"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path().join("log.txt")).ok())
        .collect()
}

/// Completed-epoch lines per (trial, epoch) over every log of the search.
fn completions(dir: &Path) -> BTreeMap<(TrialId, usize), usize> {
    let mut out = BTreeMap::new();
    for text in logs(dir) {
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

/// Every phase ran, every trial finished, and every finished epoch was trained exactly once
/// and recorded.
fn check_complete(dir: &Path, failed: &[TrialId]) {
    let s = Store::open_existing(&dir.join("search.db")).unwrap();
    let trials = s.trials().unwrap();
    assert_eq!(s.experiment().unwrap().unwrap().status, "done");
    for t in &trials {
        if failed.contains(&t.id) {
            assert_eq!(t.status, TrialStatus::Failed);
            continue;
        }
        assert!(
            matches!(t.status, TrialStatus::Done | TrialStatus::Diverged),
            "trial {} is {:?}: {:?}",
            t.id,
            t.status,
            t.error
        );
        let epochs = s.epochs(t.id).unwrap();
        let want: Vec<usize> = (0..t.epochs_done).collect();
        assert_eq!(
            epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(),
            want,
            "trial {}",
            t.id
        );
        if t.status == TrialStatus::Done {
            assert_eq!(t.epochs_done, t.budget, "trial {}", t.id);
        }
    }
    let done = completions(dir);
    for t in &trials {
        for e in 0..t.epochs_done {
            assert_eq!(
                done.get(&(t.id, e)).copied(),
                Some(1),
                "epoch {e} of trial {} was completed {:?} times",
                t.id,
                done.get(&(t.id, e))
            );
        }
    }
    // The phases: search trials, a baseline at equal budget, and the final phase: the top 2
    // candidates and the reference (gradient descent, unless it is one of them) × 3 seeds.
    let phase = |p: Phase| trials.iter().filter(|t| t.phase == p).count();
    assert!(phase(Phase::Search) >= 3, "{trials:#?}");
    assert!(phase(Phase::Baseline) >= 1);
    let candidates = s.candidates().unwrap();
    let reference = candidates
        .iter()
        .find(|c| c.reference)
        .map(|c| c.id)
        .unwrap();
    assert_eq!(
        candidates.iter().filter(|c| c.reference).count(),
        1,
        "gradient_descent is the reference"
    );
    let finalists: std::collections::BTreeSet<_> = trials
        .iter()
        .filter(|t| t.phase == Phase::Final)
        .map(|t| t.candidate)
        .collect();
    assert!(finalists.contains(&reference), "{finalists:?}");
    assert!(matches!(finalists.len(), 2 | 3), "{finalists:?}");
    assert_eq!(phase(Phase::Final), 3 * finalists.len());
    for c in &finalists {
        let mut seeds: Vec<u64> = trials
            .iter()
            .filter(|t| t.phase == Phase::Final && t.candidate == *c)
            .map(|t| t.seed)
            .collect();
        seeds.sort_unstable();
        assert_eq!(seeds, [4, 5, 6], "the finalists share their seeds");
    }
    // The test set is evaluated by the final trials only, nothing else could read it, and by
    // them after their last epoch only: the report reads no other.
    for t in &trials {
        let epochs = s.epochs(t.id).unwrap();
        let tested: Vec<bool> = epochs.iter().map(|e| e.test_acc.is_some()).collect();
        match t.phase {
            Phase::Final => {
                let mut last_only = vec![false; t.max_budget];
                last_only[t.max_budget - 1] = true;
                assert_eq!(tested, last_only, "trial {}'s test passes", t.id);
            }
            _ => assert!(
                tested.iter().all(|&x| !x),
                "trial {} evaluated the test set",
                t.id
            ),
        }
    }
    let search_epochs: usize = trials
        .iter()
        .filter(|t| t.phase == Phase::Search)
        .map(|t| t.epochs_done)
        .sum();
    // Equal budget: as many full-budget (2-epoch) random trials as the search's epochs buy.
    let pool = s.candidates().unwrap().len();
    let target = ((search_epochs as f64 / 2.0).round() as usize)
        .max(1)
        .min(pool);
    assert_eq!(
        phase(Phase::Baseline),
        target,
        "search used {search_epochs} epochs"
    );
}

#[test]
fn a_search_runs_its_phases_merges_duplicates_and_promotes_the_best() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", 3, false);
    let dir = tmp.path().join("run");
    let out = search(
        &[
            cfg.to_str().unwrap(),
            "--out",
            dir.to_str().unwrap(),
            "--json",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // --json: one document on stdout (outcome, leaderboard, export), the summary on stderr.
    assert!(stderr.contains("search done"), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["outcome"]["status"], "done", "{json}");
    assert_eq!(
        json["outcome"]["winner"], json["leaderboard"]["leaderboard"][0]["name"],
        "{json}"
    );
    assert!(
        json["export"]["files"].as_array().unwrap().len() >= 5,
        "{json}"
    );
    check_complete(&dir, &[]);
    let s = Store::open_existing(&dir.join("search.db")).unwrap();
    // heavy_ball[beta=0] is gradient descent: merged, so 3 candidates, not 4.
    let names: Vec<String> = s
        .candidates()
        .unwrap()
        .into_iter()
        .map(|c| c.row.name)
        .collect();
    assert_eq!(
        names,
        ["gradient_descent", "heavy_ball[beta=0.5]", "nesterov"]
    );
    assert!(s.events().unwrap().iter().any(
        |(_, _, m)| m.contains("merged heavy_ball[beta=0]: same topology as gradient_descent")
    ));
    // ... and said on the terminal, by the search and by --check, not dropped silently.
    assert!(
        stderr.contains("merged heavy_ball[beta=0]: same topology as gradient_descent"),
        "{stderr}"
    );
    let check = search(&[cfg.to_str().unwrap(), "--check"], None);
    assert!(
        String::from_utf8_lossy(&check.stdout)
            .contains("merged heavy_ball[beta=0]: same topology as gradient_descent"),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // ASHA with η = 2 over 3 results at rung 0 promotes exactly the best one.
    let trials = s.trials().unwrap();
    let searched: Vec<_> = trials.iter().filter(|t| t.phase == Phase::Search).collect();
    assert_eq!(searched.len(), 3);
    let promoted: Vec<_> = searched.iter().filter(|t| t.rung == 1).collect();
    assert_eq!(promoted.len(), 1, "{searched:?}");
    let score0 = |id: TrialId| {
        let e = s.epochs(id).unwrap();
        e[0].val_acc.unwrap()
    };
    let best = searched
        .iter()
        .map(|t| score0(t.id))
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(score0(promoted[0].id), best);
    assert_eq!(promoted[0].epochs_done, 2);
    // With `fork_server: false`, each trial process was started on its own.
    assert!(logs(&dir)
        .iter()
        .all(|t| !t.contains("forked by the trial server")));
    // The outcome is written; a second search into the same directory is refused.
    assert!(dir.join("outcome.json").is_file());
    let again = search(
        &[cfg.to_str().unwrap(), "--out", dir.to_str().unwrap()],
        None,
    );
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--resume"));
    // The winner is exported where --out says.
    let elsewhere = tmp.path().join("winner");
    let out = std::process::Command::new(exe())
        .args(["export", dir.to_str().unwrap(), "--out"])
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(elsewhere.join("weights.safetensors").is_file());
    assert!(std::fs::read_dir(&elsewhere).unwrap().count() >= 3);
}

#[test]
fn crashes_are_retried_out_of_memory_halves_the_batch_and_nan_is_diverged() {
    let tmp = tempfile::tempdir().unwrap();
    // A candidate whose step size blows the activations up: its loss is not finite.
    let extra = format!(
        "  - spec: {}/gradient_descent.yaml\n    grid: {{h: [1.0e30]}}\n",
        specs().display()
    );
    let cfg = config(tmp.path(), &extra, 4, true);
    let dir = tmp.path().join("run");
    // Trial 1 crashes once; trial 2 runs out of memory at batch 32; trial 4 crashes every
    // time. (With seed 3 the strategy proposes the diverging candidate third.)
    let out = search(
        &[cfg.to_str().unwrap(), "--out", dir.to_str().unwrap()],
        Some("crash@1,oom@2,crashall@4"),
    );
    assert_ok(&out);
    let s = Store::open_existing(&dir.join("search.db")).unwrap();
    let t1 = s.trial(TrialId(1)).unwrap();
    assert_eq!((t1.status, t1.crashes), (TrialStatus::Done, 1), "{t1:?}");
    let t4 = s.trial(TrialId(4)).unwrap();
    assert_eq!((t4.status, t4.crashes), (TrialStatus::Failed, 1), "{t4:?}");
    assert!(
        t4.error
            .as_deref()
            .unwrap_or("")
            .contains("on each of 2 attempts"),
        "{t4:?}"
    );
    let t2 = s.trial(TrialId(2)).unwrap();
    assert_eq!(
        (t2.status, t2.batch_size),
        (TrialStatus::Done, 16),
        "{t2:?}"
    );
    let events: Vec<String> = s.events().unwrap().into_iter().map(|e| e.2).collect();
    assert!(events
        .iter()
        .any(|m| m.contains("out of memory at batch 32: retrying with 16")));
    assert!(
        events
            .iter()
            .any(|m| m.contains("crashed (a signal), attempt 1 of 2")),
        "{events:?}"
    );
    let cands = s.candidates().unwrap();
    let blow = cands
        .iter()
        .find(|c| c.name.contains("h=1e30") || c.name.contains("h=1000000000000000000000000000000"))
        .unwrap_or_else(|| panic!("{:?}", cands.iter().map(|c| &c.name).collect::<Vec<_>>()));
    let diverged = s
        .trials()
        .unwrap()
        .into_iter()
        .filter(|t| t.candidate == blow.id)
        .collect::<Vec<_>>();
    assert!(!diverged.is_empty());
    assert!(
        diverged.iter().all(|t| t.status == TrialStatus::Diverged),
        "{diverged:?}"
    );
    check_complete(&dir, &[TrialId(4)]);
    // Every trial process was forked by the trial server, the crashing ones included.
    let logs = logs(&dir);
    assert_eq!(
        logs.iter()
            .filter(|t| t.contains("forked by the trial server"))
            .count(),
        s.trials().unwrap().len()
    );
}

/// Reads one line of the trial server's replies.
fn reply(out: &mut impl std::io::BufRead) -> String {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    line.trim().to_string()
}

#[test]
fn the_trial_server_forks_reports_and_ends_with_its_driver() {
    use std::io::{BufReader, Write};
    let tmp = tempfile::tempdir().unwrap();
    let mut server = Command::new(exe())
        .args(["--threads", "1", "--device", "cpu", "trial-server", "--dir"])
        .arg(tmp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = server.stdin.take().unwrap();
    let mut out = BufReader::new(server.stdout.take().unwrap());
    assert_eq!(reply(&mut out), "ready");
    writeln!(stdin, "hello").unwrap();
    assert_eq!(
        reply(&mut out),
        r#"refused 0 cannot read the request "hello""#
    );
    // It kills only its own children: this test process survives a request to kill it.
    writeln!(stdin, "kill {}", std::process::id()).unwrap();
    // A trial of a directory without a search: the child starts, says why it cannot run in
    // its log, and exits 3; the server reports it.
    let run = tmp.path().join("trials").join("0005");
    std::fs::create_dir_all(&run).unwrap();
    let hex = optarch_search::data::hex(run.to_str().unwrap().as_bytes());
    writeln!(stdin, "run 5 {hex}").unwrap();
    let started = reply(&mut out);
    let pid: u32 = started
        .strip_prefix("started 5 ")
        .unwrap_or_else(|| panic!("{started}"))
        .parse()
        .unwrap();
    assert_ne!(pid, server.id());
    assert_eq!(reply(&mut out), format!("ended {pid} exit 3"));
    let log = std::fs::read_to_string(run.join("log.txt")).unwrap();
    assert!(
        log.contains(&format!("forked by the trial server (pid {})", server.id())),
        "{log}"
    );
    assert!(log.contains("error: trial 5:"), "{log}");
    // Closing its stdin (the driver ended or died) ends the server.
    drop(stdin);
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = server.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the server did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

/// The command lines of the live processes of the search in `dir` (trial processes, forked or
/// spawned, and the trial server).
fn processes_of(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap();
    let dir = dir.to_str().unwrap();
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmd
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        // A zombie has an empty command line: it is gone but for its exit status.
        if args.iter().any(|a| a == "trial" || a == "trial-server") && args.iter().any(|a| a == dir)
        {
            out.push(args.join(" "));
        }
    }
    out
}

/// Sends SIGKILL to `pid`.
fn kill9(pid: u32) {
    let st = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn epochs_recorded(dir: &Path) -> usize {
    Store::open_existing(&dir.join("search.db"))
        .ok()
        .and_then(|s| s.trials().ok())
        .map(|t| t.iter().map(|t| t.epochs_done).sum())
        .unwrap_or(0)
}

/// Requires a command to have succeeded, showing its standard error if not.
fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts `optarch search ARGS` without faults, its standard error piped.
fn start_search(args: &[&str]) -> std::process::Child {
    Command::new(exe())
        .arg("search")
        .args(args)
        .env_remove("OPTARCH_FAULT")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until the search in `dir` has recorded `n` epochs (at most two minutes).
fn wait_for_epochs(dir: &Path, n: usize) {
    let t0 = Instant::now();
    while epochs_recorded(dir) < n {
        std::thread::sleep(Duration::from_millis(100));
        assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
    }
}

#[test]
fn a_killed_driver_resumes_without_rerunning_or_losing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", 3, true);
    let dir = tmp.path().join("run");
    let mut args: Vec<String> = vec![
        "search".into(),
        cfg.display().to_string(),
        "--out".into(),
        dir.display().to_string(),
    ];
    // Kill points, in epochs recorded (of about 20): while the first epochs train, after the
    // first rung, and in the finals. (Epochs, not seconds: a quick machine finishes half the
    // search in three seconds.)
    let mut kills = Vec::new();
    for wait_for in [1usize, 5, 12] {
        let mut child = Command::new(exe())
            .args(&args)
            .env_remove("OPTARCH_FAULT")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let start = epochs_recorded(&dir);
        loop {
            std::thread::sleep(Duration::from_millis(20));
            if let Some(st) = child.try_wait().unwrap() {
                panic!(
                    "the search ended ({st}) before the kill point {wait_for} (epochs at start {start}, now {}, kills {kills:?})",
                    epochs_recorded(&dir)
                );
            }
            let e = epochs_recorded(&dir);
            if e >= wait_for && e > start {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(120), "no progress");
        }
        kill9(child.id());
        let _ = child.wait();
        kills.push(epochs_recorded(&dir));
        // The trial server sees its driver gone and ends; its children stop as orphans.
        let t0 = Instant::now();
        while !processes_of(&dir).is_empty() {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "left running after the kill: {:?}",
                processes_of(&dir)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        args = vec![
            "search".into(),
            "--resume".into(),
            dir.display().to_string(),
        ];
    }
    let out = Command::new(exe())
        .args(&args)
        .env_remove("OPTARCH_FAULT")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kills at {kills:?} epochs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    check_complete(&dir, &[]);
    // The kills landed at three different points before the end. (Whether a trial was caught
    // mid-epoch depends on timing: an orphaned trial in its last batch finishes and reports
    // instead of stopping, and either way nothing is lost.)
    let total = epochs_recorded(&dir);
    assert!(
        kills.windows(2).all(|w| w[0] < w[1]) && kills[2] < total,
        "kills at {kills:?} of {total} epochs"
    );
}

#[test]
fn a_bad_configuration_says_where_and_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("bad.yaml");
    std::fs::write(
        &p,
        "name: x\nbudget: {max_epochs: 2, trials: 1}\ncandidates: [{spec: nope.yaml}]\n",
    )
    .unwrap();
    let out = search(
        &[
            p.to_str().unwrap(),
            "--out",
            tmp.path().join("r").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(3));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("nope.yaml"), "{e}");
    std::fs::write(
        &p,
        "name: x\nbudget: {max_epochs: 2, trials: 1}\nworkers: 2\ncandidates: []\n",
    )
    .unwrap();
    let out = search(&[p.to_str().unwrap()], None);
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("bad.yaml:3:1: unknown field `workers`"), "{e}");
    let out = search(
        &["--resume", tmp.path().join("none").to_str().unwrap()],
        None,
    );
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("holds no search (no search.db)"), "{e}");
}

#[test]
fn ctrl_c_stops_cleanly_and_the_search_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", 3, true);
    let dir = tmp.path().join("run");
    let child = start_search(&[cfg.to_str().unwrap(), "--out", dir.to_str().unwrap()]);
    wait_for_epochs(&dir, 2);
    // What a terminal's Ctrl-C sends (the trials are in their own process groups).
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    // Neither a trial process nor the trial server outlives the interrupted driver.
    assert_eq!(processes_of(&dir), Vec::<String>::new());
    {
        let s = Store::open_existing(&dir.join("search.db")).unwrap();
        assert_eq!(s.experiment().unwrap().unwrap().status, "interrupted");
        assert!(s
            .trials()
            .unwrap()
            .iter()
            .all(|t| t.status != TrialStatus::Running));
    }
    let out = search(&["--resume", dir.to_str().unwrap()], None);
    assert_ok(&out);
    check_complete(&dir, &[]);
}

#[test]
fn every_trial_failing_is_an_error_and_failed_trials_are_retried_under_one_driver() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", 3, true);
    let dir = tmp.path().join("run");
    let (cfg_s, dir_s) = (cfg.to_str().unwrap(), dir.to_str().unwrap());
    // Every trial fails at once: no winner, exit status 3, the cause said once for all.
    let out = search(&[cfg_s, "--out", dir_s], Some("fail@*"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    let n = Store::open_existing(&dir.join("search.db"))
        .unwrap()
        .trials()
        .unwrap()
        .len();
    assert!(
        err.contains(&format!("{n} of {n} trials ended without a result"))
            && err.contains(&format!(
                "{n} × failed: cannot read the data (injected by OPTARCH_FAULT)"
            ))
            && err.contains("--retry-failed")
            && err.contains("no winner"),
        "{err}"
    );
    // The cause fixed, the failed trials run again under a driver that holds the directory:
    // a second driver is refused at once, naming the first.
    let first = start_search(&["--resume", dir_s, "--retry-failed"]);
    wait_for_epochs(&dir, 1);
    let second = search(&["--resume", dir_s], None);
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "is in use by another `optarch search` (process {} on",
            first.id()
        )),
        "{err}"
    );
    let again = search(&[cfg_s, "--out", dir_s], None);
    assert!(String::from_utf8_lossy(&again.stderr).contains("already holds a search"));
    let out = first.wait_with_output().unwrap();
    assert_ok(&out);
    check_complete(&dir, &[]);
}

#[test]
fn a_search_directory_appears_whole_or_not_at_all() {
    use std::os::unix::process::ExitStatusExt;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(tmp.path(), "", 3, true);
    let dir = tmp.path().join("run");
    let (cfg_s, dir_s) = (cfg.to_str().unwrap(), dir.to_str().unwrap());
    // Killed at each write, sync and rename of its making in turn, until the directory is
    // in place: before, there is no search (and --resume says to start one); after, a whole
    // one (and starting again says to resume it).
    let mut n = 1;
    loop {
        let out = Command::new(exe())
            .args(["search", cfg_s, "--out", dir_s])
            .env_remove("OPTARCH_FAULT")
            .env("OPTARCH_CRASH_AT", n.to_string())
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(9),
            "point {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if dir.exists() {
            let s = Store::open_existing(&dir.join("search.db")).unwrap();
            // gradient descent, heavy ball β = 0.5 and Nesterov (β = 0 is gradient descent).
            assert_eq!(s.candidates().unwrap().len(), 3);
            assert!(s.experiment().unwrap().is_some());
            let again = search(&[cfg_s, "--out", dir_s], None);
            let err = String::from_utf8_lossy(&again.stderr);
            assert!(
                err.contains("already holds a search") && err.contains("--resume"),
                "{err}"
            );
            break;
        }
        let again = search(&["--resume", dir_s], None);
        let err = String::from_utf8_lossy(&again.stderr);
        assert!(err.contains("holds no search"), "point {n}: {err}");
        n += 1;
        assert!(n < 30, "the directory never appeared");
    }
    assert!(n >= 5, "only {n} points before the directory appeared");
    eprintln!("killed at {n} points of the making: none left a half-made search");
    // What the killed attempts left under temporary names was removed by the next one.
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|f| f.contains(".creating-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// A candidate with an architecture of its own (`arch:` on its entry) trains in it: DenseNet's
/// concatenation in dense blocks, beside ResNets in the search's `train.arch`; the store keeps
/// it, and the same spec in two architectures is two candidates.
#[test]
fn a_candidate_trains_in_its_own_architecture() {
    let tmp = tempfile::tempdir().unwrap();
    let dense = format!(
        "\x20 - spec: {s}/densenet.yaml\n    arch: {{preset: cifar-densenet, depth: 10, \
         widths: [4, 4, 4]}}\n\
         \x20 - spec: {s}/gradient_descent.yaml\n    arch: {{preset: cifar-resnet, widths: \
         [4, 4, 4], stage_steps: [1, 1, 1]}}\n",
        s = specs().display()
    );
    let cfg = config(tmp.path(), &dense, 5, true);
    let dir = tmp.path().join("run");
    let out = search(
        &[cfg.to_str().unwrap(), "--out", dir.to_str().unwrap()],
        None,
    );
    assert_ok(&out);
    check_complete(&dir, &[]);
    let s = Store::open_existing(&dir.join("search.db")).unwrap();
    let cands = s.candidates().unwrap();
    let names: Vec<&str> = cands.iter().map(|c| c.row.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "gradient_descent",
            "heavy_ball[beta=0.5]",
            "nesterov",
            "densenet",
            "gradient_descent"
        ]
    );
    let own = |i: usize| cands[i].row.arch.clone();
    assert_eq!(own(0), None);
    let d = own(3).unwrap();
    assert_eq!(
        (d.depth, d.widths.as_deref()),
        (10, Some(&[4i64, 4, 4][..]))
    );
    assert_ne!(cands[0].row.topo_hash, cands[4].row.topo_hash);
    // Each trial's recorded configuration is its candidate's architecture, and its size
    // follows: the one-block-a-stage ResNet is the smallest network.
    let trials = s.trials().unwrap();
    for t in &trials {
        let text = std::fs::read_to_string(dir.join(&t.dir).join("config.json")).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let preset = v["train"]["arch"]["preset"].as_str().unwrap().to_string();
        let i = cands.iter().position(|c| c.id == t.candidate).unwrap();
        let want = if i == 3 {
            "cifar-densenet"
        } else {
            "cifar-resnet"
        };
        assert_eq!(preset, want, "trial {:?}", t.id);
        if i == 4 {
            assert_eq!(
                v["train"]["arch"]["stage_steps"],
                serde_json::json!([1, 1, 1])
            );
        }
    }
    let size = |i: usize| {
        trials
            .iter()
            .find(|t| t.candidate == cands[i].id && t.parameters.is_some())
            .and_then(|t| t.parameters)
            .unwrap_or_else(|| panic!("no trial of {} recorded its size", cands[i].row.name))
    };
    assert!(size(4) < size(0), "{} vs {}", size(4), size(0));
    // An `arch:` is checked like train.arch, at its key; a generator takes none.
    let bad = tmp.path().join("bad.yaml");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("widths: [4, 4, 4]}", "widths: [4, 8, 4]}");
    std::fs::write(&bad, text).unwrap();
    let out = search(&[bad.to_str().unwrap(), "--check"], None);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("candidates.3.arch.widths is [4, 8, 4]") && stderr.contains("growth rate"),
        "{stderr}"
    );
}
