//! The results store: one SQLite file per search (`DIR/search.db`), embedded (bundled SQLite,
//! no server).
//!
//! * WAL journal, `synchronous = NORMAL`, a 30 s busy timeout and `BEGIN IMMEDIATE` write
//!   transactions: the driver and every trial process write to the same file concurrently
//!   without "database is locked" failures.
//! * The schema is versioned through `PRAGMA user_version`; [`Store::open`] migrates an older
//!   file and refuses a newer one.
//! * A trial's row is the unit of work. Its status moves `pending → running → done` (its
//!   current budget reached), or ends `diverged`, `oom` or `failed`; ASHA promotes a `done`
//!   trial by raising its budget and setting it `pending` again. Every finished epoch is a row
//!   of `epochs`, written by the trial process in the same transaction as the trial's progress.

use super::candidate::Candidate;
use super::config::SearchConfig;
use super::ids::{CandidateId, ExperimentId, TrialId};
use crate::train::EpochMetrics;
use rusqlite::{params, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema version this build reads and writes.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const SCHEMA_V1: &str = "
CREATE TABLE experiments (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    config_yaml TEXT NOT NULL,
    config_json TEXT NOT NULL,
    created     REAL NOT NULL,
    status      TEXT NOT NULL,
    wall_seconds REAL NOT NULL DEFAULT 0
);
CREATE TABLE candidates (
    id          INTEGER PRIMARY KEY,
    experiment  INTEGER NOT NULL REFERENCES experiments(id),
    name        TEXT NOT NULL,
    origin      TEXT NOT NULL,
    spec_yaml   TEXT NOT NULL,
    spec_hash   TEXT NOT NULL,
    topo_hash   TEXT NOT NULL,
    params_json TEXT NOT NULL,
    contraction REAL,
    asymptotic  REAL,
    UNIQUE (experiment, topo_hash)
);
CREATE TABLE trials (
    id          INTEGER PRIMARY KEY,
    experiment  INTEGER NOT NULL REFERENCES experiments(id),
    candidate   INTEGER NOT NULL REFERENCES candidates(id),
    phase       TEXT NOT NULL,
    seed        INTEGER NOT NULL,
    budget      INTEGER NOT NULL,
    max_budget  INTEGER NOT NULL,
    rung        INTEGER NOT NULL DEFAULT 0,
    epochs_done INTEGER NOT NULL DEFAULT 0,
    status      TEXT NOT NULL,
    device      TEXT,
    batch_size  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    crashes     INTEGER NOT NULL DEFAULT 0,
    error       TEXT,
    dir         TEXT NOT NULL,
    created     REAL NOT NULL,
    started     REAL,
    finished    REAL,
    train_seconds REAL NOT NULL DEFAULT 0,
    wall_seconds  REAL NOT NULL DEFAULT 0,
    val_acc     REAL,
    test_acc    REAL,
    parameters  INTEGER,
    multiply_adds INTEGER,
    pid         INTEGER
);
CREATE INDEX trials_by_status ON trials (experiment, status);
CREATE TABLE epochs (
    trial       INTEGER NOT NULL REFERENCES trials(id),
    epoch       INTEGER NOT NULL,
    lr          REAL NOT NULL,
    train_loss  REAL NOT NULL,
    train_acc   REAL NOT NULL,
    val_loss    REAL,
    val_acc     REAL,
    test_loss   REAL NOT NULL,
    test_acc    REAL NOT NULL,
    images_per_sec REAL NOT NULL,
    seconds     REAL NOT NULL,
    PRIMARY KEY (trial, epoch)
);
CREATE TABLE pool (
    candidate   INTEGER PRIMARY KEY REFERENCES candidates(id),
    position    INTEGER NOT NULL,
    family      TEXT NOT NULL,
    features_json TEXT NOT NULL
);
CREATE TABLE events (
    id      INTEGER PRIMARY KEY,
    at      REAL NOT NULL,
    trial   INTEGER,
    message TEXT NOT NULL
);
";

/// Version 2: the test set is evaluated only where it is reported, so an epoch's test figures
/// may be missing; a candidate may be a named reference the winner is compared with.
const SCHEMA_V2: &str = "
CREATE TABLE epochs_v2 (
    trial       INTEGER NOT NULL REFERENCES trials(id),
    epoch       INTEGER NOT NULL,
    lr          REAL NOT NULL,
    train_loss  REAL NOT NULL,
    train_acc   REAL NOT NULL,
    val_loss    REAL,
    val_acc     REAL,
    test_loss   REAL,
    test_acc    REAL,
    images_per_sec REAL NOT NULL,
    seconds     REAL NOT NULL,
    PRIMARY KEY (trial, epoch)
);
INSERT INTO epochs_v2 SELECT * FROM epochs;
DROP TABLE epochs;
ALTER TABLE epochs_v2 RENAME TO epochs;
ALTER TABLE pool ADD COLUMN reference INTEGER NOT NULL DEFAULT 0;
";

/// Version 3: a trial run as a cluster job records the job's id (Slurm's), so that a driver
/// started again re-attaches to it instead of submitting it twice.
const SCHEMA_V3: &str = "ALTER TABLE trials ADD COLUMN job TEXT;";
/// A candidate's own macro-architecture (a search configuration's `arch:` on its entry), as
/// JSON; NULL: the search's `train.arch`.
const SCHEMA_V4: &str = "ALTER TABLE pool ADD COLUMN arch_json TEXT;";

/// The schema's versions in order: migration i makes version i + 1.
const MIGRATIONS: [&str; 4] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4];

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(
        "{path}: schema version {found} is newer than this optarch reads ({SCHEMA_VERSION}): \
         use a newer optarch"
    )]
    Newer { path: PathBuf, found: i64 },
    /// A row that does not decode: the store was written by something else, or damaged.
    #[error("{}: {what} of {row} does not decode ({detail}): the store is damaged", .path.display())]
    Corrupt {
        path: PathBuf,
        what: &'static str,
        row: String,
        detail: String,
    },
    /// No store at this path.
    #[error("{}: no search database here (is this a search directory?)", .0.display())]
    Missing(PathBuf),
    /// A store whose search never started.
    #[error("{}: the database holds no experiment yet (the search has not started)", .0.display())]
    NoExperiment(PathBuf),
    /// The search configuration stored with the experiment does not read.
    #[error("{}: the search configuration in the database does not read: {source}", .path.display())]
    Config {
        path: PathBuf,
        source: serde_json::Error,
    },
}

