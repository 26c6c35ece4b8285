//! Data sets for training: CIFAR-10, CIFAR-100 and MNIST read from their official files,
//! located (explicit path, `OPTARCH_DATA`, or a download with checksum), split into seeded
//! train/validation parts, normalised per channel, augmented on the device and batched.
//!
//! ```no_run
//! use optarch_search::data::{load, Augment, DatasetKind, LoadOptions, Loader, ValSize};
//! # fn main() -> Result<(), optarch_search::data::DataError> {
//! let sets = load(DatasetKind::Cifar10, &LoadOptions::default())?;
//! let split = sets.train.split(ValSize::Count(5000), 42)?;
//! let norm = split.train.channel_stats();
//! let loader = Loader::new(&split.train, 128, tch::Device::Cpu)?
//!     .shuffled(42)
//!     .augmented(Augment::default())
//!     .normalized(norm);
//! for batch in loader.epoch(0) {
//!     let batch = batch?;
//!     assert_eq!(batch.images.size()[1..], [3, 32, 32]);
//! }
//! # Ok(()) }
//! ```
//!
//! See `docs/DATA.md`.

mod augment;
mod batches;
mod cifar;
mod dataset;
mod download;
mod error;
mod mnist;
mod read;
pub(crate) mod rng;
pub mod synthetic;

use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use augment::{Augment, Draw};
pub use batches::{Batch, Batches, Loader};
pub use cifar::{read_cifar10, read_cifar100, Cifar100Labels, TrainTest, CIFAR_IMAGE_BYTES};
pub use dataset::{Dataset, Normalization, Split, ValSize};
pub use download::hex;
pub(crate) use download::MNIST_MD5;
pub use download::{
    base_url, choose_base, download, fetch_all, md5_file, Remote, CIFAR100_ARCHIVE, CIFAR100_MD5,
    CIFAR10_ARCHIVE, CIFAR10_MD5, CIFAR_BASE, MNIST_BASE,
};
pub use error::{DataError, Result};
pub use mnist::{read_mnist, IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, MNIST_FILES};
pub use rng::SplitMix64;

/// Environment variable naming the data root (the folder holding `cifar-10-binary.tar.gz`,
/// `cifar-10-batches-bin/`, `mnist/`...).
pub const DATA_ENV: &str = "OPTARCH_DATA";

/// The data sets optarch reads. Reads and writes as its name (`cifar10`, `cifar100`,
/// `cifar100-coarse`, `mnist`) on the command line and in configurations.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
pub enum DatasetKind {
    Cifar10,
    Cifar100(Cifar100Labels),
    Mnist,
}

impl FromStr for DatasetKind {
    type Err = DataError;

    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().replace(['-', '_'], "").as_str() {
            "cifar10" => Ok(DatasetKind::Cifar10),
            "cifar100" | "cifar100fine" => Ok(DatasetKind::Cifar100(Cifar100Labels::Fine)),
            "cifar100coarse" => Ok(DatasetKind::Cifar100(Cifar100Labels::Coarse)),
            "mnist" => Ok(DatasetKind::Mnist),
            _ => Err(DataError::Invalid(format!(
                "unknown data set `{s}`: expected cifar10, cifar100, cifar100-coarse or mnist"
            ))),
        }
    }
}

impl TryFrom<String> for DatasetKind {
    type Error = DataError;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<DatasetKind> for String {
    fn from(k: DatasetKind) -> String {
        k.to_string()
    }
}

impl clap::ValueEnum for DatasetKind {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            DatasetKind::Cifar10,
            DatasetKind::Cifar100(Cifar100Labels::Fine),
            DatasetKind::Cifar100(Cifar100Labels::Coarse),
            DatasetKind::Mnist,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

impl std::fmt::Display for DatasetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl DatasetKind {
    /// Its name: `cifar10`, `cifar100`, `cifar100-coarse` or `mnist`.
    pub fn name(&self) -> &'static str {
        match self {
            DatasetKind::Cifar10 => "cifar10",
            DatasetKind::Cifar100(Cifar100Labels::Fine) => "cifar100",
            DatasetKind::Cifar100(Cifar100Labels::Coarse) => "cifar100-coarse",
            DatasetKind::Mnist => "mnist",
        }
    }

    /// Images in the official training set.
    pub fn train_images(&self) -> usize {
        match self {
            DatasetKind::Mnist => 60_000,
            _ => 50_000,
        }
    }

    /// Images in the official test set.
    pub fn test_images(&self) -> usize {
        10_000
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        match self {
            DatasetKind::Cifar10 | DatasetKind::Mnist => 10,
            DatasetKind::Cifar100(Cifar100Labels::Fine) => 100,
            DatasetKind::Cifar100(Cifar100Labels::Coarse) => 20,
        }
    }

    /// Image shape (C, H, W).
    pub fn shape(&self) -> [usize; 3] {
        match self {
            DatasetKind::Mnist => [1, 28, 28],
            _ => [3, 32, 32],
        }
    }

