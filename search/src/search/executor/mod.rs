//! Where trials run, behind [`Executor`]: [`Local`] runs each trial as a subprocess on this
//! machine (forked from a warm trial server, see [`forkserver`], or spawned as `optarch trial
//! ...`), with GPUs assigned through `CUDA_VISIBLE_DEVICES`; [`Slurm`] submits one Slurm job
//! per trial attempt (see [`slurm`]).
//!
//! Inside: [`process`] (starting and signalling `optarch` processes) → [`forkserver`] (the
//! trial server and the driver's side of its protocol) → [`local`] (the local executor);
//! [`slurm`] beside them.

pub mod forkserver;
mod local;
pub(crate) mod process;
pub mod slurm;

pub(crate) use local::Local;
pub(crate) use slurm::Slurm;

use super::config::SearchConfig;
use super::ids::TrialId;
use super::trial::JobFile;
use optarch_core::device::DeviceChoice;
use std::collections::BTreeMap;
use std::path::Path;

/// A trial process that ended.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Ended {
    pub trial: TrialId,
    pub slot: usize,
    /// The exit status, `None` when a signal ended it.
    pub code: Option<i32>,
    /// Seconds it ran.
    pub wall: f64,
    /// Why a cluster job ended without a result (`None`: it wrote one, or a local process
    /// ended and its exit status says how).
    pub lost: Option<Lost>,
    /// A cluster job reports through files: its attempt and its run directory (as the nodes
    /// see it), which the driver reads into the store.
    pub files: Option<(u32, std::path::PathBuf)>,
}

/// Why a cluster job ended without a result, each its own cause in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Lost {
    /// Killed at its time limit (no warning signal, or it came too late): resumable.
    TimeLimit,
    /// Its node failed: resumable.
    NodeFailure,
    /// Cancelled (scancel, an administrator, or this driver stopping).
    Cancelled,
    /// Killed by Slurm's memory limit.
    OutOfMemory,
    /// It ended otherwise (a non-zero exit before it could report).
    Failed(String),
    /// squeue no longer knows it and it left no result.
    Vanished,
}

impl std::fmt::Display for Lost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lost::TimeLimit => write!(f, "the Slurm job hit its time limit (TIMEOUT)"),
            Lost::NodeFailure => write!(f, "the Slurm job's node failed (NODE_FAIL)"),
            Lost::Cancelled => write!(f, "the Slurm job was cancelled (CANCELLED)"),
            Lost::OutOfMemory => write!(f, "the Slurm job ran out of memory (OUT_OF_MEMORY)"),
            Lost::Failed(how) => write!(f, "the Slurm job ended without a result ({how})"),
            Lost::Vanished => write!(
                f,
                "the Slurm job left the queue without a result (purged before it was seen)"
            ),
        }
    }
}

/// What a launch started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Started {
    /// A process on this machine.
    Process(u32),
    /// A cluster job.
    Job(String),
}

/// Runs trials.
pub(crate) trait Executor {
    /// How many trials can run at once.
    fn slots(&self) -> usize;
    /// The device a trial in `slot` trains on (`cpu`, `cuda`), for the store.
    fn device(&self, slot: usize) -> String;
    /// Starts `job` (an attempt of a trial) in the free `slot`, in `run_dir`.
    fn launch(&mut self, slot: usize, job: &JobFile, run_dir: &Path) -> std::io::Result<Started>;
    /// The trials that ended since the last call.
    fn poll(&mut self) -> Vec<Ended>;
    /// The busy slots: slot → trial.
    fn busy(&self) -> BTreeMap<usize, TrialId>;
    /// Stops every running trial (they stay resumable) and waits for them.
    fn stop_all(&mut self) -> Vec<Ended>;
    /// What happened since the last call, for the event log.
    fn notes(&mut self) -> Vec<String> {
        Vec::new()
    }
    /// A cluster job's id, attempt and run directory as the nodes see it, for a trial it
    /// runs (`None` for local processes: they report to the store themselves).
    fn job_of(&self, _trial: TrialId) -> Option<(String, u32, std::path::PathBuf)> {
        None
    }
    /// Tracks cluster job `job` (attempt `attempt` of `trial`, in `run_dir`) that a driver
    /// before this one submitted; `false` when this executor has no jobs, or no free slot.
    fn adopt(&mut self, _trial: TrialId, _job: &str, _attempt: u32, _run_dir: &Path) -> bool {
        false
    }
}

/// One slot of the local machine.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Slot {
    /// The device its trials are given: `cpu`, or `cuda` (the GPU `visible` names).
    pub device: DeviceChoice,
    /// `CUDA_VISIBLE_DEVICES` for its trials (empty: no GPU).
    pub visible: String,
}

/// Why there are no slots to run trials in.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error(
        "train.run.device is {0} but libtorch sees no CUDA device: use `device: auto` or `cpu`, \
         or check the driver with `optarch --device cuda env`"
    )]
    NoCuda(DeviceChoice),
}

/// The slots for `device` given `gpus` visible GPUs: `per_gpu` per GPU when there are GPUs to
/// use, else `workers` on the CPU.
pub(crate) fn slots(
    device: DeviceChoice,
    gpus: usize,
    workers: usize,
    per_gpu: usize,
) -> Result<Vec<Slot>, SlotError> {
    let use_gpu = match device {
        DeviceChoice::Cpu => false,
        DeviceChoice::Cuda(_) if gpus == 0 => return Err(SlotError::NoCuda(device)),
        DeviceChoice::Cuda(_) => true,
        DeviceChoice::Auto => gpus > 0,
    };
    if use_gpu {
        Ok((0..gpus)
            .flat_map(|g| {
                (0..per_gpu.max(1)).map(move |_| Slot {
                    device: DeviceChoice::Cuda(None),
                    visible: g.to_string(),
                })
            })
            .collect())
    } else {
        Ok((0..workers.max(1))
            .map(|_| Slot {
                device: DeviceChoice::Cpu,
                visible: String::new(),
            })
            .collect())
    }
}

/// The slots of this machine for a search.
pub(crate) fn local_slots(cfg: &SearchConfig) -> Result<Vec<Slot>, SlotError> {
    let device = cfg.train.run.device;
    let gpus = if device == DeviceChoice::Cpu {
        0
    } else {
        usize::try_from(tch::Cuda::device_count()).unwrap_or(0)
    };
    slots(
        device,
        gpus,
        cfg.execution.workers,
        cfg.execution.trials_per_gpu,
    )
}

/// libtorch threads of each trial process: `train.run.threads`, else the cores shared out
/// among the slots (at least 1).
pub(crate) fn threads_per_trial(cfg: &SearchConfig, slots: usize) -> usize {
    cfg.train.run.threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / slots.max(1)).max(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_devices() {
        let cpu = slots(DeviceChoice::Auto, 0, 2, 1).unwrap();
        assert_eq!(cpu.len(), 2);
        assert!(cpu
            .iter()
            .all(|s| s.device == DeviceChoice::Cpu && s.visible.is_empty()));
        let gpu = slots(DeviceChoice::Auto, 2, 2, 3).unwrap();
        assert_eq!(gpu.len(), 6);
        assert_eq!(
            gpu.iter().map(|s| s.visible.as_str()).collect::<Vec<_>>(),
            ["0", "0", "0", "1", "1", "1"]
        );
        assert_eq!(slots(DeviceChoice::Cpu, 4, 3, 1).unwrap().len(), 3);
        let e = slots(DeviceChoice::Cuda(None), 0, 2, 1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sees no CUDA device"), "{e}");
    }
}