type R<T> = Result<T, StoreError>;

/// A trial's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialStatus {
    Pending,
    Running,
    Done,
    Diverged,
    Oom,
    Failed,
}

impl TrialStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TrialStatus::Pending => "pending",
            TrialStatus::Running => "running",
            TrialStatus::Done => "done",
            TrialStatus::Diverged => "diverged",
            TrialStatus::Oom => "oom",
            TrialStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<TrialStatus> {
        Some(match s {
            "pending" => TrialStatus::Pending,
            "running" => TrialStatus::Running,
            "done" => TrialStatus::Done,
            "diverged" => TrialStatus::Diverged,
            "oom" => TrialStatus::Oom,
            "failed" => TrialStatus::Failed,
            _ => return None,
        })
    }

    /// No more work will be done on it (promotion aside).
    pub(crate) fn is_final(self) -> bool {
        matches!(
            self,
            TrialStatus::Diverged | TrialStatus::Oom | TrialStatus::Failed
        )
    }
}

/// Which part of a search a trial belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The strategy's own trials (successive halving / ASHA).
    Search,
    /// The random-search baseline at equal budget.
    Baseline,
    /// Finalists re-trained with several seeds at the full budget.
    Final,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Search => "search",
            Phase::Baseline => "baseline",
            Phase::Final => "final",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Some(match s {
            "search" => Phase::Search,
            "baseline" => Phase::Baseline,
            "final" => Phase::Final,
            _ => return None,
        })
    }
}

/// A row of `experiments`.
#[derive(Clone, Debug, Serialize)]
pub struct Experiment {
    pub id: ExperimentId,
    pub name: String,
    pub config_yaml: String,
    pub config_json: String,
    pub created: f64,
    pub status: String,
    pub wall_seconds: f64,
}

/// A record with the id the store gave it (its fields are reached through `Deref`).
#[derive(Clone, Debug, Serialize)]
pub struct Stored<I, T> {
    pub id: I,
    #[serde(flatten)]
    pub row: T,
}

impl<I, T> std::borrow::Borrow<T> for Stored<I, T> {
    fn borrow(&self) -> &T {
        &self.row
    }
}

impl<I, T> std::ops::Deref for Stored<I, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.row
    }
}

/// A row of `trials`.
#[derive(Clone, Debug, Serialize)]
pub struct Trial {
    pub id: TrialId,
    pub candidate: CandidateId,
    pub phase: Phase,
    pub seed: u64,
    /// Epochs to reach before the trial stops (its current rung's resource).
    pub budget: usize,
    /// The schedule's length in epochs (the largest rung).
    pub max_budget: usize,
    pub rung: usize,
    pub epochs_done: usize,
    pub status: TrialStatus,
    pub device: Option<String>,
    pub batch_size: usize,
    /// Processes started for it (every rung and retry counts).
    pub attempts: u32,
    /// Processes that died without reporting (retried up to `max_attempts` − 1 times).
    pub crashes: u32,
    pub error: Option<String>,
    /// The run directory, relative to the search directory.
    pub dir: String,
    pub created: f64,
    pub started: Option<f64>,
    pub finished: Option<f64>,
    /// Seconds spent in training and evaluation epochs.
    pub train_seconds: f64,
    /// Seconds the trial's processes ran.
    pub wall_seconds: f64,
    /// The score at the last finished epoch ([`EpochMetrics::score`]).
    pub score: Option<f64>,
    pub test_acc: Option<f64>,
    pub parameters: Option<i64>,
    pub multiply_adds: Option<i64>,
    /// The process running (or last running) it.
    pub pid: Option<i64>,
    /// The cluster job running (or last running) it: Slurm's job id.
    pub job: Option<String>,
}