    /// The files to download, with their published md5.
    pub fn remotes(&self) -> Vec<Remote> {
        match self {
            DatasetKind::Cifar10 => vec![Remote::new(CIFAR10_ARCHIVE, CIFAR10_MD5)],
            DatasetKind::Cifar100(_) => vec![Remote::new(CIFAR100_ARCHIVE, CIFAR100_MD5)],
            DatasetKind::Mnist => MNIST_MD5.iter().map(|(f, m)| Remote::new(f, m)).collect(),
        }
    }

    /// The official base URL.
    pub(crate) fn official_base(&self) -> &'static str {
        match self {
            DatasetKind::Mnist => MNIST_BASE,
            _ => CIFAR_BASE,
        }
    }
}

/// Where to look for a data set and whether to download it.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// An explicit location: the archive, the extracted folder, or a data root that holds them.
    /// When unset: `$OPTARCH_DATA`, else `~/.cache/optarch/data`.
    pub path: Option<PathBuf>,
    /// Download the official files into the data root when nothing is found.
    pub download: bool,
    /// A base URL replacing the official one (else `$OPTARCH_DATA_MIRROR`, else official).
    pub mirror: Option<String>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            path: None,
            download: true,
            mirror: None,
        }
    }
}

/// The data root used when no path is given: `$OPTARCH_DATA`, else
/// `$XDG_CACHE_HOME/optarch/data`, else `~/.cache/optarch/data`.
pub(crate) fn default_root() -> PathBuf {
    if let Some(p) = std::env::var_os(DATA_ENV).filter(|s| !s.is_empty()) {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("optarch").join("data")
}

/// Where `kind` is found under (or at) `place`, if anywhere: the archive or extracted folder
/// for CIFAR, the folder of the idx files for MNIST.
pub(crate) fn find_in(kind: DatasetKind, place: &Path) -> Option<PathBuf> {
    match kind {
        DatasetKind::Mnist => {
            let name = MNIST_FILES[0];
            [place.to_path_buf(), place.join("mnist")]
                .into_iter()
                .find(|d| mnist::find_idx(d, name).is_some())
        }
        DatasetKind::Cifar10 | DatasetKind::Cifar100(_) => {
            let layout = match kind {
                DatasetKind::Cifar100(l) => cifar::cifar100(l),
                _ => cifar::CIFAR10,
            };
            let archive = match kind {
                DatasetKind::Cifar10 => CIFAR10_ARCHIVE,
                _ => CIFAR100_ARCHIVE,
            };
            if place.is_file() {
                return Some(place.to_path_buf());
            }
            let first = layout.train[0];
            [
                place.join(layout.dir),
                place.to_path_buf(),
                place.join(archive),
            ]
            .into_iter()
            .find(|p| {
                if p.is_dir() {
                    p.join(first).is_file()
                } else {
                    p.is_file()
                }
            })
        }
    }
}

/// Finds `kind` (explicit path, else `$OPTARCH_DATA`, else the cache), downloading the
/// official files into that place when it holds nothing and `download` is set. Returns the
/// path to read.
pub fn locate(kind: DatasetKind, opts: &LoadOptions) -> Result<PathBuf> {
    let place = opts.path.clone().unwrap_or_else(default_root);
    if let Some(found) = find_in(kind, &place) {
        return Ok(found);
    }
    if !opts.download {
        return Err(DataError::Missing {
            what: format!("data set {kind}"),
            looked: place.display().to_string(),
            hint: format!(
                "give its path, set {DATA_ENV} to the folder holding it, or allow the download"
            ),
        });
    }
    if place.is_file() {
        return Err(DataError::Invalid(format!(
            "{} is a file but not a {kind} archive",
            place.display()
        )));
    }
    let dir = match kind {
        DatasetKind::Mnist => place.join("mnist"),
        _ => place.clone(),
    };
    let base = base_url(opts.mirror.as_deref(), kind.official_base());
    fetch_all(&dir, &base, &kind.remotes())?;
    find_in(kind, &place).ok_or_else(|| DataError::Missing {
        what: format!("data set {kind}"),
        looked: place.display().to_string(),
        hint: "the download finished but the files are not where expected".into(),
    })
}

/// Locates (and if needed downloads) `kind`, then reads its training and test sets.
pub fn load(kind: DatasetKind, opts: &LoadOptions) -> Result<TrainTest> {
    let path = locate(kind, opts)?;
    read(kind, &path)
}

/// Reads `kind` from `path` (an archive, an extracted folder or a folder containing them).
pub fn read(kind: DatasetKind, path: &Path) -> Result<TrainTest> {
    match kind {
        DatasetKind::Cifar10 => read_cifar10(path),
        DatasetKind::Cifar100(l) => read_cifar100(path, l),
        DatasetKind::Mnist => read_mnist(path),
    }
}
