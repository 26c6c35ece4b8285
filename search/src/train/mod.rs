//! The trainer: SGD with Nesterov momentum, learning-rate schedules, label smoothing, gradient
//! clipping, evaluation on validation and test every epoch, and a run directory that lets an
//! interrupted run continue exactly.
//!
//! * [`config`]: [`TrainConfig`], the one description of a training run (command line, search
//!   configuration, `config.json`), and [`RunSpec`], the spec it trains;
//! * [`network`]: the network a run builds from its spec and configuration;
//! * [`record`]: what a run records ([`EpochMetrics`], [`RunState`], [`Summary`]);
//! * [`checkpoint`]: the run directory's files;
//! * [`progress`]: how a run reports its progress;
//! * [`sgd`]: the optimiser, with state that saves and loads;
//! * [`run`]: the training loop ([`train`], [`resume`]).
//!
//! A run directory holds `config.json`, `metrics.jsonl` (one line per epoch), `state.json`
//! (progress and status), `last.safetensors` / `last.optim.safetensors` (weights and momentum
//! buffers after the last finished epoch), `best.safetensors` (best validation accuracy),
//! `topology.svg` and, at the end, `summary.json`.

pub(crate) mod checkpoint;
mod config;
mod network;
mod progress;
mod record;
mod run;
mod sgd;

pub use checkpoint::CheckpointError;
pub use config::{
    ArchConfig, BlockChoice, DataConfig, OptimConfig, Precision, PrecisionConfig, Preset,
    RunConfig, RunConfigFile, RunSpec, Schedule, ScheduleConfig, SetupError, TrainConfig,
};
pub use network::{build, Built};
pub use progress::{epoch_line, Lines, Progress};
pub use record::{EpochMetrics, RunState, Status, Summary};
pub use run::{resume, train, TrainError};
pub use sgd::Sgd;
