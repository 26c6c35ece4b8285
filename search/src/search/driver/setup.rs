//! Making a search directory, opening one again, the data prepared once for every trial, and
//! the trials a killed driver left running.

use super::lock::{self, DirLock};
use super::{io, SearchError, R};
use crate::search::config::{self, SearchConfig};
use crate::search::executor::{process, Executor};
use crate::search::ids::ExperimentId;
use crate::search::pool;
use crate::search::store::{Store, TrialStatus};
use crate::search::trial;
use crate::train::{checkpoint, DataConfig};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An open search: its directory, store, configuration and experiment.
pub(super) struct Opened {
    pub dir: PathBuf,
    pub store: Store,
    pub cfg: SearchConfig,
    pub exp: ExperimentId,
}

/// Creates the search of the configuration at `path` in `out` (default `runs/search/<name>`),
/// with `data` replacing its data path: the pool built, the store with every candidate.
///
/// Atomic: the directory is made under a temporary name beside its own (its lock taken, the
/// configuration and the store with the whole pool written), then renamed into place. A kill
/// at any moment leaves either no search or a whole one, never a half-made directory.
pub(super) fn create(
    path: &Path,
    out: Option<&Path>,
    data: Option<&Path>,
    executor: &config::ExecutorOverrides,
) -> R<(Opened, DirLock)> {
    let (text, mut cfg) = read(path, data)?;
    executor.apply(&mut cfg)?;
    let dir = search_dir(&cfg, out);
    check_free(&dir)?;
    let pool = pool::build(&cfg, &base_of(path))?;
    let (parent, name) = match (dir.parent(), dir.file_name()) {
        (Some(p), Some(n)) => (
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p.to_path_buf()
            },
            n.to_string_lossy().into_owned(),
        ),
        _ => return Err(SearchError::NotEmpty(dir)),
    };
    std::fs::create_dir_all(&parent).map_err(io(&parent))?;
    remove_stale(&parent, &name);
    let tmp = parent.join(format!(".{name}{CREATING}{}", std::process::id()));
    std::fs::create_dir(&tmp).map_err(io(&tmp))?;
    let built = build(&tmp, &text, &cfg, &pool).and_then(|lock| {
        // An empty directory of that name (made by hand) is replaced; anything else stays.
        if dir.is_dir() && std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_none()) {
            let _ = std::fs::remove_dir(&dir);
        }
        checkpoint::point("rename", &dir)?;
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => Ok(lock),
            Err(e) if dir.join(DB).exists() => {
                drop(e);
                Err(SearchError::Exists(dir.clone()))
            }
            Err(e) if dir.exists() => {
                drop(e);
                Err(SearchError::NotEmpty(dir.clone()))
            }
            Err(e) => Err(io(&dir)(e)),
        }
    });
    let lock = match built {
        Ok(lock) => lock,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    checkpoint::sync(&parent)?;
    let (store, exp, _) = Store::open_search(&dir)?;
    Ok((
        Opened {
            dir,
            store,
            cfg,
            exp: exp.id,
        },
        lock,
    ))
}

/// The folder a configuration's relative paths start from.
fn base_of(path: &Path) -> PathBuf {
    path.parent().unwrap_or(Path::new(".")).to_path_buf()
}

/// Reads and checks the configuration at `path`, with `data` replacing its data path (else
/// its own, relative to the file): its text and its value.
/// The configuration at `path` with the command line's overrides, checked.
pub(super) fn configured(
    path: &Path,
    data: Option<&Path>,
    executor: &config::ExecutorOverrides,
) -> R<SearchConfig> {
    let (_, mut cfg) = read(path, data)?;
    executor.apply(&mut cfg)?;
    Ok(cfg)
}

/// Where a new search in `out` (default `runs/search/<name>`) lives.
pub(super) fn search_dir(cfg: &SearchConfig, out: Option<&Path>) -> PathBuf {
    out.map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("runs/search").join(&cfg.name))
}

fn read(path: &Path, data: Option<&Path>) -> R<(String, SearchConfig)> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    let mut cfg = config::parse(path, &text)?;
    if let Some(d) = data {
        cfg.train.data.path = Some(d.to_path_buf());
    } else if let Some(p) = &cfg.train.data.path {
        cfg.train.data.path = Some(base_of(path).join(p));
    }
    Ok((text, cfg))
}