/// A new trial.
#[derive(Clone, Debug)]
pub struct NewTrial {
    pub candidate: CandidateId,
    pub phase: Phase,
    pub seed: u64,
    pub budget: usize,
    pub max_budget: usize,
    pub rung: usize,
    pub batch_size: usize,
}

/// A row of `epochs`: a trial's line of `metrics.jsonl` (its fields are reached through
/// `Deref`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Epoch {
    pub trial: TrialId,
    #[serde(flatten)]
    pub metrics: EpochMetrics,
}

impl std::ops::Deref for Epoch {
    type Target = EpochMetrics;
    fn deref(&self) -> &EpochMetrics {
        &self.metrics
    }
}

/// Every trial's finished epochs, in order.
pub type Epochs = std::collections::BTreeMap<TrialId, Vec<Epoch>>;

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

const TRIAL_COLUMNS: &str = "id, candidate, phase, seed, budget, max_budget, rung, epochs_done, \
     status, device, batch_size, attempts, error, dir, created, started, finished, \
     train_seconds, wall_seconds, val_acc, test_acc, parameters, multiply_adds, pid, crashes, job";

/// A candidate's columns: its row of `candidates` joined with its row of `pool`.
const CANDIDATE_COLUMNS: &str = "c.id, c.name, c.origin, c.spec_yaml, c.spec_hash, c.topo_hash, \
     c.params_json, c.contraction, c.asymptotic, p.family, p.features_json, p.reference, \
     p.arch_json";
const CANDIDATE_FROM: &str = "candidates c JOIN pool p ON p.candidate = c.id";

fn trial_from_row(r: &Row<'_>) -> rusqlite::Result<Trial> {
    let phase: String = r.get(2)?;
    let status: String = r.get(8)?;
    let bad = |what: &str, v: &str| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            format!("unknown {what} `{v}`").into(),
        )
    };
    Ok(Trial {
        id: r.get(0)?,
        candidate: r.get(1)?,
        phase: Phase::parse(&phase).ok_or_else(|| bad("phase", &phase))?,
        seed: r.get::<_, i64>(3)? as u64,
        budget: r.get::<_, i64>(4)? as usize,
        max_budget: r.get::<_, i64>(5)? as usize,
        rung: r.get::<_, i64>(6)? as usize,
        epochs_done: r.get::<_, i64>(7)? as usize,
        status: TrialStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
        device: r.get(9)?,
        batch_size: r.get::<_, i64>(10)? as usize,
        attempts: r.get::<_, i64>(11)? as u32,
        error: r.get(12)?,
        dir: r.get(13)?,
        created: r.get(14)?,
        started: r.get(15)?,
        finished: r.get(16)?,
        train_seconds: r.get(17)?,
        wall_seconds: r.get(18)?,
        score: r.get(19)?,
        test_acc: r.get(20)?,
        parameters: r.get(21)?,
        multiply_adds: r.get(22)?,
        pid: r.get(23)?,
        crashes: r.get::<_, i64>(24)? as u32,
        job: r.get(25)?,
    })
}

/// A JSON column that does not decode: an error naming the row, never a silent default.
fn json_column<T: serde::de::DeserializeOwned>(
    r: &Row<'_>,
    i: usize,
    what: &'static str,
) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            i,
            rusqlite::types::Type::Text,
            format!("{what} `{text}`: {e}").into(),
        )
    })
}

fn candidate_from_row(r: &Row<'_>) -> rusqlite::Result<Stored<CandidateId, Candidate>> {
    Ok(Stored {
        id: r.get(0)?,
        row: Candidate {
            name: r.get(1)?,
            origin: r.get(2)?,
            spec_yaml: r.get(3)?,
            spec_hash: r.get(4)?,
            topo_hash: r.get(5)?,
            overrides: json_column(r, 6, "parameter values")?,
            contraction: r.get(7)?,
            asymptotic: r.get(8)?,
            family: r.get(9)?,
            features: json_column(r, 10, "features")?,
            reference: r.get(11)?,
            arch: match r.get::<_, Option<String>>(12)? {
                Some(_) => Some(json_column(r, 12, "architecture")?),
                None => None,
            },
        },
    })
}

