//! [`Slurm`]: one Slurm job per trial attempt.
//!
//! The protocol (docs/CLUSTER.md): the driver writes `job.json` (what to train, which attempt)
//! and `job.sh` (the batch script) into the trial's run directory, on a filesystem the nodes
//! share, and submits the script with `sbatch --parsable`. The job runs `optarch trial --job`,
//! which trains with the same checkpoint and state files as a local trial and writes
//! `result.json` when the attempt ends; the driver reads them back and is the only writer of
//! the store. One `squeue` call per poll covers every job (an explicit format, never the
//! user's `SQUEUE_FORMAT`), polls back off from 1 s to `executor.poll_seconds`, and `sacct` is
//! never needed: a job's own result file is the truth, squeue's state only says why a job
//! ended without one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::{Ended, Executor, Lost, Started};
use crate::search::config::{ExecutorConfig, SearchConfig};
use crate::search::ids::TrialId;
use crate::search::trial::{self, JobFile, JobResult};
use crate::train::checkpoint;

/// Why the Slurm executor cannot run.
#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error(
        "cannot run `{command}` ({source}): is Slurm's client installed and on PATH here? \
         (`executor.kind: slurm` needs sbatch, squeue, scancel and scontrol on the driver's \
         machine)"
    )]
    Missing {
        command: String,
        source: std::io::Error,
    },
    #[error("`{command}` failed: {stderr}")]
    Failed { command: String, stderr: String },
    #[error("sbatch printed no job id: `{0}`")]
    NoJobId(String),
    #[error(
        "the probe job {job} ran but {} did not appear on this machine: {} is not on a \
         filesystem the compute nodes share with the driver; set `executor.shared_dir` to a \
         shared folder (the store stays in the search directory)",
        .file.display(), .shared.display()
    )]
    NotShared {
        job: String,
        file: PathBuf,
        shared: PathBuf,
    },
    #[error(
        "the probe job {job} could not run {} on its node ({output}): install optarch at the \
         same path on the nodes, or set `executor.optarch`",
        .optarch.display()
    )]
    NoOptarch {
        job: String,
        optarch: PathBuf,
        output: String,
    },
    #[error(
        "the probe job {job} did not end within {seconds:.0} s ({state}): the cluster may be \
         busy; raise `executor.probe_timeout`, or set it to 0 to skip the probe"
    )]
    ProbeTimeout {
        job: String,
        seconds: f64,
        state: String,
    },
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The folder the nodes read and write (the trials' run directories and the prepared data):
/// with `executor.shared_dir`, `SHARED/<search directory name>`, linked from the search
/// directory as `trials` and `data`, so that every other part of optarch finds them where
/// it always does; else the search directory itself.
pub(crate) fn link_shared(cfg: &SearchConfig, search_dir: &Path) -> std::io::Result<PathBuf> {
    let Some(shared) = &cfg.executor.shared_dir else {
        return Ok(search_dir.to_path_buf());
    };
    let name = search_dir
        .file_name()
        .map_or_else(|| cfg.name.clone(), |n| n.to_string_lossy().into_owned());
    let root = shared.join(name);
    for sub in ["trials", "data"] {
        let target = root.join(sub);
        std::fs::create_dir_all(&target)?;
        let link = search_dir.join(sub);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(std::fs::canonicalize(&target)?, &link)?;
        }
    }
    std::fs::canonicalize(root)
}

/// A job's state as squeue reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct JobState {
    pub state: String,
    pub reason: String,
}

impl JobState {
    /// States after which the job will not run again. COMPLETING, REQUEUED, PREEMPTED (the
    /// job is requeued), SUSPENDED and PENDING are not final.
    pub(crate) fn is_final(&self) -> bool {
        matches!(
            self.state.as_str(),
            "COMPLETED"
                | "FAILED"
                | "CANCELLED"
                | "TIMEOUT"
                | "NODE_FAIL"
                | "OUT_OF_MEMORY"
                | "BOOT_FAIL"
                | "DEADLINE"
                | "SPECIAL_EXIT"
                | "REVOKED"
        )
    }