/// What a configuration would search, found without making anything.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Preview {
    pub name: String,
    /// The candidates, in pool order.
    pub candidates: Vec<PreviewCandidate>,
    /// The candidate the others' sizes are compared with: the first reference in pool order,
    /// else the first candidate.
    pub size_base: Option<String>,
    /// Candidates whose parameter count is more than [`MATCHED`] away from the base's, or that
    /// cannot be built, with why: a comparison at "equal cost" that is not.
    pub unmatched: Vec<String>,
    /// Generated recurrences pruned by consistency or stability.
    pub pruned: usize,
    /// Candidates merged into an earlier one with the same topology.
    pub merged: usize,
    /// Each merge: `NAME: same topology as OTHER`.
    pub merges: Vec<String>,
    /// Spec candidates that diverge on quadratics, with why.
    pub divergent: Vec<String>,
    pub rungs: Vec<usize>,
    /// Epochs the whole search is expected to train (search, baseline, finals).
    pub epochs: u64,
}

/// How far a candidate's parameter count may be from the base's and still count as matched
/// (docs/SCIENCE.md's protocol: ± 5 %).
pub const MATCHED: f64 = 0.05;

/// A candidate of a [`Preview`], with the size of the network it trains.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PreviewCandidate {
    pub name: String,
    pub parameters: Option<i64>,
    /// Per image.
    pub multiply_adds: Option<i64>,
    /// Its parameter count relative to the base's (0.012 is 1.2 % more).
    pub parameters_vs_base: Option<f64>,
}

/// The parameter count and multiply-adds per image of `c`'s network, built on the CPU in the
/// configuration's data shape as its trials would build it.
fn size(cfg: &SearchConfig, c: &crate::search::candidate::Candidate) -> Result<(i64, i64), String> {
    let train = trial::candidate_train(cfg, c);
    let kind = train.data.dataset;
    let [channels, height, width] = kind.shape();
    let built = crate::train::build_for(
        &trial::candidate_spec(c),
        &train,
        kind.classes(),
        channels,
        tch::Device::Cpu,
    )
    .map_err(|e| e.to_string())?;
    let multiply_adds = built
        .net
        .multiply_adds(channels as i64, height as i64, width as i64)
        .map_err(|e| e.to_string())?;
    Ok((
        optarch_core::exec::parameter_count(&built.vs),
        multiply_adds,
    ))
}

/// Checks the configuration at `path` and builds its pool: what `optarch search --check`
/// shows.
pub(super) fn preview(path: &Path) -> R<Preview> {
    let (_, cfg) = read(path, None)?;
    let pool = pool::build(&cfg, &base_of(path))?;
    let rungs = cfg.budget.rungs();
    let sizes: Vec<_> = pool.items.iter().map(|c| size(&cfg, c)).collect();
    let base = pool
        .items
        .iter()
        .position(|c| c.reference)
        .or((!pool.items.is_empty()).then_some(0));
    // The base's name and parameter count, when it could be built.
    let base_size = base.and_then(|i| match sizes[i] {
        Ok((p, _)) if p > 0 => Some((pool.items[i].name.as_str(), p)),
        _ => None,
    });
    let mut unmatched = Vec::new();
    let mut candidates = Vec::new();
    for (c, s) in pool.items.iter().zip(&sizes) {
        let vs = match (s, base_size) {
            (Ok((p, _)), Some((_, b))) => Some(*p as f64 / b as f64 - 1.0),
            _ => None,
        };
        match (s, vs, base_size) {
            (Err(e), _, _) => unmatched.push(format!("{} cannot be built: {e}", c.name)),
            (Ok((p, _)), Some(v), Some((name, b))) if v.abs() > MATCHED => unmatched.push(format!(
                "{} has {p} parameters, {:+.1} % of {name}'s {b}: outside the ± {:.0} % of \
                     a comparison at equal cost (give its entry an `arch:` that matches)",
                c.name,
                100.0 * v,
                100.0 * MATCHED
            )),
            _ => {}
        }
        candidates.push(PreviewCandidate {
            name: c.name.clone(),
            parameters: s.as_ref().ok().map(|s| s.0),
            multiply_adds: s.as_ref().ok().map(|s| s.1),
            parameters_vs_base: vs,
        });
    }
    Ok(Preview {
        name: cfg.name.clone(),
        size_base: base.map(|i| pool.items[i].name.clone()),
        unmatched,
        candidates,
        pruned: pool.pruned.len(),
        merged: pool.duplicates.len(),
        merges: pool
            .duplicates
            .iter()
            .map(|d| format!("{}: same topology as {}", d.name, d.into))
            .collect(),
        divergent: pool
            .divergent
            .iter()
            .map(|d| format!("{} {}", d.name, d.reason))
            .collect(),
        epochs: super::display::estimate(&cfg, &rungs, pool.items.len()),
        rungs,
    })
}

