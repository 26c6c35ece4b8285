//! What a run records: one [`EpochMetrics`] per finished epoch (`metrics.jsonl`), its
//! [`RunState`] (`state.json`) and, at the end, its [`Summary`] (`summary.json`).

use super::checkpoint::CheckpointSet;
use serde::{Deserialize, Serialize};

/// One line of `metrics.jsonl`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct EpochMetrics {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    /// On the validation split (`None` without one).
    pub val_loss: Option<f64>,
    pub val_acc: Option<f64>,
    /// On the test set (`None` where the run does not evaluate it: `data.test: false`, as
    /// search trials that only compete).
    pub test_loss: Option<f64>,
    pub test_acc: Option<f64>,
    pub images_per_sec: f64,
    pub epoch_seconds: f64,
}

impl EpochMetrics {
    /// The score of the epoch, the one number every decision about a run compares (its best
    /// checkpoint, ASHA's promotions, the finalists, the winner): the validation accuracy;
    /// `None` without a validation split or unless finite. The test set never decides anything.
    pub fn score(&self) -> Option<f64> {
        self.val_acc.filter(|v| v.is_finite())
    }
}

/// `data.json`: the data a run trains on, recorded when it starts, so that what needs only its
/// shape, classes and statistics (`optarch export`) does not read the data set again.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DataRecord {
    /// The data set (`cifar10`, `cifar100`, `mnist`).
    pub dataset: String,
    /// Where it was read from (given, found through `$OPTARCH_DATA`, or downloaded).
    pub path: std::path::PathBuf,
    /// Channels, height, width.
    pub shape: [usize; 3],
    pub classes: usize,
    /// Images in the training, validation and test parts.
    pub train: usize,
    pub val: usize,
    pub test: usize,
    /// The per-channel normalisation, from the training part.
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

/// How a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    /// Stopped by Ctrl-C at an epoch boundary: `--resume` continues it.
    Interrupted,
    Done,
    Diverged,
}

impl std::fmt::Display for Status {
    /// As `state.json` and `summary.json` spell it: `running`, `interrupted`, `done`,
    /// `diverged`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Running => "running",
            Status::Interrupted => "interrupted",
            Status::Done => "done",
            Status::Diverged => "diverged",
        })
    }
}

/// `state.json`: where a run is, so that `--resume` continues it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RunState {
    pub status: Status,
    /// Epochs finished (and checkpointed).
    pub epochs_done: usize,
    pub best_acc: Option<f64>,
    pub best_epoch: Option<usize>,
    pub loss_scale: f64,
    pub wall_seconds: f64,
    /// The last finished epoch's checkpoint set, which `--resume` loads.
    #[serde(default)]
    pub checkpoint: Option<CheckpointSet>,
    /// The best epoch's checkpoint set.
    #[serde(default)]
    pub best: Option<CheckpointSet>,
}

impl RunState {
    /// A run that has not finished an epoch yet.
    pub fn new() -> RunState {
        RunState {
            status: Status::Running,
            epochs_done: 0,
            best_acc: None,
            best_epoch: None,
            loss_scale: 65536.0,
            wall_seconds: 0.0,
            checkpoint: None,
            best: None,
        }
    }
}

impl Default for RunState {
    fn default() -> Self {
        RunState::new()
    }
}

/// `summary.json`, printed at the end.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Summary {
    pub status: Status,
    pub spec: String,
    pub preset: String,
    pub depth: usize,
    pub parameters: i64,
    pub multiply_adds: i64,
    pub epochs: usize,
    pub best_acc: Option<f64>,
    pub best_epoch: Option<usize>,
    pub final_test_acc: Option<f64>,
    pub wall_seconds: f64,
    pub device: String,
    /// The data set and its parts.
    #[serde(default)]
    pub dataset: String,
    /// The precision and layout the run computed in (`bf16, channels_last`, `fp32`, ...).
    #[serde(default)]
    pub compute: String,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "status            {}", self.status)?;
        writeln!(
            f,
            "network           {} on {} depth {}",
            self.spec, self.preset, self.depth
        )?;
        if !self.dataset.is_empty() {
            writeln!(f, "data              {}", self.dataset)?;
        }
        writeln!(f, "parameters        {}", self.parameters)?;
        writeln!(f, "multiply-adds     {} per image", self.multiply_adds)?;
        if let (Some(a), Some(e)) = (self.best_acc, self.best_epoch) {
            writeln!(f, "best validation   {:.2} % (epoch {})", 100.0 * a, e + 1)?;
        }
        if let Some(a) = self.final_test_acc {
            writeln!(f, "final test acc.   {:.2} %", 100.0 * a)?;
        }
        write!(
            f,
            "wall time         {:.1} s on {} ({})",
            self.wall_seconds, self.device, self.compute
        )
    }
}
