//! Where trials run. [`Executor`] is the interface a cluster executor would implement;
//! [`Local`] runs each trial as a subprocess on this machine (forked from a warm trial server,
//! or spawned as `optarch trial ...`), with GPUs assigned through `CUDA_VISIBLE_DEVICES`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::forkserver::{self, Server};
use super::trial;

/// A trial process that ended.
#[derive(Clone, Debug, PartialEq)]
pub struct Ended {
    pub trial: i64,
    pub slot: usize,
    /// The exit status, `None` when a signal ended it.
    pub code: Option<i32>,
    /// Seconds it ran.
    pub wall: f64,
}

/// Runs trials.
pub trait Executor {
    /// How many trials can run at once.
    fn slots(&self) -> usize;
    /// The device a trial in `slot` trains on (`cpu`, `cuda`), for the store.
    fn device(&self, slot: usize) -> String;
    /// Starts `trial` in the free `slot`; returns the process id.
    fn launch(&mut self, slot: usize, trial: i64, run_dir: &Path) -> std::io::Result<u32>;
    /// The trials that ended since the last call.
    fn poll(&mut self) -> Vec<Ended>;
    /// The busy slots: slot → trial.
    fn busy(&self) -> BTreeMap<usize, i64>;
    /// Stops every running trial (they stay resumable) and waits for them.
    fn stop_all(&mut self) -> Vec<Ended>;
}

/// One slot of the local machine.
#[derive(Clone, Debug, PartialEq)]
pub struct Slot {
    /// `cpu` or `cuda`.
    pub device: String,
    /// `CUDA_VISIBLE_DEVICES` for its trials (empty: no GPU).
    pub visible: String,
}

/// The slots for `device` (`auto`, `cpu`, `cuda`) given `gpus` visible GPUs.
pub fn slots(
    device: &str,
    gpus: usize,
    workers: usize,
    per_gpu: usize,
) -> Result<Vec<Slot>, String> {
    let use_gpu =
        match device {
            "cpu" => false,
            "cuda" if gpus == 0 => return Err(
                "execution.device is cuda but libtorch sees no CUDA device: use `device: auto` \
                 or `cpu`, or check the driver with `optarch --device cuda env`"
                    .into(),
            ),
            "cuda" => true,
            _ => gpus > 0,
        };
    if use_gpu {
        Ok((0..gpus)
            .flat_map(|g| {
                (0..per_gpu.max(1)).map(move |_| Slot {
                    device: "cuda".into(),
                    visible: g.to_string(),
                })
            })
            .collect())
    } else {
        Ok((0..workers.max(1))
            .map(|_| Slot {
                device: "cpu".into(),
                visible: String::new(),
            })
            .collect())
    }
}

/// `exe --threads T --device D COMMAND --dir DIR` with `CUDA_VISIBLE_DEVICES=visible`, in its
/// own process group: a Ctrl-C at the terminal reaches the driver only, which stops the trials
/// itself and records them as resumable. (A trial process, or the trial server.)
pub(super) fn optarch_command(
    exe: &Path,
    threads: i32,
    device: &str,
    visible: &str,
    command: &str,
    search_dir: &Path,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(["--threads", &threads.to_string()])
        .args(["--device", device])
        .arg(command)
        .arg("--dir")
        .arg(search_dir)
        .env("CUDA_VISIBLE_DEVICES", visible)
        .process_group(0);
    cmd
}

/// A running trial process: spawned by this process, or forked by a trial server.
enum Proc {
    Spawned(Child),
    Forked { server: usize, pid: u32 },
}

/// A trial server and the slots it serves.
struct ServerSlot {
    device: String,
    visible: String,
    /// `None` when it could not start.
    server: Option<Server>,
    /// Cleared when it refused or failed a request: trials are spawned from then on.
    serving: bool,
}

/// Trials as subprocesses: forked from a warm trial server per device (see
/// [`forkserver`](super::forkserver)), or spawned as `optarch trial` when there is none.
pub struct Local {
    exe: PathBuf,
    search_dir: PathBuf,
    slots: Vec<Slot>,
    threads: i32,
    running: BTreeMap<usize, (i64, Proc, Instant)>,
    /// The trial servers, one per (device, `CUDA_VISIBLE_DEVICES`).
    servers: Vec<ServerSlot>,
    notes: Vec<String>,
}

impl Local {
    /// With `fork_server`, starts one trial server per device and GPU set now, so that they
    /// load libtorch while the driver prepares.
    pub fn new(
        exe: PathBuf,
        search_dir: PathBuf,
        slots: Vec<Slot>,
        threads: i32,
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
                let server = Server::start(&exe, &search_dir, &s.device, threads, &s.visible)
                    .map_err(|e| {
                        notes.push(format!(
                            "cannot start a trial server ({e}): trial processes start one by one"
                        ))
                    })
                    .ok();
                servers.push(ServerSlot {
                    device: s.device.clone(),
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

    /// What happened to the trial servers since the last call, for the log.
    pub fn notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }

    fn server_of(&self, s: &Slot) -> Option<usize> {
        self.servers
            .iter()
            .position(|v| v.device == s.device && v.visible == s.visible && v.serving)
    }

    fn spawn(&self, s: &Slot, trial: i64, run_dir: &Path) -> std::io::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run_dir.join("log.txt"))?;
        optarch_command(
            &self.exe,
            self.threads,
            &s.device,
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
                    None => (!forkserver::exists(pid)).then_some(Some(trial::EXIT_ORPHANED)),
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
            .map(|s| s.device.clone())
            .unwrap_or_else(|| "cpu".into())
    }

    fn launch(&mut self, slot: usize, trial: i64, run_dir: &Path) -> std::io::Result<u32> {
        let s = self
            .slots
            .get(slot)
            .cloned()
            .ok_or_else(|| std::io::Error::other(format!("no slot {slot}")))?;
        std::fs::create_dir_all(run_dir)?;
        if let Some(i) = self.server_of(&s) {
            let forked = match self.servers.get_mut(i).and_then(|v| v.server.as_mut()) {
                Some(srv) => srv.launch(trial, run_dir),
                None => Err("no trial server".into()),
            };
            match forked {
                Ok(pid) => {
                    self.running.insert(
                        slot,
                        (trial, Proc::Forked { server: i, pid }, Instant::now()),
                    );
                    return Ok(pid);
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
        Ok(pid)
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

    fn busy(&self) -> BTreeMap<usize, i64> {
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
                        None => forkserver::kill(*pid),
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_devices() {
        let cpu = slots("auto", 0, 2, 1).unwrap();
        assert_eq!(cpu.len(), 2);
        assert!(cpu
            .iter()
            .all(|s| s.device == "cpu" && s.visible.is_empty()));
        let gpu = slots("auto", 2, 2, 3).unwrap();
        assert_eq!(gpu.len(), 6);
        assert_eq!(
            gpu.iter().map(|s| s.visible.as_str()).collect::<Vec<_>>(),
            ["0", "0", "0", "1", "1", "1"]
        );
        assert_eq!(slots("cpu", 4, 3, 1).unwrap().len(), 3);
        let e = slots("cuda", 0, 2, 1).unwrap_err();
        assert!(e.contains("sees no CUDA device"), "{e}");
    }
}