/// What `optarch search CONFIG --dry-run` prints: for a Slurm search, the batch scripts of
/// the first trials (up to `executor.max_in_flight`, at most 3 written out: the others differ
/// only in the trial's number); for a local one, a line saying where trials would run.
pub(super) fn dry_run(
    path: &Path,
    out: Option<&Path>,
    executor: &config::ExecutorOverrides,
) -> R<String> {
    let cfg = configured(path, None, executor)?;
    let pool = pool::build(&cfg, &base_of(path))?;
    let dir = search_dir(&cfg, out);
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    let first = pool
        .items
        .len()
        .min(cfg.budget.trials)
        .min(cfg.executor.max_in_flight);
    let mut text = String::new();
    match cfg.executor.kind {
        config::ExecutorKind::Local => {
            text.push_str(&format!(
                "# executor: local: {} candidates, trials as processes on this machine                  (execution.workers = {}); nothing would be submitted\n",
                pool.items.len(),
                cfg.execution.workers
            ));
        }
        config::ExecutorKind::Slurm => {
            let optarch = cfg
                .executor
                .optarch
                .clone()
                .or_else(|| std::env::current_exe().ok())
                .unwrap_or_else(|| PathBuf::from("optarch"));
            let scripts = crate::search::executor::slurm::Scripts {
                cfg: cfg.executor.clone(),
                search: cfg.name.clone(),
                optarch,
            };
            let root = match &cfg.executor.shared_dir {
                Some(s) => s.join(dir.file_name().unwrap_or_default()),
                None => dir.clone(),
            };
            text.push_str(&format!(
                "# executor: slurm: {} candidates; the first {first} trial(s) would be submitted \
                 at once (executor.max_in_flight = {}), one job each; run directories under \
                 {}, the store in {}\n",
                pool.items.len(),
                cfg.executor.max_in_flight,
                root.join("trials").display(),
                dir.join(DB).display()
            ));
            for i in 1..=first.min(3) {
                let id = crate::search::ids::TrialId(i as i64);
                let run = root.join(format!("trials/{i:04}"));
                text.push_str(&format!(
                    "\n# ---- {}/job.sh (trial {i}) ----\n",
                    run.display()
                ));
                text.push_str(&scripts.script(id, &run));
            }
            if first > 3 {
                text.push_str(&format!(
                    "\n# ... and {} more like these (trials 4 to {first})\n",
                    first - 3
                ));
            }
        }
    }
    Ok(text)
}

/// The store file of a search directory.
const DB: &str = "search.db";
/// The infix of a search directory being made: `.NAME.creating-PID`.
const CREATING: &str = ".creating-";

/// Refuses a directory that holds a search already (use --resume) or anything else.
fn check_free(dir: &Path) -> R<()> {
    if dir.join(DB).exists() {
        return Err(SearchError::Exists(dir.to_path_buf()));
    }
    if std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(SearchError::NotEmpty(dir.to_path_buf()));
    }
    Ok(())
}

