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
//! (progress, status, and the checkpoint sets it resumes from, with their checksums),
//! `ckpt/eNNNN/` (weights and momentum buffers of the last and the best epoch),
//! `last.safetensors` and `best.safetensors` (links to their weights), `topology.svg` and, at
//! the end, `summary.json`. See [`checkpoint`] for how a kill at any moment is survived.

pub(crate) mod checkpoint;
mod config;
mod network;
mod progress;
mod record;
mod run;
mod sgd;

pub use checkpoint::{CheckpointError, CheckpointSet};
pub use config::{
    ArchConfig, BlockChoice, DataConfig, OptimConfig, Precision, PrecisionConfig, Preset,
    RunConfig, RunConfigFile, RunSpec, Schedule, ScheduleConfig, SetupError, Switch, TrainConfig,
    MAX_EPOCHS, MAX_STAGE_STEPS,
};
pub use network::{build, build_for, Built};
pub use progress::{epoch_line, Lines, Progress};
pub use record::{DataRecord, EpochMetrics, RunState, Status, Summary};
pub use run::{interrupt_flag, read_run_config, resume, train, TrainError};
pub use sgd::Sgd;