impl Store {
    /// Opens (creating or migrating) the store at `path`.
    pub fn open(path: &Path) -> R<Store> {
        let conn = Connection::open(path).map_err(|source| StoreError::Sql {
            path: path.to_path_buf(),
            source,
        })?;
        let store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.init()?;
        Ok(store)
    }

    /// Closes the store, its write-ahead log folded into the file.
    pub(crate) fn close(self) -> R<()> {
        let path = self.path;
        self.conn
            .close()
            .map_err(|(_, source)| StoreError::Sql { path, source })
    }

    /// Opens the search in `dir`: its store, its experiment and the configuration it runs.
    pub fn open_search(dir: &Path) -> R<(Store, Experiment, SearchConfig)> {
        let path = dir.join("search.db");
        let store = Store::open_existing(&path)?;
        let exp = store
            .experiment()?
            .ok_or_else(|| StoreError::NoExperiment(path.clone()))?;
        let cfg = serde_json::from_str(&exp.config_json)
            .map_err(|source| StoreError::Config { path, source })?;
        Ok((store, exp, cfg))
    }

    /// Opens an existing store (an error when `path` does not exist).
    pub fn open_existing(path: &Path) -> R<Store> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.to_path_buf()));
        }
        Store::open(path)
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        move |source| StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    fn init(&self) -> R<()> {
        self.conn
            .busy_timeout(Duration::from_secs(30))
            .map_err(self.sql())?;
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(self.sql())?;
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(self.sql())?;
        self.conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(self.sql())?;
        let version: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.sql())?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                path: self.path.clone(),
                found: version,
            });
        }
        // Each migration in one transaction, from the file's version to this optarch's.
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let to = i as i64 + 1;
            if version < to {
                self.write(|c| {
                    c.execute_batch(sql)?;
                    c.pragma_update(None, "user_version", to)?;
                    Ok(())
                })?;
            }
        }
        Ok(())
    }

    /// The schema version of the open file.
    #[cfg(test)]
    pub(crate) fn schema_version(&self) -> R<i64> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(self.sql())
    }

    /// Runs `f` in an immediate (write-locking) transaction, committed when `f` succeeds.
    pub fn write<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> R<T> {
        let tx = rusqlite::Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(self.sql())?;
        let out = f(&tx).map_err(self.sql())?;
        tx.commit().map_err(self.sql())?;
        Ok(out)
    }

    /// Creates the experiment row (a store holds one experiment).
    pub fn create_experiment(&self, name: &str, yaml: &str, json: &str) -> R<ExperimentId> {
        self.write(|c| {
            c.execute(
                "INSERT INTO experiments (name, config_yaml, config_json, created, status) \
                 VALUES (?1, ?2, ?3, ?4, 'running')",
                params![name, yaml, json, now()],
            )?;
            Ok(ExperimentId(c.last_insert_rowid()))
        })
    }

    /// The experiment, if created.
    pub fn experiment(&self) -> R<Option<Experiment>> {
        self.conn
            .query_row(
                "SELECT id, name, config_yaml, config_json, created, status, wall_seconds \
                 FROM experiments ORDER BY id LIMIT 1",
                [],
                |r| {
                    Ok(Experiment {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        config_yaml: r.get(2)?,
                        config_json: r.get(3)?,
                        created: r.get(4)?,
                        status: r.get(5)?,
                        wall_seconds: r.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(self.sql())
    }

    /// Sets the experiment's status and adds `wall` seconds of driver time.
    pub(crate) fn set_experiment_status(&self, id: ExperimentId, status: &str, wall: f64) -> R<()> {
        self.write(|c| {
            c.execute(
                "UPDATE experiments SET status = ?2, wall_seconds = wall_seconds + ?3 \
                 WHERE id = ?1",
                params![id, status, wall],
            )?;
            Ok(())
        })
    }

    /// Inserts a candidate at `position` of the pool, or returns the id of the one with the
    /// same topology hash and `false`.
    pub fn insert_candidate(
        &self,
        exp: ExperimentId,
        position: usize,
        c: &Candidate,
    ) -> R<(CandidateId, bool)> {
        let params = serde_json::to_string(&c.overrides)
            .map_err(|e| self.corrupt("parameter values", &c.name, e))?;
        let features =
            serde_json::to_string(&c.features).map_err(|e| self.corrupt("features", &c.name, e))?;
        let arch = c
            .arch
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| self.corrupt("architecture", &c.name, e))?;
        self.write(|conn| {
            let existing: Option<CandidateId> = conn
                .query_row(
                    "SELECT id FROM candidates WHERE experiment = ?1 AND topo_hash = ?2",
                    params![exp, c.topo_hash],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = existing {
                return Ok((id, false));
            }
            conn.execute(
                "INSERT INTO candidates (experiment, name, origin, spec_yaml, spec_hash, \
                 topo_hash, params_json, contraction, asymptotic) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    exp,
                    c.name,
                    c.origin,
                    c.spec_yaml,
                    c.spec_hash,
                    c.topo_hash,
                    params,
                    c.contraction,
                    c.asymptotic
                ],
            )?;
            let id = CandidateId(conn.last_insert_rowid());
            conn.execute(
                "INSERT INTO pool (candidate, position, family, features_json, reference, \
                 arch_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id, position as i64, c.family, features, c.reference, arch],
            )?;
            Ok((id, true))
        })
    }

    fn corrupt(&self, what: &'static str, row: &str, e: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            what,
            row: row.to_string(),
            detail: e.to_string(),
        }
    }

    /// Every candidate, in pool order.
    pub fn candidates(&self) -> R<Vec<Stored<CandidateId, Candidate>>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT {CANDIDATE_COLUMNS} FROM {CANDIDATE_FROM} ORDER BY p.position"
            ))
            .map_err(self.sql())?;
        let rows = st
            .query_map([], candidate_from_row)
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(rows)
    }

    pub fn candidate(&self, id: CandidateId) -> R<Stored<CandidateId, Candidate>> {
        self.conn
            .query_row(
                &format!("SELECT {CANDIDATE_COLUMNS} FROM {CANDIDATE_FROM} WHERE c.id = ?1"),
                params![id],
                candidate_from_row,
            )
            .map_err(self.sql())
    }

    /// Inserts a pending trial; its directory is `trials/<id>`.
    pub fn insert_trial(&self, exp: ExperimentId, t: &NewTrial) -> R<TrialId> {
        self.write(|c| {
            c.execute(
                "INSERT INTO trials (experiment, candidate, phase, seed, budget, max_budget, \
                 rung, status, batch_size, dir, created) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, '', ?9)",
                params![
                    exp,
                    t.candidate,
                    t.phase.as_str(),
                    t.seed as i64,
                    t.budget as i64,
                    t.max_budget as i64,
                    t.rung as i64,
                    t.batch_size as i64,
                    now()
                ],
            )?;
            let id = TrialId(c.last_insert_rowid());
            c.execute(
                "UPDATE trials SET dir = ?2 WHERE id = ?1",
                params![id, format!("trials/{:04}", id.0)],
            )?;
            Ok(id)
        })
    }

    pub fn trials(&self) -> R<Vec<Trial>> {
        let mut st = self
            .conn
            .prepare(&format!("SELECT {TRIAL_COLUMNS} FROM trials ORDER BY id"))
            .map_err(self.sql())?;
        let rows = st
            .query_map([], trial_from_row)
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(rows)
    }

    pub fn trial(&self, id: TrialId) -> R<Trial> {
        self.conn
            .query_row(
                &format!("SELECT {TRIAL_COLUMNS} FROM trials WHERE id = ?1"),
                params![id],
                trial_from_row,
            )
            .map_err(self.sql())
    }

    /// Marks a trial running on `device` (one more attempt).
    pub fn start_trial(&self, id: TrialId, device: &str) -> R<()> {
        self.write(|c| {
            c.execute(
                "UPDATE trials SET status = 'running', device = ?2, attempts = attempts + 1, \
                 started = COALESCE(started, ?3), error = NULL WHERE id = ?1",
                params![id, device, now()],
            )?;
            Ok(())
        })
    }

    /// Records a finished epoch and the trial's progress, in one transaction (the trial
    /// process calls this after its checkpoint is on disk). Recording an epoch that is already
    /// there changes nothing, so a restarted trial can replay its `metrics.jsonl`.
    pub fn record_epoch(&self, e: &Epoch) -> R<()> {
        self.write(|c| {
            let inserted = c.execute(
                "INSERT OR IGNORE INTO epochs (trial, epoch, lr, train_loss, train_acc, \
                 val_loss, val_acc, test_loss, test_acc, images_per_sec, seconds) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    e.trial,
                    e.epoch as i64,
                    e.lr,
                    e.train_loss,
                    e.train_acc,
                    e.val_loss,
                    e.val_acc,
                    e.test_loss,
                    e.test_acc,
                    e.images_per_sec,
                    e.epoch_seconds
                ],
            )?;
            if inserted == 0 {
                return Ok(());
            }
            c.execute(
                "UPDATE trials SET epochs_done = MAX(epochs_done, ?2), \
                 train_seconds = train_seconds + ?3, val_acc = ?4, test_acc = ?5 WHERE id = ?1",
                params![
                    e.trial,
                    (e.epoch + 1) as i64,
                    e.epoch_seconds,
                    e.score(),
                    e.test_acc
                ],
            )?;
            Ok(())
        })
    }

    /// Ends a trial's attempt with `status` (and an error message for faults).
    pub fn finish_trial(
        &self,
        id: TrialId,
        status: TrialStatus,
        error: Option<&str>,
        wall: f64,
    ) -> R<()> {
        self.write(|c| {
            c.execute(
                "UPDATE trials SET status = ?2, error = ?3, finished = ?4, \
                 wall_seconds = wall_seconds + ?5 WHERE id = ?1",
                params![id, status.as_str(), error, now(), wall],
            )?;
            Ok(())
        })
    }

    /// The process that runs the trial now.
    pub(crate) fn set_pid(&self, id: TrialId, pid: u32) -> R<()> {
        self.write(|c| {
            c.execute(
                "UPDATE trials SET pid = ?2 WHERE id = ?1",
                params![id, i64::from(pid)],
            )?;
            Ok(())
        })
    }

    /// The cluster job that runs the trial now.
    pub(crate) fn set_job(&self, id: TrialId, job: &str) -> R<()> {
        self.write(|c| {
            c.execute("UPDATE trials SET job = ?2 WHERE id = ?1", params![id, job])?;
            Ok(())
        })
    }

    /// Forgets a trial's progress (its epochs and scores) so that it starts again from
    /// nothing, with `batch_size`, as `pending`: an out-of-memory retry, or a run directory
    /// that cannot be resumed. Seconds already spent stay counted.
    pub(crate) fn reset_trial(&self, id: TrialId, batch_size: usize) -> R<()> {
        self.write(|c| {
            c.execute("DELETE FROM epochs WHERE trial = ?1", params![id])?;
            c.execute(
                "UPDATE trials SET status = 'pending', batch_size = ?2, epochs_done = 0, \
                 val_acc = NULL, test_acc = NULL WHERE id = ?1",
                params![id, batch_size as i64],
            )?;
            Ok(())
        })
    }

    /// Network size, written once by the trial process.
    pub fn set_size(&self, id: TrialId, parameters: i64, multiply_adds: i64) -> R<()> {
        self.write(|c| {
            c.execute(
                "UPDATE trials SET parameters = ?2, multiply_adds = ?3 WHERE id = ?1",
                params![id, parameters, multiply_adds],
            )?;
            Ok(())
        })
    }

    /// ASHA promotion: a done trial continues to `budget` epochs at rung `rung`.
    pub fn promote(&self, id: TrialId, rung: usize, budget: usize) -> R<()> {
        self.write(|c| {
            c.execute(
                "UPDATE trials SET status = 'pending', rung = ?2, budget = ?3 \
                 WHERE id = ?1 AND status = 'done'",
                params![id, rung as i64, budget as i64],
            )?;
            Ok(())
        })
    }

    /// Back to pending: a crashed attempt to be retried (one more crash), or, with `forgive`, a
    /// trial stopped by an interrupt or left running by a killed driver (that attempt does not
    /// count at all).
    pub(crate) fn requeue(&self, id: TrialId, error: Option<&str>, forgive: bool) -> R<()> {
        self.write(|c| {
            c.execute(
                "UPDATE trials SET status = 'pending', error = ?2, \
                 attempts = CASE WHEN ?3 THEN MAX(attempts - 1, 0) ELSE attempts END, \
                 crashes = CASE WHEN ?3 THEN crashes ELSE crashes + 1 END \
                 WHERE id = ?1",
                params![id, error, forgive],
            )?;
            Ok(())
        })
    }

    /// Back to pending, its crashes forgotten: a failed or out-of-memory trial retried after
    /// its cause was fixed (it continues from its run directory).
    pub(crate) fn retry(&self, id: TrialId) -> R<()> {
        self.write(|c| {
            c.execute(
                "UPDATE trials SET status = 'pending', error = NULL, crashes = 0 \
                 WHERE id = ?1 AND status IN ('failed', 'oom')",
                params![id],
            )?;
            Ok(())
        })
    }

    /// Every trial's finished epochs, in order.
    pub(crate) fn all_epochs(&self) -> R<Epochs> {
        let mut out = Epochs::new();
        for e in self.query_epochs("ORDER BY trial, epoch", [])? {
            out.entry(e.trial).or_default().push(e);
        }
        Ok(out)
    }

    /// The epochs of a trial, in order.
    pub fn epochs(&self, trial: TrialId) -> R<Vec<Epoch>> {
        self.query_epochs("WHERE trial = ?1 ORDER BY epoch", params![trial])
    }

    fn query_epochs(&self, tail: &str, p: impl rusqlite::Params) -> R<Vec<Epoch>> {
        let mut st = self
            .conn
            .prepare(&format!(
                "SELECT trial, epoch, lr, train_loss, train_acc, val_loss, val_acc, test_loss, \
                 test_acc, images_per_sec, seconds FROM epochs {tail}"
            ))
            .map_err(self.sql())?;
        let rows = st
            .query_map(p, |r| {
                Ok(Epoch {
                    trial: r.get(0)?,
                    metrics: EpochMetrics {
                        epoch: r.get::<_, i64>(1)? as usize,
                        lr: r.get(2)?,
                        train_loss: r.get(3)?,
                        train_acc: r.get(4)?,
                        val_loss: r.get(5)?,
                        val_acc: r.get(6)?,
                        test_loss: r.get(7)?,
                        test_acc: r.get(8)?,
                        images_per_sec: r.get(9)?,
                        epoch_seconds: r.get(10)?,
                    },
                })
            })
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(rows)
    }

    /// Appends a line to the event log.
    pub fn event(&self, trial: Option<TrialId>, message: &str) -> R<()> {
        self.write(|c| {
            c.execute(
                "INSERT INTO events (at, trial, message) VALUES (?1, ?2, ?3)",
                params![now(), trial, message],
            )?;
            Ok(())
        })
    }

    /// The event log: (time, trial, message).
    pub fn events(&self) -> R<Vec<(f64, Option<TrialId>, String)>> {
        let mut st = self
            .conn
            .prepare("SELECT at, trial, message FROM events ORDER BY id")
            .map_err(self.sql())?;
        let rows = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(hash: &str) -> Candidate {
        Candidate {
            name: format!("c{hash}"),
            origin: "test".into(),
            family: "fam".into(),
            spec_yaml: "name: x".into(),
            overrides: [("beta".to_string(), 0.5)].into_iter().collect(),
            features: vec![0.5, 1.0],
            spec_hash: "s".into(),
            topo_hash: hash.into(),
            contraction: Some(0.5),
            asymptotic: None,
            reference: false,
            arch: None,
        }
    }

    #[test]
    fn trials_move_through_their_states_and_epochs_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        let e = s.create_experiment("x", "a: 1", "{}").unwrap();
        let (c1, new1) = s.insert_candidate(e, 0, &cand("h1")).unwrap();
        let (c2, new2) = s.insert_candidate(e, 1, &cand("h1")).unwrap();
        assert!(new1 && !new2 && c1 == c2, "same topology, same candidate");
        let t = s
            .insert_trial(
                e,
                &NewTrial {
                    candidate: c1,
                    phase: Phase::Search,
                    seed: 7,
                    budget: 1,
                    max_budget: 4,
                    rung: 0,
                    batch_size: 64,
                },
            )
            .unwrap();
        s.start_trial(t, "cpu").unwrap();
        let ep = Epoch {
            trial: t,
            metrics: EpochMetrics {
                epoch: 0,
                lr: 0.1,
                train_loss: 2.0,
                train_acc: 0.2,
                val_loss: Some(1.9),
                val_acc: Some(0.3),
                test_loss: Some(1.8),
                test_acc: Some(0.31),
                images_per_sec: 100.0,
                epoch_seconds: 2.5,
            },
        };
        s.record_epoch(&ep).unwrap();
        s.record_epoch(&ep).unwrap();
        s.finish_trial(t, TrialStatus::Done, None, 3.0).unwrap();
        let row = s.trial(t).unwrap();
        assert_eq!(
            (row.status, row.epochs_done, row.attempts, row.score),
            (TrialStatus::Done, 1, 1, Some(0.3))
        );
        assert_eq!(row.dir, format!("trials/{:04}", t.0));
        s.promote(t, 1, 2).unwrap();
        let row = s.trial(t).unwrap();
        assert_eq!(
            (row.status, row.rung, row.budget),
            (TrialStatus::Pending, 1, 2)
        );
        assert_eq!(s.epochs(t).unwrap(), vec![ep]);
        assert_eq!(
            s.trial(t).unwrap().train_seconds,
            2.5,
            "a replayed epoch counts once"
        );
        s.reset_trial(t, 32).unwrap();
        let row = s.trial(t).unwrap();
        assert_eq!((row.epochs_done, row.batch_size, row.score), (0, 32, None));
        assert!(s.epochs(t).unwrap().is_empty());
        let stored = s.candidate(c1).unwrap();
        assert_eq!(
            stored.row,
            cand("h1"),
            "a candidate reads back as it was written"
        );
        // Reopening keeps everything (and does not re-create the schema).
        drop(s);
        let s = Store::open_existing(&dir.path().join("s.db")).unwrap();
        assert_eq!(s.trials().unwrap().len(), 1);
        assert_eq!(s.candidates().unwrap().len(), 1);
    }

    #[test]
    fn a_version_1_store_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        {
            let c = Connection::open(&p).unwrap();
            c.execute_batch(SCHEMA_V1).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute_batch(
                "INSERT INTO experiments (name, config_yaml, config_json, created, status) \
                 VALUES ('x', '', '{}', 0, 'done');
                 INSERT INTO candidates (experiment, name, origin, spec_yaml, spec_hash, \
                 topo_hash, params_json) VALUES (1, 'gd', 'spec', 'name: gd', 's', 't', '{}');
                 INSERT INTO pool (candidate, position, family, features_json) \
                 VALUES (1, 0, 'f', '[]');
                 INSERT INTO trials (experiment, candidate, phase, seed, budget, max_budget, \
                 status, batch_size, dir, created) \
                 VALUES (1, 1, 'search', 0, 1, 1, 'done', 8, 'trials/0001', 0);
                 INSERT INTO epochs VALUES (1, 0, 0.1, 2.0, 0.2, 1.9, 0.3, 1.8, 0.31, 9.0, 1.0);",
            )
            .unwrap();
        }
        let s = Store::open(&p).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        // Version 3: a trial row has a cluster job id, none for old rows.
        assert_eq!(s.trial(TrialId(1)).unwrap().job, None);
        s.set_job(TrialId(1), "4242").unwrap();
        assert_eq!(s.trial(TrialId(1)).unwrap().job.as_deref(), Some("4242"));
        let e = s.epochs(TrialId(1)).unwrap();
        assert_eq!(
            (e.len(), e[0].val_acc, e[0].test_acc),
            (1, Some(0.3), Some(0.31))
        );
        let c = s.candidate(CandidateId(1)).unwrap();
        assert!(!c.reference);
        // Version 4: a candidate has no architecture of its own unless its entry gave one.
        assert_eq!(c.arch, None);
        // The migrated table takes epochs without a test accuracy.
        let mut m = e[0].clone();
        m.metrics.epoch = 1;
        m.metrics.test_acc = None;
        m.metrics.test_loss = None;
        s.record_epoch(&m).unwrap();
        assert_eq!(s.epochs(TrialId(1)).unwrap()[1].test_acc, None);
    }

    #[test]
    fn a_malformed_row_is_an_error_not_a_default() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("s.db")).unwrap();
        let e = s.create_experiment("x", "", "{}").unwrap();
        let (c, _) = s.insert_candidate(e, 0, &cand("h")).unwrap();
        s.write(|conn| {
            conn.execute(
                "UPDATE candidates SET params_json = '{\"beta\": ' WHERE id = ?1",
                params![c],
            )
        })
        .unwrap();
        let err = s.candidate(c).unwrap_err().to_string();
        assert!(err.contains("parameter values"), "{err}");
        assert!(s.candidates().is_err());
    }

    #[test]
    fn a_newer_schema_is_refused_and_a_missing_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        {
            let c = Connection::open(&p).unwrap();
            c.pragma_update(None, "user_version", 99).unwrap();
        }
        let e = Store::open(&p).err().unwrap().to_string();
        assert!(e.contains("schema version 99"), "{e}");
        let e = Store::open_existing(&dir.path().join("none.db"))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("no search database"), "{e}");
    }

    #[test]
    fn concurrent_writers_do_not_fail_with_locked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let s = Store::open(&p).unwrap();
        let e = s.create_experiment("x", "", "{}").unwrap();
        let (c, _) = s.insert_candidate(e, 0, &cand("h")).unwrap();
        let ids: Vec<TrialId> = (0..4)
            .map(|i| {
                s.insert_trial(
                    e,
                    &NewTrial {
                        candidate: c,
                        phase: Phase::Search,
                        seed: i,
                        budget: 50,
                        max_budget: 50,
                        rung: 0,
                        batch_size: 8,
                    },
                )
                .unwrap()
            })
            .collect();
        let threads: Vec<_> = ids
            .iter()
            .map(|&id| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let s = Store::open(&p).unwrap();
                    for epoch in 0..50 {
                        s.record_epoch(&Epoch {
                            trial: id,
                            metrics: EpochMetrics {
                                epoch,
                                lr: 0.1,
                                train_loss: 1.0,
                                train_acc: 0.5,
                                val_loss: None,
                                val_acc: None,
                                test_loss: Some(1.0),
                                test_acc: Some(0.5),
                                images_per_sec: 1.0,
                                epoch_seconds: 0.01,
                            },
                        })
                        .unwrap();
                        s.event(Some(id), "epoch").unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for id in ids {
            assert_eq!(s.epochs(id).unwrap().len(), 50);
            assert_eq!(s.trial(id).unwrap().epochs_done, 50);
        }
        assert_eq!(s.events().unwrap().len(), 200);
    }
}