/// Removes what drivers that died while making a search directory named `name` in `parent`
/// left (their processes gone).
fn remove_stale(parent: &Path, name: &str) {
    let prefix = format!(".{name}{CREATING}");
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = file.strip_prefix(&prefix) else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Fills the new search directory `tmp`: its lock, the configuration's text, the store with
/// the experiment, every candidate and the pool's events; everything synced.
fn build(tmp: &Path, text: &str, cfg: &SearchConfig, pool: &pool::Pool) -> R<DirLock> {
    let lock = lock::acquire(tmp)?;
    checkpoint::write_atomic(&tmp.join("config.yaml"), text.as_bytes())?;
    checkpoint::point("store", &tmp.join(DB))?;
    let store = Store::open(&tmp.join(DB))?;
    let json = serde_json::to_string(cfg).map_err(SearchError::Encode)?;
    let exp = store.create_experiment(&cfg.name, text, &json)?;
    for (i, c) in pool.items.iter().enumerate() {
        store.insert_candidate(exp, i, c)?;
    }
    for d in &pool.pruned {
        store.event(None, &format!("pruned {}: {}", d.name, d.reason))?;
    }
    if !cfg.theory.skip_divergent {
        for d in &pool.divergent {
            store.event(None, &format!("warning: {} {}", d.name, d.reason))?;
        }
    }
    for d in &pool.duplicates {
        store.event(
            None,
            &format!("merged {}: same topology as {}", d.name, d.into),
        )?;
    }
    store.event(
        None,
        &format!(
            "pool: {} candidates ({} generated recurrences pruned, {} duplicate topologies merged)",
            pool.items.len(),
            pool.pruned.len(),
            pool.duplicates.len()
        ),
    )?;
    // Closed (its journal folded in) before the folder is renamed.
    store.close()?;
    checkpoint::sync(tmp)?;
    Ok(lock)
}

/// Takes the lock of the existing search in `dir`, to continue it.
pub(super) fn lock_existing(dir: &Path) -> R<DirLock> {
    if !dir.join(DB).is_file() && dir.join(checkpoint::STATE).is_file() {
        return Err(SearchError::NotASearch {
            dir: dir.to_path_buf(),
            training_run: true,
        });
    }
    if !dir.join(DB).is_file() {
        return Err(SearchError::NotASearch {
            dir: dir.to_path_buf(),
            training_run: false,
        });
    }
    lock::acquire(dir)
}

/// Queues again the trials that failed or ran out of memory (`--retry-failed`), after their
/// cause was fixed: each continues from its last finished epoch.
pub(super) fn retry_failed(store: &Store) -> R<usize> {
    let mut n = 0;
    for t in store.trials()? {
        if matches!(t.status, TrialStatus::Failed | TrialStatus::Oom) {
            store.retry(t.id)?;
            store.event(Some(t.id), "queued again by --retry-failed")?;
            n += 1;
        }
    }
    Ok(n)
}

/// Opens the search in `dir` again.
pub(super) fn reopen(dir: &Path) -> R<Opened> {
    let (store, exp, cfg) = Store::open_search(dir)?;
    Ok(Opened {
        dir: dir.to_path_buf(),
        store,
        cfg,
        exp: exp.id,
    })
}

/// Writes the data subset every trial reads into `DIR/data` (CIFAR-10 only): one gzip and tar
/// pass for the whole search instead of one per trial.
pub(super) fn prepare_data(cfg: &SearchConfig, dir: &Path) -> R<()> {
    if !cfg.prepares_data() || trial::prepared_data(dir).is_some() {
        return Ok(());
    }
    let data = DataConfig {
        val: 0,
        ..cfg.train.data.clone()
    };
    let (train, _, test) = data.load(cfg.train.run.seed)?;
    let out = trial::data_dir(dir);
    std::fs::create_dir_all(&out).map_err(io(&out))?;
    let per = train.image_bytes();
    let record = |ds: &crate::data::Dataset, i: usize| -> Vec<u8> {
        let mut r = Vec::with_capacity(per + 1);
        r.push(ds.labels.get(i).copied().unwrap_or(0) as u8);
        r.extend_from_slice(ds.images.get(i * per..(i + 1) * per).unwrap_or(&[]));
        r
    };
    let n = train.len();
    let chunk = n.div_ceil(5).max(1);
    for b in 0..5 {
        let p = out.join(format!("data_batch_{}.bin", b + 1));
        let bytes: Vec<u8> = (b * chunk..((b + 1) * chunk).min(n))
            .flat_map(|i| record(&train, i))
            .collect();
        std::fs::write(&p, bytes).map_err(io(&p))?;
    }
    let tmp = out.join("test_batch.bin.tmp");
    let bytes: Vec<u8> = (0..test.len()).flat_map(|i| record(&test, i)).collect();
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    let fin = out.join("test_batch.bin");
    std::fs::rename(&tmp, &fin).map_err(io(&fin))
}

/// True while process `pid` is a trial process of the search in `dir` (canonical).
fn trial_alive(pid: i64, dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    // A spawned trial runs `optarch ... trial --dir DIR ...`; a forked one keeps its server's
    // command line, `optarch ... trial-server --dir DIR`.
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
        args.iter().any(|a| *a == b"trial" || *a == b"trial-server")
            && args.contains(&dir.as_os_str().as_bytes())
    })
}

/// Trials a killed driver left `running`: cluster jobs are re-attached to (`ex` tracks them
/// again, collecting those that ended meanwhile); local processes are waited for (they notice
/// that the driver is gone within one batch), and their trials queued again.
pub(super) fn recover(store: &Store, dir: &Path, ex: &mut dyn Executor) -> R<()> {
    for t in store.trials()? {
        if t.status != TrialStatus::Running {
            continue;
        }
        if let Some(job) = &t.job {
            if ex.adopt(t.id, job, t.attempts, &dir.join(&t.dir)) {
                store.event(
                    Some(t.id),
                    &format!("re-attached to Slurm job {job} after the driver stopped"),
                )?;
                continue;
            }
        }
        if let Some(pid) = t.pid {
            let t0 = Instant::now();
            while trial_alive(pid, dir) && t0.elapsed() < Duration::from_secs(60) {
                std::thread::sleep(Duration::from_millis(100));
            }
            if trial_alive(pid, dir) {
                if let Ok(pid) = u32::try_from(pid) {
                    process::kill(pid);
                }
            }
        }
        store.requeue(t.id, Some("the driver stopped while it ran"), true)?;
        store.event(Some(t.id), "requeued after the driver stopped")?;
    }
    Ok(())
}