    /// Why a job in this final state ended without a result.
    fn lost(&self) -> Lost {
        match self.state.as_str() {
            "TIMEOUT" | "DEADLINE" => Lost::TimeLimit,
            "NODE_FAIL" | "BOOT_FAIL" => Lost::NodeFailure,
            "CANCELLED" | "REVOKED" => Lost::Cancelled,
            "OUT_OF_MEMORY" => Lost::OutOfMemory,
            _ => Lost::Failed(format!("Slurm state {}", self.state)),
        }
    }
}

/// Parses `squeue --format=%i|%T|%r` lines.
pub(crate) fn parse_squeue(out: &str) -> BTreeMap<String, JobState> {
    out.lines()
        .filter_map(|l| {
            let mut it = l.trim().splitn(3, '|');
            let id = it.next()?.trim();
            let state = it.next()?.trim();
            let reason = it.next().unwrap_or("").trim();
            (!id.is_empty() && !state.is_empty()).then(|| {
                (
                    id.to_string(),
                    JobState {
                        state: state.to_string(),
                        reason: reason.to_string(),
                    },
                )
            })
        })
        .collect()
}

/// The job id in `sbatch --parsable`'s output (`123` or `123;cluster`).
pub(crate) fn parse_job_id(out: &str) -> Option<String> {
    let id = out.trim().split(';').next()?.trim();
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_digit() || c == '_')).then(|| id.to_string())
}

/// `'s'` for the shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// What the batch scripts are made of.
#[derive(Clone, Debug)]
pub(crate) struct Scripts {
    pub cfg: ExecutorConfig,
    /// The search's name (in job names).
    pub search: String,
    pub optarch: PathBuf,
}

impl Scripts {
    /// The `#SBATCH` options every job shares (no output, no name).
    fn options(&self) -> Vec<String> {
        let c = &self.cfg;
        let mut o = vec![
            "--nodes=1".to_string(),
            "--ntasks=1".to_string(),
            format!("--cpus-per-task={}", c.cpus_per_trial),
        ];
        let opt = |name: &str, v: &Option<String>| v.as_ref().map(|v| format!("--{name}={v}"));
        o.extend(opt("partition", &c.partition));
        o.extend(opt("account", &c.account));
        o.extend(opt("qos", &c.qos));
        o.extend(opt("gres", &c.gres));
        o.extend(opt("mem", &c.mem));
        o.extend(opt("time", &c.time_limit));
        o
    }

    /// The batch script of `trial`'s job, run in `run_dir`.
    pub(crate) fn script(&self, trial: TrialId, run_dir: &Path) -> String {
        let dir = run_dir.display().to_string();
        let mut s = String::from("#!/bin/bash\n# written by optarch: one attempt of a trial\n");
        let mut line = |o: &str| {
            s.push_str("#SBATCH ");
            s.push_str(o);
            s.push('\n');
        };
        line(&format!(
            "--job-name=optarch-{}-t{:04}",
            self.search, trial.0
        ));
        line(&format!("--chdir={dir}"));
        line(&format!("--output={dir}/log.txt"));
        line("--open-mode=append");
        for o in self.options() {
            line(&o);
        }
        line(&format!("--signal={}", self.cfg.signal));
        line("--requeue");
        for e in &self.cfg.extra {
            line(e.trim());
        }
        s.push_str(&format!(
            "exec {} --threads {} trial --job {}\n",
            quote(&self.optarch.display().to_string()),
            self.cfg.cpus_per_trial,
            quote(&format!("{dir}/{}", trial::JOB_FILE))
        ));
        s
    }
}

