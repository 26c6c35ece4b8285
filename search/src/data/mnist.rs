//! MNIST in the idx format (raw or gzipped): `train-images-idx3-ubyte`,
//! `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`.
//!
//! An idx file is a big-endian header (magic 2051 = 0x803 for images, with count, rows and
//! columns; 2049 = 0x801 for labels, with count) followed by one byte per pixel or label.

use std::path::{Path, PathBuf};

use super::cifar::TrainTest;
use super::dataset::Dataset;
use super::error::{DataError, Result};
use super::read::read_file_maybe_gz;

/// Magic number of an idx3 image file.
pub const IDX_IMAGES_MAGIC: u32 = 2051;
/// Magic number of an idx1 label file.
pub const IDX_LABELS_MAGIC: u32 = 2049;

/// The four file names (without `.gz`): train images, train labels, test images, test labels.
pub const MNIST_FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_be_bytes(b)
}

/// Parses an idx3 image file: returns (count, rows, columns, pixels).
pub(crate) fn parse_idx_images(bytes: &[u8], file: &str) -> Result<(usize, usize, usize, Vec<u8>)> {
    if bytes.len() < 16 {
        return Err(DataError::truncated(
            file,
            bytes.len() as u64,
            "the 16-byte idx3 header is incomplete",
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != IDX_IMAGES_MAGIC {
        return Err(DataError::corrupt(
            file,
            0,
            format!("magic number {magic} is not {IDX_IMAGES_MAGIC} (idx3 images)"),
        ));
    }
    let (n, rows, cols) = (
        be_u32(bytes, 4) as usize,
        be_u32(bytes, 8) as usize,
        be_u32(bytes, 12) as usize,
    );
    if rows == 0 || cols == 0 || rows > 4096 || cols > 4096 {
        return Err(DataError::corrupt(
            file,
            8,
            format!("implausible image size {rows}×{cols}"),
        ));
    }
    let want = n
        .checked_mul(rows * cols)
        .and_then(|p| p.checked_add(16))
        .ok_or_else(|| DataError::corrupt(file, 4, format!("implausible count {n}")))?;
    check_len(bytes, want, file, &format!("{n} images of {rows}×{cols}"))?;
    Ok((n, rows, cols, bytes[16..].to_vec()))
}

/// Parses an idx1 label file, checking every label is below `classes`.
pub(crate) fn parse_idx_labels(bytes: &[u8], file: &str, classes: usize) -> Result<Vec<i64>> {
    if bytes.len() < 8 {
        return Err(DataError::truncated(
            file,
            bytes.len() as u64,
            "the 8-byte idx1 header is incomplete",
        ));
    }
    let magic = be_u32(bytes, 0);
    if magic != IDX_LABELS_MAGIC {
        return Err(DataError::corrupt(
            file,
            0,
            format!("magic number {magic} is not {IDX_LABELS_MAGIC} (idx1 labels)"),
        ));
    }
    let n = be_u32(bytes, 4) as usize;
    check_len(bytes, n + 8, file, &format!("{n} labels"))?;
    let mut labels = Vec::with_capacity(n);
    for (i, &l) in bytes[8..].iter().enumerate() {
        if l as usize >= classes {
            return Err(DataError::corrupt(
                file,
                (8 + i) as u64,
                format!("label {l} of item {i} is out of range 0..{classes}"),
            ));
        }
        labels.push(i64::from(l));
    }
    Ok(labels)
}

fn check_len(bytes: &[u8], want: usize, file: &str, what: &str) -> Result<()> {
    if bytes.len() < want {
        Err(DataError::truncated(
            file,
            bytes.len() as u64,
            format!(
                "the header announces {what} ({want} bytes) but the file ends after {}",
                bytes.len()
            ),
        ))
    } else if bytes.len() > want {
        Err(DataError::corrupt(
            file,
            want as u64,
            format!(
                "{} unexpected bytes after the {what} the header announces",
                bytes.len() - want
            ),
        ))
    } else {
        Ok(())
    }
}

/// The path of idx file `name` in `dir`: raw, or with `.gz`.
pub(crate) fn find_idx(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

/// Reads MNIST from `dir` (or from `dir/mnist`), each file raw or gzipped.
pub fn read_mnist(dir: &Path) -> Result<TrainTest> {
    let dir = if find_idx(dir, MNIST_FILES[0]).is_none() && dir.join("mnist").is_dir() {
        dir.join("mnist")
    } else {
        dir.to_path_buf()
    };
    let mut paths = Vec::new();
    for name in MNIST_FILES {
        paths.push(find_idx(&dir, name).ok_or_else(|| DataError::Missing {
            what: format!("MNIST file {name}[.gz]"),
            looked: dir.display().to_string(),
            hint: "expected the four idx files, raw or gzipped".into(),
        })?);
    }
    let part = |images: &Path, labels: &Path, name: &str| -> Result<Dataset> {
        let (iname, lname) = (images.display().to_string(), labels.display().to_string());
        let (n, rows, cols, pixels) = parse_idx_images(&read_file_maybe_gz(images)?, &iname)?;
        let labels = parse_idx_labels(&read_file_maybe_gz(labels)?, &lname, 10)?;
        if labels.len() != n {
            return Err(DataError::corrupt(
                &lname,
                4,
                format!("{} labels for the {n} images of {iname}", labels.len()),
            ));
        }
        let mut ds = Dataset::new(name, pixels, labels, [1, rows, cols], 10)?;
        ds.class_names = (0..10).map(|d| d.to_string()).collect();
        Ok(ds)
    };
    Ok(TrainTest {
        train: part(&paths[0], &paths[1], "mnist-train")?,
        test: part(&paths[2], &paths[3], "mnist-test")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn images(n: u32, rows: u32, cols: u32) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [IDX_IMAGES_MAGIC, n, rows, cols] {
            b.extend(v.to_be_bytes());
        }
        b.extend((0..n * rows * cols).map(|i| i as u8));
        b
    }

    #[test]
    fn parses_and_checks_the_header() {
        let b = images(3, 2, 2);
        let (n, r, c, px) = parse_idx_images(&b, "i").unwrap();
        assert_eq!((n, r, c, px.len()), (3, 2, 2, 12));

        let mut bad = b.clone();
        bad[3] = 0x01; // 2049: a label file's magic
        let e = parse_idx_images(&bad, "i").unwrap_err();
        assert!(matches!(e, DataError::Corrupt { offset: 0, .. }), "{e}");

        let e = parse_idx_images(&b[..20], "i").unwrap_err();
        assert!(matches!(e, DataError::Truncated { offset: 20, .. }), "{e}");
        let e = parse_idx_images(&b[..10], "i").unwrap_err();
        assert!(matches!(e, DataError::Truncated { offset: 10, .. }), "{e}");
    }

    #[test]
    fn labels_are_range_checked() {
        let mut b = Vec::new();
        b.extend(IDX_LABELS_MAGIC.to_be_bytes());
        b.extend(3u32.to_be_bytes());
        b.extend([1, 12, 3]);
        let e = parse_idx_labels(&b, "l", 10).unwrap_err();
        assert_eq!(e.offset(), Some(9));
        assert!(e.to_string().contains("label 12"), "{e}");
    }
}
