//! CIFAR-10 and CIFAR-100 in their binary formats, from an extracted folder or straight from
//! the official `.tar.gz` (streamed: nothing is extracted to disk).
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` … `data_batch_5.bin` and
//! `test_batch.bin`, 10,000 records each of 1 label byte + 3072 pixel bytes (the red, green and
//! blue 32×32 planes, row-major). CIFAR-100 (`cifar-100-binary/`): `train.bin` (50,000) and
//! `test.bin` (10,000), records of 1 coarse label byte (20 classes) + 1 fine label byte
//! (100 classes) + 3072 pixel bytes.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;

use super::dataset::Dataset;
use super::error::{DataError, Result};
use super::read::{classify, read_all, read_file_maybe_gz, read_up_to, Counting, GZIP_MAGIC};

/// Pixel bytes of one 32×32 RGB image.
pub const CIFAR_IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which CIFAR-100 labels to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cifar100Labels {
    /// The 100 fine classes (the usual benchmark).
    #[default]
    Fine,
    /// The 20 superclasses.
    Coarse,
}

/// A training set and its test set.
#[derive(Debug, Clone)]
pub struct TrainTest {
    pub train: Dataset,
    pub test: Dataset,
}

/// Where the files of a CIFAR variant live and how its records look.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub name: &'static str,
    pub dir: &'static str,
    pub train: &'static [&'static str],
    pub test: &'static [&'static str],
    /// Label bytes before the pixels of each record.
    pub label_bytes: usize,
    /// Which label byte is the label used, and the class count of each label byte.
    pub label_index: usize,
    pub label_classes: &'static [usize],
    /// A text file of class names, one per line, if the archive has one.
    pub names_file: &'static str,
}

pub(crate) const CIFAR10: Layout = Layout {
    name: "cifar10",
    dir: "cifar-10-batches-bin",
    train: &[
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
    ],
    test: &["test_batch.bin"],
    label_bytes: 1,
    label_index: 0,
    label_classes: &[10],
    names_file: "batches.meta.txt",
};

pub(crate) fn cifar100(labels: Cifar100Labels) -> Layout {
    let (name, label_index, names_file) = match labels {
        Cifar100Labels::Fine => ("cifar100", 1, "fine_label_names.txt"),
        Cifar100Labels::Coarse => ("cifar100-coarse", 0, "coarse_label_names.txt"),
    };
    Layout {
        name,
        dir: "cifar-100-binary",
        train: &["train.bin"],
        test: &["test.bin"],
        label_bytes: 2,
        label_index,
        label_classes: &[20, 100],
        names_file,
    }
}

impl Layout {
    fn classes(&self) -> usize {
        self.label_classes[self.label_index]
    }

    fn record_bytes(&self) -> usize {
        self.label_bytes + CIFAR_IMAGE_BYTES
    }

    fn all_files(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.train.iter().chain(self.test.iter()).copied()
    }
}

/// Reads CIFAR-10 from `path`: the `.tar.gz` archive, the extracted `cifar-10-batches-bin`
/// folder, or a folder that contains it.
pub fn read_cifar10(path: &Path) -> Result<TrainTest> {
    read_cifar(path, &CIFAR10)
}

/// Reads CIFAR-100 from `path` (the `.tar.gz`, `cifar-100-binary/`, or a folder containing it),
/// with the fine (100) or coarse (20) labels.
pub fn read_cifar100(path: &Path, labels: Cifar100Labels) -> Result<TrainTest> {
    read_cifar(path, &cifar100(labels))
}

pub(crate) fn read_cifar(path: &Path, layout: &Layout) -> Result<TrainTest> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    let (files, names) = if meta.is_dir() {
        read_folder(path, layout)?
    } else {
        read_archive(path, layout)?
    };
    let build = |part: &str, members: &[&str]| -> Result<Dataset> {
        let mut images = Vec::new();
        let mut labels = Vec::new();
        for m in members {
            let (label, bytes) = files.get(*m).ok_or_else(|| DataError::Missing {
                what: format!("{} file {m}", layout.name),
                looked: path.display().to_string(),
                hint: "the archive or folder is incomplete; delete it and download it again".into(),
            })?;
            parse_records(bytes, label, layout, &mut images, &mut labels)?;
        }
        let mut ds = Dataset::new(
            format!("{}-{part}", layout.name),
            images,
            labels,
            [3, 32, 32],
            layout.classes(),
        )?;
        ds.class_names = names.clone();
        Ok(ds)
    };
    Ok(TrainTest {
        train: build("train", layout.train)?,
        test: build("test", layout.test)?,
    })
}

/// Member bytes keyed by file name, each with the label to use in messages.
type Members = HashMap<String, (String, Vec<u8>)>;

fn read_folder(path: &Path, layout: &Layout) -> Result<(Members, Vec<String>)> {
    let dir: PathBuf = if path.join(layout.dir).is_dir() {
        path.join(layout.dir)
    } else {
        path.to_path_buf()
    };
    let mut files = Members::new();
    for f in layout.all_files() {
        let p = dir.join(f);
        if !p.is_file() {
            return Err(DataError::Missing {
                what: format!("{} file {f}", layout.name),
                looked: dir.display().to_string(),
                hint: format!(
                    "expected the extracted `{}` folder or the official .tar.gz",
                    layout.dir
                ),
            });
        }
        let bytes = read_file_maybe_gz(&p)?;
        files.insert(f.to_string(), (p.display().to_string(), bytes));
    }
    let names = match std::fs::read(dir.join(layout.names_file)) {
        Ok(b) => class_names(&b, layout.classes()),
        Err(_) => Vec::new(),
    };
    Ok((files, names))
}

fn read_archive(path: &Path, layout: &Layout) -> Result<(Members, Vec<String>)> {
    let archive_name = path.display().to_string();
    let mut head = [0u8; 2];
    let got = File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .map_err(|e| DataError::io(path, e))?;
    let file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let counting = Counting::new(BufReader::with_capacity(1 << 20, file));
    let pos = counting.count.clone();
    let stream: Box<dyn Read> = if got == 2 && head == GZIP_MAGIC {
        Box::new(MultiGzDecoder::new(counting))
    } else {
        Box::new(counting)
    };
    let at = || format!("(near compressed byte {} of the archive) ", pos.get());
    // Errors in the tar structure itself point at the archive file, at its compressed byte.
    let tar_err = |e: std::io::Error, tar_offset: u64| {
        classify(
            &archive_name,
            pos.get(),
            e,
            &format!("bad tar entry after tar byte {tar_offset} (decompressed): "),
        )
    };
    let mut archive = tar::Archive::new(stream);
    let mut files = Members::new();
    let mut names = Vec::new();
    let mut tar_offset = 0u64;
    let entries = archive.entries().map_err(|e| tar_err(e, 0))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| tar_err(e, tar_offset))?;
        tar_offset = entry.raw_file_position();
        let member = entry
            .path()
            .map_err(|e| tar_err(e, tar_offset))?
            .to_path_buf();
        let Some(fname) = member
            .file_name()
            .and_then(|s| s.to_str())
            .map(str::to_string)
        else {
            continue;
        };
        let wanted = layout.all_files().any(|f| f == fname);
        let is_names = fname == layout.names_file;
        if !(wanted || is_names) || files.contains_key(&fname) {
            continue;
        }
        let label = format!("{archive_name}!{}", member.display());
        let size = entry.header().size().ok();
        let bytes = read_all(&mut entry, &label, size, &at)?;
        if is_names {
            names = class_names(&bytes, layout.classes());
        } else {
            files.insert(fname, (label, bytes));
        }
    }
    // Read to the end so that the gzip trailer (CRC-32 and length) is checked too.
    let mut rest = archive.into_inner();
    let mut sink = vec![0u8; 1 << 16];
    let mut drained = 0u64;
    loop {
        match rest.read(&mut sink) {
            Ok(0) => break,
            Ok(n) => drained += n as u64,
            Err(e) => {
                return Err(classify(
                    &archive_name,
                    pos.get(),
                    e,
                    &format!(
                        "checking the end of the archive ({drained} bytes after the members \
                         read; a checksum failure means some earlier byte is damaged): "
                    ),
                ))
            }
        }
    }
    Ok((files, names))
}

fn class_names(bytes: &[u8], classes: usize) -> Vec<String> {
    let names: Vec<String> = String::from_utf8_lossy(bytes)
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.len() == classes {
        names
    } else {
        Vec::new()
    }
}

/// Appends the records of one file, checking that it holds a whole number of records and
/// that every label byte is in range.
pub(crate) fn parse_records(
    bytes: &[u8],
    file: &str,
    layout: &Layout,
    images: &mut Vec<u8>,
    labels: &mut Vec<i64>,
) -> Result<()> {
    let rec = layout.record_bytes();
    if bytes.is_empty() {
        return Err(DataError::truncated(file, 0, "the file is empty"));
    }
    let whole = bytes.len() / rec;
    if !bytes.len().is_multiple_of(rec) {
        let start = whole * rec;
        return Err(DataError::truncated(
            file,
            start as u64,
            format!(
                "{} bytes is not a whole number of {rec}-byte records: the last record, from \
                 byte {start}, has only {} bytes",
                bytes.len(),
                bytes.len() - start
            ),
        ));
    }
    images.reserve(whole * CIFAR_IMAGE_BYTES);
    labels.reserve(whole);
    for (i, r) in bytes.chunks_exact(rec).enumerate() {
        for (k, &classes) in layout.label_classes.iter().enumerate() {
            let l = r[k] as usize;
            if l >= classes {
                return Err(DataError::corrupt(
                    file,
                    (i * rec + k) as u64,
                    format!("label {l} of record {i} is out of range 0..{classes}"),
                ));
            }
        }
        labels.push(i64::from(r[layout.label_index]));
        images.extend_from_slice(&r[layout.label_bytes..]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(label: &[u8], fill: u8) -> Vec<u8> {
        let mut r = label.to_vec();
        r.extend(std::iter::repeat_n(fill, CIFAR_IMAGE_BYTES));
        r
    }

    #[test]
    fn parses_whole_records() {
        let mut bytes = record(&[3], 7);
        bytes.extend(record(&[9], 8));
        let (mut im, mut lb) = (Vec::new(), Vec::new());
        parse_records(&bytes, "x.bin", &CIFAR10, &mut im, &mut lb).unwrap();
        assert_eq!(lb, vec![3, 9]);
        assert_eq!(im.len(), 2 * CIFAR_IMAGE_BYTES);
        assert_eq!(im[CIFAR_IMAGE_BYTES], 8);
    }

    #[test]
    fn partial_record_is_a_truncation_at_its_start() {
        let mut bytes = record(&[3], 7);
        bytes.extend(&record(&[1], 1)[..100]);
        let (mut im, mut lb) = (Vec::new(), Vec::new());
        let e = parse_records(&bytes, "x.bin", &CIFAR10, &mut im, &mut lb).unwrap_err();
        assert!(
            matches!(e, DataError::Truncated { offset: 3073, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("x.bin"));
    }

    #[test]
    fn label_ranges_of_both_cifar100_bytes_are_checked() {
        let layout = cifar100(Cifar100Labels::Fine);
        let mut bytes = record(&[19, 99], 0);
        bytes.extend(record(&[20, 5], 0));
        let (mut im, mut lb) = (Vec::new(), Vec::new());
        let e = parse_records(&bytes, "t.bin", &layout, &mut im, &mut lb).unwrap_err();
        assert_eq!(e.offset(), Some(3074));
        let coarse = cifar100(Cifar100Labels::Coarse);
        let (mut im, mut lb) = (Vec::new(), Vec::new());
        parse_records(&bytes[..3074], "t.bin", &coarse, &mut im, &mut lb).unwrap();
        assert_eq!(lb, vec![19]);
    }
}