/// Runs a Slurm command; its standard output.
fn slurm(command: &str, args: &[&str]) -> Result<String, SlurmError> {
    let out = Command::new(command)
        .args(args)
        .env_remove("SQUEUE_FORMAT")
        .env_remove("SQUEUE_FORMAT2")
        .env_remove("SQUEUE_SORT")
        .env_remove("SLURM_TIME_FORMAT")
        .output()
        .map_err(|source| SlurmError::Missing {
            command: command.to_string(),
            source,
        })?;
    if !out.status.success() {
        return Err(SlurmError::Failed {
            command: format!("{command} {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The states of `jobs` (those squeue still knows), or `None` when squeue could not be asked
/// (the controller down: nothing is concluded from that).
fn squeue(jobs: &[&str]) -> Result<BTreeMap<String, JobState>, SlurmError> {
    if jobs.is_empty() {
        return Ok(BTreeMap::new());
    }
    let list = format!("--jobs={}", jobs.join(","));
    match slurm(
        "squeue",
        &["--noheader", "--states=all", &list, "--format=%i|%T|%r"],
    ) {
        Ok(out) => Ok(parse_squeue(&out)),
        // Every id unknown (purged after MinJobAge): squeue says so and fails.
        Err(SlurmError::Failed { stderr, .. }) if stderr.contains("Invalid job id") => {
            Ok(BTreeMap::new())
        }
        Err(e) => Err(e),
    }
}

/// How often the running jobs' result files are looked for.
const RESULT_CHECK: Duration = Duration::from_millis(500);

/// How long a requeued job stays held before the driver releases it.
const RELEASE_AFTER: Duration = Duration::from_secs(10);

/// A job the executor tracks.
struct Tracked {
    trial: TrialId,
    job: String,
    attempt: u32,
    run_dir: PathBuf,
    since: Instant,
    /// Released once from a requeue's begin-time hold.
    released: bool,
    /// Since when squeue has shown it held for its begin time.
    held_since: Option<Instant>,
}

/// Trials as Slurm jobs.
pub(crate) struct Slurm {
    scripts: Scripts,
    slots: usize,
    device: String,
    running: BTreeMap<usize, Tracked>,
    next_poll: Instant,
    next_result_check: Instant,
    interval: Duration,
    notes: Vec<String>,
    /// squeue failed at the last poll (said once, until it works again).
    squeue_failing: bool,
}

impl Slurm {
    pub(crate) fn new(cfg: &SearchConfig, optarch: PathBuf) -> Slurm {
        Slurm {
            scripts: Scripts {
                cfg: cfg.executor.clone(),
                search: cfg.name.clone(),
                optarch,
            },
            slots: cfg.executor.max_in_flight,
            device: format!("slurm:{}", cfg.train.run.device),
            running: BTreeMap::new(),
            next_poll: Instant::now(),
            next_result_check: Instant::now(),
            interval: Duration::from_secs(1),
            notes: Vec::new(),
            squeue_failing: false,
        }
    }

    fn max_interval(&self) -> Duration {
        Duration::from_secs_f64(self.scripts.cfg.poll_seconds.max(1.0))
    }

    /// Checks, through a job, that `shared` is the same folder on the nodes and that the
    /// nodes can run the `optarch` the jobs will run.
    pub(crate) fn probe(&self, shared: &Path) -> Result<(), SlurmError> {
        let timeout = self.scripts.cfg.probe_timeout;
        if timeout <= 0.0 {
            return Ok(());
        }
        let token = format!(
            "{}-{}",
            std::process::id(),
            (crate::search::store::now() * 1e6) as u64
        );
        let file = shared.join(format!(".optarch-probe-{token}"));
        let _ = std::fs::remove_file(&file);
        let f = quote(&file.display().to_string());
        let wrap = format!(
            "echo shared > {f}.tmp; {} --version >> {f}.tmp 2>&1; mv {f}.tmp {f}",
            quote(&self.scripts.optarch.display().to_string())
        );
        let mut args: Vec<String> = vec![
            "--parsable".into(),
            format!("--job-name=optarch-{}-probe", self.scripts.search),
            "--output=/dev/null".into(),
        ];
        args.extend(
            self.scripts
                .options()
                .into_iter()
                .filter(|o| !o.starts_with("--gres") && !o.starts_with("--time")),
        );
        args.push("--time=5".into());
        args.extend(self.scripts.cfg.extra.iter().map(|e| e.trim().to_string()));
        args.push(format!("--wrap={wrap}"));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = slurm("sbatch", &refs)?;
        let job = parse_job_id(&out).ok_or_else(|| SlurmError::NoJobId(out.clone()))?;
        eprintln!("checking the shared filesystem with probe job {job} ...");
        let t0 = Instant::now();
        let mut state;
        loop {
            if file.exists() {
                break;
            }
            match squeue(&[&job]) {
                Ok(s) => match s.get(&job) {
                    Some(js) if !js.is_final() => {
                        state = format!("{} {}", js.state, js.reason);
                    }
                    // Ended (or purged): the file had time to appear.
                    _ => {
                        std::thread::sleep(Duration::from_millis(500));
                        break;
                    }
                },
                Err(e) => state = e.to_string(),
            }
            if t0.elapsed().as_secs_f64() > timeout {
                let _ = slurm("scancel", &[&job]);
                return Err(SlurmError::ProbeTimeout {
                    job,
                    seconds: timeout,
                    state,
                });
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let text = std::fs::read_to_string(&file).map_err(|_| SlurmError::NotShared {
            job: job.clone(),
            file: file.clone(),
            shared: shared.to_path_buf(),
        })?;
        let _ = std::fs::remove_file(&file);
        // `optarch --version` prints `optarch X.Y.Z`.
        if !text.lines().any(|l| {
            l.strip_prefix("optarch ")
                .is_some_and(|v| v.starts_with(|c: char| c.is_ascii_digit()))
        }) {
            return Err(SlurmError::NoOptarch {
                job,
                optarch: self.scripts.optarch.clone(),
                output: text.lines().skip(1).collect::<Vec<_>>().join(" "),
            });
        }
        Ok(())
    }

    fn track(&mut self, trial: TrialId, job: &str, attempt: u32, run_dir: &Path) -> bool {
        let Some(slot) = (0..self.slots).find(|s| !self.running.contains_key(s)) else {
            return false;
        };
        self.running.insert(
            slot,
            Tracked {
                trial,
                job: job.to_string(),
                attempt,
                run_dir: run_dir.to_path_buf(),
                since: Instant::now(),
                released: false,
                held_since: None,
            },
        );
        self.next_poll = Instant::now();
        true
    }

    fn has_result(t: &Tracked) -> bool {
        checkpoint::read_json::<JobResult>(&t.run_dir.join(trial::RESULT_FILE))
            .is_ok_and(|r| r.trial == t.trial && r.attempt == t.attempt)
    }

    fn end(&mut self, slot: usize, lost: Option<Lost>) -> Option<Ended> {
        let t = self.running.remove(&slot)?;
        Some(Ended {
            trial: t.trial,
            slot,
            code: if lost.is_none() { Some(0) } else { None },
            wall: t.since.elapsed().as_secs_f64(),
            lost,
            files: Some((t.attempt, t.run_dir)),
        })
    }
}

impl Executor for Slurm {
    fn slots(&self) -> usize {
        self.slots
    }

    fn device(&self, _slot: usize) -> String {
        self.device.clone()
    }

    fn launch(&mut self, slot: usize, job: &JobFile, run_dir: &Path) -> std::io::Result<Started> {
        std::fs::create_dir_all(run_dir)?;
        // Paths as the nodes see them: the shared folder's real path.
        let run_dir = std::fs::canonicalize(run_dir)?;
        let _ = std::fs::remove_file(run_dir.join(trial::RESULT_FILE));
        let mut job = job.clone();
        if let Some(p) = &job.work.run.train.data.path {
            if let Ok(c) = std::fs::canonicalize(p) {
                job.work.run.train.data.path = Some(c);
            }
        }
        job.work.run.train.run.threads = Some(self.scripts.cfg.cpus_per_trial);
        checkpoint::write_json(&run_dir.join(trial::JOB_FILE), &job)
            .map_err(std::io::Error::other)?;
        let script = run_dir.join(trial::JOB_SCRIPT);
        checkpoint::write_atomic(
            &script,
            self.scripts.script(job.work.trial, &run_dir).as_bytes(),
        )
        .map_err(std::io::Error::other)?;
        let path = script.display().to_string();
        let out = slurm("sbatch", &["--parsable", &path]).map_err(std::io::Error::other)?;
        let id = parse_job_id(&out)
            .ok_or_else(|| std::io::Error::other(SlurmError::NoJobId(out.clone())))?;
        self.running.insert(
            slot,
            Tracked {
                trial: job.work.trial,
                job: id.clone(),
                attempt: job.attempt,
                run_dir,
                since: Instant::now(),
                released: false,
                held_since: None,
            },
        );
        self.interval = Duration::from_secs(1);
        self.next_poll = Instant::now() + self.interval;
        Ok(Started::Job(id))
    }

    fn poll(&mut self) -> Vec<Ended> {
        if self.running.is_empty() {
            return Vec::new();
        }
        // A job that wrote its result has ended: seen every half second from the files alone
        // (squeue's backed-off polls are for jobs that end without one).
        if Instant::now() >= self.next_result_check {
            self.next_result_check = Instant::now() + RESULT_CHECK;
            let finished: Vec<usize> = self
                .running
                .iter()
                .filter(|(_, t)| Self::has_result(t))
                .map(|(s, _)| *s)
                .collect();
            if !finished.is_empty() {
                return finished
                    .into_iter()
                    .filter_map(|s| self.end(s, None))
                    .collect();
            }
        }
        if Instant::now() < self.next_poll {
            return Vec::new();
        }
        let ids: Vec<String> = self.running.values().map(|t| t.job.clone()).collect();
        let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
        let states = match squeue(&refs) {
            Ok(s) => {
                if self.squeue_failing {
                    self.notes.push("squeue answers again".into());
                }
                self.squeue_failing = false;
                Some(s)
            }
            Err(e) => {
                if !self.squeue_failing {
                    self.notes.push(format!(
                        "squeue failed ({e}); the jobs are left alone, retrying"
                    ));
                }
                self.squeue_failing = true;
                None
            }
        };
        let mut done = Vec::new();
        let slots: Vec<usize> = self.running.keys().copied().collect();
        for slot in slots {
            let Some(t) = self.running.get(&slot) else {
                continue;
            };
            if Self::has_result(t) {
                done.extend(self.end(slot, None));
                continue;
            }
            let Some(states) = &states else { continue };
            match states.get(&t.job) {
                Some(js) if js.is_final() => {
                    // The result is written before the job ends: read it once more.
                    let lost = (!Self::has_result(t)).then(|| js.lost());
                    done.extend(self.end(slot, lost));
                }
                Some(js) => {
                    // A requeued job waits for its begin time (two minutes by default):
                    // released once, a little after its previous run has been cleaned up
                    // (released at once, the node may refuse it: "credential revoked").
                    let held = js.state == "PENDING" && js.reason == "BeginTime";
                    let (job, trial) = (t.job.clone(), t.trial);
                    let Some(t) = self.running.get_mut(&slot) else {
                        continue;
                    };
                    match (held, t.held_since) {
                        (true, None) => {
                            t.held_since = Some(Instant::now());
                            self.notes.push(format!(
                                "trial {trial}: job {job} was requeued (time limit or \
                                 preemption); it resumes from its last epoch"
                            ));
                        }
                        (true, Some(since)) if !t.released && since.elapsed() >= RELEASE_AFTER => {
                            t.released = slurm(
                                "scontrol",
                                &["update", &format!("JobId={job}"), "StartTime=now"],
                            )
                            .is_ok();
                        }
                        (false, _) if js.state == "RUNNING" => {
                            t.held_since = None;
                            t.released = false;
                        }
                        _ => {}
                    }
                }
                None => {
                    let lost = (!Self::has_result(t)).then_some(Lost::Vanished);
                    done.extend(self.end(slot, lost));
                }
            }
        }
        self.interval = if done.is_empty() {
            (self.interval * 2).min(self.max_interval())
        } else {
            Duration::from_secs(1)
        };
        self.next_poll = Instant::now() + self.interval;
        done
    }

    fn busy(&self) -> BTreeMap<usize, TrialId> {
        self.running.iter().map(|(s, t)| (*s, t.trial)).collect()
    }

    fn stop_all(&mut self) -> Vec<Ended> {
        let ids: Vec<String> = self.running.values().map(|t| t.job.clone()).collect();
        if !ids.is_empty() {
            let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
            if let Err(e) = slurm("scancel", &refs) {
                self.notes.push(format!("scancel failed: {e}"));
            }
        }
        let slots: Vec<usize> = self.running.keys().copied().collect();
        slots
            .into_iter()
            .filter_map(|s| {
                let t = self.running.get(&s)?;
                let lost = (!Self::has_result(t)).then_some(Lost::Cancelled);
                self.end(s, lost)
            })
            .collect()
    }

    fn notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn adopt(&mut self, trial: TrialId, job: &str, attempt: u32, run_dir: &Path) -> bool {
        let dir = std::fs::canonicalize(run_dir).unwrap_or_else(|_| run_dir.to_path_buf());
        self.track(trial, job, attempt, &dir)
    }

    fn job_of(&self, trial: TrialId) -> Option<(String, u32, PathBuf)> {
        self.running
            .values()
            .find(|t| t.trial == trial)
            .map(|t| (t.job.clone(), t.attempt, t.run_dir.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::config::ExecutorKind;

    #[test]
    fn squeue_lines_parse() {
        let s = parse_squeue("12|RUNNING|None\n13|PENDING|BeginTime\n\n14|COMPLETED|\nbad\n");
        assert_eq!(s.len(), 3);
        assert_eq!(s["13"].reason, "BeginTime");
        assert!(!s["12"].is_final());
        assert!(!s["13"].is_final());
        assert!(s["14"].is_final());
        for st in [
            "COMPLETING",
            "REQUEUED",
            "PREEMPTED",
            "SUSPENDED",
            "CONFIGURING",
        ] {
            let js = JobState {
                state: st.into(),
                reason: String::new(),
            };
            assert!(!js.is_final(), "{st}");
        }
        let lost = |st: &str| {
            JobState {
                state: st.into(),
                reason: String::new(),
            }
            .lost()
        };
        assert_eq!(lost("TIMEOUT"), Lost::TimeLimit);
        assert_eq!(lost("NODE_FAIL"), Lost::NodeFailure);
        assert_eq!(lost("CANCELLED"), Lost::Cancelled);
        assert!(matches!(lost("FAILED"), Lost::Failed(_)));
        assert_eq!(parse_job_id("123\n"), Some("123".into()));
        assert_eq!(parse_job_id("77;cluster\n"), Some("77".into()));
        assert_eq!(parse_job_id("Submitted"), None);
    }

    #[test]
    fn the_batch_script_carries_every_setting() {
        let cfg = ExecutorConfig {
            kind: ExecutorKind::Slurm,
            partition: Some("gpu".into()),
            gres: Some("gpu:1".into()),
            cpus_per_trial: 4,
            mem: Some("8G".into()),
            time_limit: Some("1:00:00".into()),
            account: Some("lab".into()),
            qos: Some("normal".into()),
            extra: vec!["--constraint=a100".into()],
            ..ExecutorConfig::default()
        };
        let s = Scripts {
            cfg,
            search: "quick".into(),
            optarch: PathBuf::from("/opt/it's/optarch"),
        }
        .script(TrialId(7), Path::new("/shared/s/trials/0007"));
        for want in [
            "#SBATCH --job-name=optarch-quick-t0007\n",
            "#SBATCH --output=/shared/s/trials/0007/log.txt\n",
            "#SBATCH --partition=gpu\n",
            "#SBATCH --gres=gpu:1\n",
            "#SBATCH --cpus-per-task=4\n",
            "#SBATCH --mem=8G\n",
            "#SBATCH --time=1:00:00\n",
            "#SBATCH --account=lab\n",
            "#SBATCH --qos=normal\n",
            "#SBATCH --signal=B:TERM@60\n",
            "#SBATCH --requeue\n",
            "#SBATCH --constraint=a100\n",
            "exec '/opt/it'\\''s/optarch' --threads 4 trial --job '/shared/s/trials/0007/job.json'\n",
        ] {
            assert!(s.contains(want), "{want} missing from\n{s}");
        }
        assert!(s.starts_with("#!/bin/bash\n"));
    }
}
