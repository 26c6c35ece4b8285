//! [`Local`]: trials as subprocesses of this machine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::forkserver::{LaunchError, Server};
use super::process::{self, optarch_command};
use super::{Ended, Executor, Slot, Started};
use crate::search::ids::TrialId;
use crate::search::trial;
use crate::search::trial::JobFile;
use optarch_core::device::DeviceChoice;

/// A running trial process: spawned by this process, or forked by a trial server.
enum Proc {
    Spawned(Child),
    Forked { server: usize, pid: u32 },
}

/// A trial server and the slots it serves.
struct ServerSlot {
    device: DeviceChoice,
    visible: String,
    /// `None` when it could not start.
    server: Option<Server>,
    /// Cleared when it refused or failed a request: trials are spawned from then on.
    serving: bool,
}

/// Trials as subprocesses: forked from a warm trial server per device (see
/// [`forkserver`](super::forkserver)), or spawned as `optarch trial` when there is none.
pub(crate) struct Local {
    exe: PathBuf,
    search_dir: PathBuf,
    slots: Vec<Slot>,
    threads: usize,
    running: BTreeMap<usize, (TrialId, Proc, Instant)>,
    /// The trial servers, one per (device, `CUDA_VISIBLE_DEVICES`).
    servers: Vec<ServerSlot>,
    notes: Vec<String>,
}

impl Local {
    /// With `fork_server`, starts one trial server per device and GPU set now, so that they
    /// load libtorch while the driver prepares.
    pub(crate) fn new(
        exe: PathBuf,
        search_dir: PathBuf,
        slots: Vec<Slot>,
        threads: usize,
        fork_server: bool,
    ) -> Local {
        let mut servers: Vec<ServerSlot> = Vec::new();
        let mut notes = Vec::new();
        if fork_server {
            for s in &slots {
                if servers
                    .iter()
                    .any(|v| v.device == s.device && v.visible == s.visible)
                {
                    continue;
                }
                let server = Server::start(&exe, &search_dir, s.device, threads, &s.visible)
                    .map_err(|e| {
                        notes.push(format!(
                            "cannot start a trial server ({e}): trial processes start one by one"
                        ))
                    })
                    .ok();
                servers.push(ServerSlot {
                    device: s.device,
                    visible: s.visible.clone(),
                    serving: server.is_some(),
                    server,
                });
            }
        }
        Local {
            exe,
            search_dir,
            slots,
            threads,
            running: BTreeMap::new(),
            servers,
            notes,
        }
    }

    fn server_of(&self, s: &Slot) -> Option<usize> {
        self.servers
            .iter()
            .position(|v| v.device == s.device && v.visible == s.visible && v.serving)
    }

    fn spawn(&self, s: &Slot, trial: TrialId, run_dir: &Path) -> std::io::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run_dir.join("log.txt"))?;
        optarch_command(
            &self.exe,
            self.threads,
            s.device,
            &s.visible,
            "trial",
            &self.search_dir,
        )
        .args(["--id", &trial.to_string()])
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
    }

    /// The exit status of the process in `slot` if it ended (`Some(None)`: by a signal, or it
    /// cannot be waited for).
    fn exited(&mut self, slot: usize) -> Option<Option<i32>> {
        let (_, proc, _) = self.running.get_mut(&slot)?;
        match proc {
            Proc::Spawned(child) => match child.try_wait() {
                Ok(Some(st)) => Some(st.code()),
                Ok(None) => None,
                Err(_) => Some(None),
            },
            Proc::Forked { server, pid } => {
                let pid = *pid;
                match self
                    .servers
                    .get_mut(*server)
                    .and_then(|v| v.server.as_mut())
                {
                    Some(srv) => srv.ended(pid),
                    None => (!process::exists(pid)).then_some(Some(trial::EXIT_ORPHANED)),
                }
            }
        }
    }

    fn reap(&mut self, slot: usize, code: Option<i32>) -> Option<Ended> {
        let (trial, _, t0) = self.running.remove(&slot)?;
        Some(Ended {
            trial,
            slot,
            code,
            wall: t0.elapsed().as_secs_f64(),
            lost: None,
            files: None,
        })
    }
}

impl Executor for Local {
    fn slots(&self) -> usize {
        self.slots.len()
    }

    fn device(&self, slot: usize) -> String {
        self.slots
            .get(slot)
            .map_or_else(|| "cpu".into(), |s| s.device.to_string())
    }

    fn launch(&mut self, slot: usize, job: &JobFile, run_dir: &Path) -> std::io::Result<Started> {
        let trial = job.work.trial;
        let s = self
            .slots
            .get(slot)
            .cloned()
            .ok_or_else(|| std::io::Error::other(format!("no slot {slot}")))?;
        std::fs::create_dir_all(run_dir)?;
        if let Some(i) = self.server_of(&s) {
            let forked = match self.servers.get_mut(i).and_then(|v| v.server.as_mut()) {
                Some(srv) => srv.launch(trial, run_dir),
                None => Err(LaunchError::Closed),
            };
            match forked {
                Ok(pid) => {
                    self.running.insert(
                        slot,
                        (trial, Proc::Forked { server: i, pid }, Instant::now()),
                    );
                    return Ok(Started::Process(pid));
                }
                Err(why) => {
                    self.notes.push(format!(
                        "the trial server for {} stopped serving ({why}): trial processes start \
                         one by one",
                        s.device
                    ));
                    // It still reports the children it has running.
                    if let Some(v) = self.servers.get_mut(i) {
                        v.serving = false;
                    }
                }
            }
        }
        let child = self.spawn(&s, trial, run_dir)?;
        let pid = child.id();
        self.running
            .insert(slot, (trial, Proc::Spawned(child), Instant::now()));
        Ok(Started::Process(pid))
    }

    fn poll(&mut self) -> Vec<Ended> {
        let mut done = Vec::new();
        let slots: Vec<usize> = self.running.keys().copied().collect();
        for slot in slots {
            if let Some(code) = self.exited(slot) {
                done.extend(self.reap(slot, code));
            }
        }
        done
    }

    fn busy(&self) -> BTreeMap<usize, TrialId> {
        self.running.iter().map(|(s, (t, _, _))| (*s, *t)).collect()
    }

    fn stop_all(&mut self) -> Vec<Ended> {
        let Local {
            running, servers, ..
        } = self;
        for (_, proc, _) in running.values_mut() {
            match proc {
                Proc::Spawned(child) => {
                    let _ = child.kill();
                }
                Proc::Forked { server, pid } => {
                    match servers.get_mut(*server).and_then(|v| v.server.as_mut()) {
                        Some(srv) => srv.kill(*pid),
                        None => process::kill(*pid),
                    }
                }
            }
        }
        let mut done = Vec::new();
        let t0 = Instant::now();
        while !self.running.is_empty() && t0.elapsed() < Duration::from_secs(30) {
            done.extend(self.poll());
            std::thread::sleep(Duration::from_millis(5));
        }
        done
    }

    /// What happened to the trial servers since the last call, for the log.
    fn notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}
