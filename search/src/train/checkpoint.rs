//! The files of a run directory, and how they are written: JSON files are written beside and
//! renamed into place, so a reader sees the old file or the new one, never half of one.

use super::record::EpochMetrics;
use serde::{de::DeserializeOwned, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// `config.json`: the spec and the training configuration ([`super::RunConfigFile`]).
pub(crate) const CONFIG: &str = "config.json";
/// `state.json`: progress and status ([`super::RunState`]).
pub(crate) const STATE: &str = "state.json";
/// `metrics.jsonl`: one [`EpochMetrics`] per finished epoch.
pub(crate) const METRICS: &str = "metrics.jsonl";
/// The weights after the last finished epoch.
pub(crate) const LAST: &str = "last.safetensors";
/// The optimiser's momentum buffers after the last finished epoch.
pub(crate) const LAST_OPTIM: &str = "last.optim.safetensors";
/// The weights of the epoch with the best score.
pub(crate) const BEST: &str = "best.safetensors";
/// `summary.json`, written at the end ([`super::Summary`]).
pub(crate) const SUMMARY: &str = "summary.json";
/// The topology of the first stage, drawn.
pub(crate) const TOPOLOGY: &str = "topology.svg";

/// Why a file of a run directory cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", .path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
}

type R<T> = Result<T, CheckpointError>;

/// An I/O error about `path`.
pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn json(path: &Path) -> impl FnOnce(serde_json::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Json {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `value` as pretty JSON to `path`, atomically (beside, then renamed).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> R<()> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(value).map_err(json(path))?;
    std::fs::write(&tmp, text).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Reads the JSON file `path`.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> R<T> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(json(path))
}

/// The finished epochs recorded in `dir`, in order; a line that does not parse (cut short by a
/// kill) is left out.
pub(crate) fn read_metrics(dir: &Path) -> Vec<EpochMetrics> {
    std::fs::read_to_string(dir.join(METRICS))
        .map(|text| {
            text.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Appends a finished epoch to `dir`'s metrics.
pub(crate) fn append_metrics(dir: &Path, m: &EpochMetrics) -> R<()> {
    let path = dir.join(METRICS);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))?;
    let line = serde_json::to_string(m).map_err(json(&path))?;
    writeln!(f, "{line}").map_err(io(&path))
}

/// Keeps only the metrics of the first `epochs` epochs (those whose checkpoint is on disk).
pub(crate) fn trim_metrics(dir: &Path, epochs: usize) -> R<()> {
    let path = dir.join(METRICS);
    if !path.exists() {
        return Ok(());
    }
    let mut out = String::new();
    for m in read_metrics(dir).iter().filter(|m| m.epoch < epochs) {
        out.push_str(&serde_json::to_string(m).map_err(json(&path))?);
        out.push('\n');
    }
    std::fs::write(&path, out).map_err(io(&path))
}
