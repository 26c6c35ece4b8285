//! Reports of a search (`optarch report DIR`): the leaderboard as terminal text, CSV and JSON,
//! and one self-contained HTML page with learning curves, accuracy against size and against
//! the theoretical convergence rate (the paper's hypothesis, tested with rank correlations),
//! ASHA rung statistics, the random-search baseline at equal budget, topology pictures of the
//! best candidates and the fault log.
//!
//! Everything is computed from `DIR/search.db` (and the pictures in the trial directories), so
//! a report can be written at any time, also while the search runs. See `docs/REPORT.md`.

mod chart;
mod explore;
mod format;
mod html;
mod model;
mod stats;
mod text;
mod views;

pub use format::count as thousands;
pub use html::base64;
pub use stats::{kendall_tau, spearman_rho};
pub use text::CSV_HEADER;

use crate::search::store::{Store, StoreError};
use std::path::{Path, PathBuf};

/// What to put in a report.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// How many of the best candidates get a topology picture.
    pub top_k: usize,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { top_k: 5 }
    }
}

/// The files a report wrote.
#[derive(Clone, Debug)]
pub struct ReportPaths {
    pub csv: PathBuf,
    pub json: PathBuf,
    pub html: PathBuf,
}

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(
        "{}/search.db not found: is {} a search directory (optarch search --out {})?",
        .dir.display(), .dir.display(), .dir.display()
    )]
    NotASearch { dir: PathBuf },
    #[error("reading the search database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot write {}: {source} (is the search directory writable?)", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode the leaderboard as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

fn load(dir: &Path) -> Result<model::Loaded, ReportError> {
    let db = dir.join("search.db");
    if !db.is_file() {
        return Err(ReportError::NotASearch {
            dir: dir.to_path_buf(),
        });
    }
    let (store, experiment, config) = Store::open_search(dir)?;
    Ok(model::Loaded {
        config,
        candidates: store.candidates()?,
        trials: store.trials()?,
        epochs: store.all_epochs()?,
        events: store.events()?,
        experiment,
    })
}

fn write(path: &Path, text: &str) -> Result<(), ReportError> {
    // Written beside and renamed, so a reader never sees half a file.
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("report");
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| ReportError::Write {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads `DIR/search.db`, writes `DIR/report/{leaderboard.csv, leaderboard.json,
/// report.html}`, and returns the terminal leaderboard text and the paths.
pub fn write_report(
    dir: &Path,
    opts: &ReportOptions,
) -> Result<(String, ReportPaths), ReportError> {
    let loaded = load(dir)?;
    let report = model::build(&loaded);
    let out = dir.join("report");
    std::fs::create_dir_all(&out).map_err(|source| ReportError::Write {
        path: out.clone(),
        source,
    })?;
    let dir_name = dir.display().to_string();
    let pictures: Vec<html::Picture> = report
        .leaderboard
        .iter()
        .take(opts.top_k)
        .map(|r| html::picture(dir, &loaded, r))
        .collect();
    let paths = ReportPaths {
        csv: out.join("leaderboard.csv"),
        json: out.join("leaderboard.json"),
        html: out.join("report.html"),
    };
    write(&paths.csv, &text::csv(&report))?;
    let mut json = serde_json::to_string_pretty(&report)?;
    json.push('\n');
    write(&paths.json, &json)?;
    write(
        &paths.html,
        &html::page(&loaded, &report, &pictures, &dir_name),
    )?;
    Ok((text::terminal(&report, &dir_name), paths))
}
