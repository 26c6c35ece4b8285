//! Where trials run. [`Executor`] is the interface a cluster executor would implement;
//! [`Local`] runs each trial as a subprocess (`optarch trial ...`) on this machine, with GPUs
//! assigned through `CUDA_VISIBLE_DEVICES`.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

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

/// Trials as subprocesses of this one.
pub struct Local {
    exe: PathBuf,
    search_dir: PathBuf,
    slots: Vec<Slot>,
    threads: i32,
    running: BTreeMap<usize, (i64, Child, Instant)>,
}

impl Local {
    pub fn new(exe: PathBuf, search_dir: PathBuf, slots: Vec<Slot>, threads: i32) -> Local {
        Local {
            exe,
            search_dir,
            slots,
            threads,
            running: BTreeMap::new(),
        }
    }

    fn reap(&mut self, slot: usize, status: std::process::ExitStatus) -> Option<Ended> {
        let (trial, _, t0) = self.running.remove(&slot)?;
        Some(Ended {
            trial,
            slot,
            code: status.code(),
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
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(run_dir.join("log.txt"))?;
        let mut cmd = Command::new(&self.exe);
        cmd.args(["--threads", &self.threads.to_string()])
            .args(["--device", &s.device])
            .arg("trial")
            .arg("--dir")
            .arg(&self.search_dir)
            .args(["--id", &trial.to_string()])
            .env("CUDA_VISIBLE_DEVICES", &s.visible)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a Ctrl-C at the terminal reaches the driver only, which
            // stops the trials itself and records them as resumable.
            .process_group(0);
        let child = cmd.spawn()?;
        let pid = child.id();
        self.running.insert(slot, (trial, child, Instant::now()));
        Ok(pid)
    }

    fn poll(&mut self) -> Vec<Ended> {
        let mut done = Vec::new();
        let slots: Vec<usize> = self.running.keys().copied().collect();
        for slot in slots {
            let status = match self.running.get_mut(&slot) {
                Some((_, child, _)) => child.try_wait(),
                None => continue,
            };
            match status {
                Ok(Some(st)) => done.extend(self.reap(slot, st)),
                Ok(None) => {}
                Err(_) => {
                    // The process cannot be waited for: treat it as crashed.
                    if let Some((trial, _, t0)) = self.running.remove(&slot) {
                        done.push(Ended {
                            trial,
                            slot,
                            code: None,
                            wall: t0.elapsed().as_secs_f64(),
                        });
                    }
                }
            }
        }
        done
    }

    fn busy(&self) -> BTreeMap<usize, i64> {
        self.running.iter().map(|(s, (t, _, _))| (*s, *t)).collect()
    }

    fn stop_all(&mut self) -> Vec<Ended> {
        let mut done = Vec::new();
        let slots: Vec<usize> = self.running.keys().copied().collect();
        for slot in slots {
            if let Some((_, child, _)) = self.running.get_mut(&slot) {
                let _ = child.kill();
                if let Ok(st) = child.wait() {
                    done.extend(self.reap(slot, st));
                }
            }
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
