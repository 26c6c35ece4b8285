//! Errors of the data layer. Each names the file (for a member of an archive,
//! `archive.tar.gz!member`), the byte offset where reading went wrong, and what to do.

use std::path::PathBuf;

/// What can go wrong while locating, downloading, reading or batching a data set.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused (file missing, permission, disk full...).
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file ends early: a whole number of records (or the size the header announces) is missing.
    #[error(
        "{file}: truncated at byte {offset}: {detail}; the file is incomplete, delete it and \
         download it again (optarch downloads a missing data set by itself)"
    )]
    Truncated {
        file: String,
        offset: u64,
        detail: String,
    },

    /// The bytes are there but are not what the format says (bad magic, bad gzip stream,
    /// a label out of range...).
    #[error(
        "{file}: corrupt at byte {offset}: {detail}; the file is damaged or is not this data set, \
         delete it and download it again"
    )]
    Corrupt {
        file: String,
        offset: u64,
        detail: String,
    },

    /// The data set is not at any of the places looked at, and downloading was not allowed.
    #[error("{what} not found; looked in: {looked}. {hint}")]
    Missing {
        what: String,
        looked: String,
        hint: String,
    },

    /// The HTTP transfer failed.
    #[error(
        "download of {url} failed: {reason}; check the network, or set OPTARCH_DATA_MIRROR to a \
         mirror holding the same files, or put the files in place by hand"
    )]
    Download { url: String, reason: String },

    /// The downloaded bytes do not have the published checksum; nothing was kept.
    #[error(
        "download of {url}: md5 {found} does not match the published {expected}; the file was \
         discarded (a broken transfer or a wrong mirror), try again or use another mirror"
    )]
    Checksum {
        url: String,
        expected: String,
        found: String,
    },

    /// A parameter makes no sense (empty batch size, validation part larger than the set...).
    #[error("{0}")]
    Invalid(String),

    /// libtorch refused an operation.
    #[error("torch: {0}")]
    Torch(#[from] tch::TchError),
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn truncated(
        file: impl Into<String>,
        offset: u64,
        detail: impl Into<String>,
    ) -> Self {
        DataError::Truncated {
            file: file.into(),
            offset,
            detail: detail.into(),
        }
    }

    pub(crate) fn corrupt(file: impl Into<String>, offset: u64, detail: impl Into<String>) -> Self {
        DataError::Corrupt {
            file: file.into(),
            offset,
            detail: detail.into(),
        }
    }

    /// The byte offset the error points at, where there is one.
    pub fn offset(&self) -> Option<u64> {
        match self {
            DataError::Truncated { offset, .. } | DataError::Corrupt { offset, .. } => {
                Some(*offset)
            }
            _ => None,
        }
    }
}

/// Results of the data layer.
pub type Result<T, E = DataError> = std::result::Result<T, E>;
