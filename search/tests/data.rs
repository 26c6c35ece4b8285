//! Data sets: the real CIFAR-10 and MNIST files (through `OPTARCH_DATA`), generated CIFAR-100
//! folders and archives, damaged files, the download path against a local HTTP server, and the
//! seeded split, augmentation and batching.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flate2::write::GzEncoder;
use flate2::Compression;
use optarch_search::data::*;
use tch::{Device, Kind, Tensor};

// ---------------------------------------------------------------- helpers

/// The data root, or `None` after a loud message when `OPTARCH_DATA` is unset.
fn data_root(test: &str) -> Option<PathBuf> {
    match std::env::var_os(DATA_ENV).filter(|s| !s.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None => {
            eprintln!(
                "\n*** SKIPPED {test}: set OPTARCH_DATA to the folder holding \
                 cifar-10-binary.tar.gz and mnist/ (.ci/run and scripts/test.sh set it to \
                 ../shared/data) ***\n"
            );
            None
        }
    }
}

fn md5_hex(bytes: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x");
    std::fs::write(&p, bytes).unwrap();
    md5_file(&p).unwrap()
}

/// CIFAR-style records with pseudo-random pixels: `labels[i]` are the label bytes of record i.
fn records(labels: &[Vec<u8>], seed: u64) -> Vec<u8> {
    let mut rng = SplitMix64::new(seed);
    let mut out = Vec::new();
    for l in labels {
        out.extend(l);
        for _ in 0..CIFAR_IMAGE_BYTES / 8 {
            out.extend(rng.next_u64().to_le_bytes());
        }
    }
    out
}

fn cifar100_files(n_train: usize, n_test: usize) -> Vec<(String, Vec<u8>)> {
    let labels = |n: usize, off: usize| -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| vec![((i + off) % 20) as u8, ((i * 7 + off) % 100) as u8])
            .collect()
    };
    vec![
        ("train.bin".into(), records(&labels(n_train, 0), 1)),
        ("test.bin".into(), records(&labels(n_test, 3), 2)),
        (
            "fine_label_names.txt".into(),
            (0..100)
                .map(|i| format!("fine{i}\n"))
                .collect::<String>()
                .into_bytes(),
        ),
        (
            "coarse_label_names.txt".into(),
            (0..20)
                .map(|i| format!("coarse{i}\n"))
                .collect::<String>()
                .into_bytes(),
        ),
    ]
}

fn tar_gz(dir: &str, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let enc = GzEncoder::new(Vec::new(), Compression::fast());
    let mut b = tar::Builder::new(enc);
    for (name, bytes) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, format!("{dir}/{name}"), bytes.as_slice())
            .unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

fn write_folder(root: &Path, dir: &str, files: &[(String, Vec<u8>)]) -> PathBuf {
    let d = root.join(dir);
    std::fs::create_dir_all(&d).unwrap();
    for (name, bytes) in files {
        std::fs::write(d.join(name), bytes).unwrap();
    }
    d
}

fn idx_images(n: u32, rows: u32, cols: u32, seed: u64) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [IDX_IMAGES_MAGIC, n, rows, cols] {
        b.extend(v.to_be_bytes());
    }
    let mut rng = SplitMix64::new(seed);
    b.extend((0..n * rows * cols).map(|_| rng.next_u64() as u8));
    b
}

fn idx_labels(labels: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend(IDX_LABELS_MAGIC.to_be_bytes());
    b.extend((labels.len() as u32).to_be_bytes());
    b.extend(labels);
    b
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A small generated data set (3×8×8 images) for the split, augmentation and loader tests.
fn small_set(n: usize, classes: usize) -> Dataset {
    let mut rng = SplitMix64::new(99);
    let images: Vec<u8> = (0..n * 3 * 8 * 8).map(|_| rng.next_u64() as u8).collect();
    let labels = (0..n).map(|i| (i % classes) as i64).collect();
    Dataset::new("small-train", images, labels, [3, 8, 8], classes).unwrap()
}

/// A one-shot HTTP/1.1 file server on 127.0.0.1: answers at most `max_requests` requests
/// (404 for unknown paths) and stops by itself after them or after 20 seconds.
fn serve(files: HashMap<String, Vec<u8>>, max_requests: usize) -> (String, JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < max_requests && Instant::now() < deadline {
            let (mut s, _) = match listener.accept() {
                Ok(c) => c,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(_) => break,
            };
            served += 1;
            s.set_nonblocking(false).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16384 {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let path = line.split_whitespace().nth(1).unwrap_or("/");
            let name = path.trim_start_matches('/');
            let (status, body) = match files.get(name) {
                Some(b) => ("200 OK", b.clone()),
                None => ("404 Not Found", b"not found".to_vec()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
            let _ = s.flush();
        }
        served
    });
    (base, handle)
}

fn dir_entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

// ---------------------------------------------------------------- real data

#[test]
fn cifar10_from_the_official_tar_gz() {
    let Some(root) = data_root("cifar10_from_the_official_tar_gz") else {
        return;
    };
    let t0 = Instant::now();
    let sets = read_cifar10(&root.join(CIFAR10_ARCHIVE)).unwrap();
    eprintln!("read CIFAR-10 from the .tar.gz in {:.1?}", t0.elapsed());
    let (train, test) = (&sets.train, &sets.test);
    assert_eq!((train.len(), test.len()), (50_000, 10_000));
    assert_eq!(train.shape, [3, 32, 32]);
    assert_eq!(train.classes, 10);
    assert_eq!(train.class_counts(), vec![5000; 10]);
    assert_eq!(test.class_counts(), vec![1000; 10]);
    assert_eq!(train.labels[..10], [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]);
    assert_eq!(test.labels[..10], [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]);
    assert_eq!(train.image(0)[..8], [59, 43, 50, 68, 98, 119, 139, 145]);
    assert_eq!(train.class_names.len(), 10);
    assert_eq!(train.class_names[0], "airplane");

    let stats = train.channel_stats();
    let mean = [125.3 / 255.0, 123.0 / 255.0, 113.9 / 255.0];
    let std = [63.0 / 255.0, 62.1 / 255.0, 66.7 / 255.0];
    for c in 0..3 {
        assert!((stats.mean[c] - mean[c]).abs() < 0.01, "{stats:?}");
        assert!((stats.std[c] - std[c]).abs() < 0.01, "{stats:?}");
    }

    // The seeded validation split on the real set.
    let split = train.split(ValSize::Count(5000), 0).unwrap();
    assert_eq!((split.train.len(), split.val.len()), (45_000, 5000));
    assert_eq!(
        split.val_indices,
        train.split(ValSize::Count(5000), 0).unwrap().val_indices
    );
    let counts = split.val.class_counts();
    assert!(
        counts.iter().all(|&c| (400..600).contains(&c)),
        "{counts:?}"
    );

    // Through the lookup: OPTARCH_DATA's folder holds the archive; no download needed.
    let found = locate(
        DatasetKind::Cifar10,
        &LoadOptions {
            path: Some(root.clone()),
            download: false,
            mirror: None,
        },
    )
    .unwrap();
    assert_eq!(found, root.join(CIFAR10_ARCHIVE));

    // A normalised, augmented batch of real images on the CPU.
    let loader = Loader::new(&train.take(512), 256, Device::Cpu)
        .unwrap()
        .shuffled(1)
        .augmented(Augment::default())
        .normalized(stats);
    let b = loader.epoch(0).next().unwrap().unwrap();
    assert_eq!(b.images.size(), vec![256, 3, 32, 32]);
    assert_eq!(b.images.kind(), Kind::Float);
    let m = b.images.mean(Kind::Float).double_value(&[]);
    assert!(m.abs() < 0.3, "normalised mean {m}");
}

#[test]
fn mnist_from_the_gz_files() {
    let Some(root) = data_root("mnist_from_the_gz_files") else {
        return;
    };
    let t0 = Instant::now();
    let sets = load(
        DatasetKind::Mnist,
        &LoadOptions {
            path: Some(root),
            download: false,
            mirror: None,
        },
    )
    .unwrap();
    eprintln!("read MNIST (.gz) in {:.1?}", t0.elapsed());
    assert_eq!((sets.train.len(), sets.test.len()), (60_000, 10_000));
    assert_eq!(sets.train.shape, [1, 28, 28]);
    assert!(sets
        .train
        .labels
        .iter()
        .chain(&sets.test.labels)
        .all(|&l| (0..10).contains(&l)));
    assert_eq!(sets.train.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(
        sets.train.class_counts(),
        vec![5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    );
    let mean = sets.train.channel_stats().mean[0] * 255.0;
    assert!((mean - 33.318).abs() < 0.01, "{mean}");
}

// ---------------------------------------------------------------- generated CIFAR

#[test]
fn cifar100_from_a_generated_folder_and_tar_gz_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let files = cifar100_files(30, 12);
    write_folder(tmp.path(), "cifar-100-binary", &files);
    let archive = tmp.path().join(CIFAR100_ARCHIVE);
    std::fs::write(&archive, tar_gz("cifar-100-binary", &files)).unwrap();

    let folder = read_cifar100(tmp.path(), Cifar100Labels::Fine).unwrap();
    let inner = read_cifar100(&tmp.path().join("cifar-100-binary"), Cifar100Labels::Fine).unwrap();
    let tgz = read_cifar100(&archive, Cifar100Labels::Fine).unwrap();
    for s in [&folder, &inner] {
        assert_eq!(s.train, tgz.train);
        assert_eq!(s.test, tgz.test);
    }
    assert_eq!((tgz.train.len(), tgz.test.len()), (30, 12));
    assert_eq!(tgz.train.classes, 100);
    assert_eq!(tgz.train.labels[..4], [0, 7, 14, 21]);
    assert_eq!(tgz.train.class_names[99], "fine99");
    // Pixels come after both label bytes.
    assert_eq!(tgz.train.image(1), &files[0].1[3074 + 2..2 * 3074]);

    let coarse = read_cifar100(&archive, Cifar100Labels::Coarse).unwrap();
    assert_eq!(coarse.train.classes, 20);
    assert_eq!(coarse.train.labels[..4], [0, 1, 2, 3]);
    assert_eq!(coarse.test.labels[0], 3);
    assert_eq!(coarse.train.class_names[19], "coarse19");
    assert_eq!(coarse.train.images, tgz.train.images);

    // The kind parses from its name and reads through the generic entry point.
    let kind: DatasetKind = "cifar100-coarse".parse().unwrap();
    assert_eq!(read(kind, &archive).unwrap().train, coarse.train);
    assert!("imagenet".parse::<DatasetKind>().is_err());
}

#[test]
fn cifar10_from_a_generated_folder_and_tar_gz_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let names = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
    ];
    let files: Vec<(String, Vec<u8>)> = names
        .iter()
        .enumerate()
        .map(|(k, n)| {
            let labels: Vec<Vec<u8>> = (0..4).map(|i| vec![((i + k) % 10) as u8]).collect();
            (n.to_string(), records(&labels, k as u64))
        })
        .collect();
    write_folder(tmp.path(), "cifar-10-batches-bin", &files);
    let archive = tmp.path().join("c10.tar.gz");
    std::fs::write(&archive, tar_gz("cifar-10-batches-bin", &files)).unwrap();
    let a = read_cifar10(tmp.path()).unwrap();
    let b = read_cifar10(&archive).unwrap();
    assert_eq!(a.train, b.train);
    assert_eq!(a.test, b.test);
    assert_eq!((a.train.len(), a.test.len()), (20, 4));
    assert_eq!(a.train.labels[4..8], [1, 2, 3, 4]);
}

// ---------------------------------------------------------------- damaged files

#[test]
fn truncated_raw_file_names_the_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = cifar100_files(5, 3);
    files[0].1.truncate(3074 * 3 + 1000);
    let dir = write_folder(tmp.path(), "cifar-100-binary", &files);
    let e = read_cifar100(tmp.path(), Cifar100Labels::Fine).unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(
        matches!(e, DataError::Truncated { offset: 9222, .. }),
        "{msg}"
    );
    assert!(
        msg.contains(&dir.join("train.bin").display().to_string()),
        "{msg}"
    );
    assert!(msg.contains("byte 9222"), "{msg}");
    assert!(msg.contains("download it again"), "{msg}");
}

#[test]
fn truncated_tar_gz_names_the_member_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = tar_gz("cifar-100-binary", &cifar100_files(200, 20));
    let archive = tmp.path().join("cut.tar.gz");
    std::fs::write(&archive, &bytes[..bytes.len() / 3]).unwrap();
    let e = read_cifar100(&archive, Cifar100Labels::Fine).unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(matches!(e, DataError::Truncated { .. }), "{msg}");
    assert!(
        msg.contains("cut.tar.gz!cifar-100-binary/train.bin"),
        "{msg}"
    );
    let off = e.offset().unwrap();
    assert!(off > 0 && off < 200 * 3074, "{msg}");
}

#[test]
fn corrupted_tar_gz_is_an_error_with_a_position() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = tar_gz("cifar-100-binary", &cifar100_files(50, 10));
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    let archive = tmp.path().join("bad.tar.gz");
    std::fs::write(&archive, &bytes).unwrap();
    let e = read_cifar100(&archive, Cifar100Labels::Fine).unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(
        matches!(e, DataError::Corrupt { .. } | DataError::Truncated { .. }),
        "{msg}"
    );
    assert!(msg.contains("bad.tar.gz"), "{msg}");
    assert!(e.offset().is_some());

    // Compressible pixels: the damage lands in real deflate blocks, inside a member.
    let mut files = cifar100_files(50, 10);
    for (name, bytes) in &mut files {
        if name.ends_with(".bin") {
            for (i, b) in bytes.iter_mut().enumerate() {
                if i % 3074 >= 2 {
                    *b = (i / 97 % 7) as u8;
                }
            }
        }
    }
    let mut bytes = tar_gz("cifar-100-binary", &files);
    let mid = bytes.len() / 3;
    for b in &mut bytes[mid..mid + 16] {
        *b ^= 0xff;
    }
    std::fs::write(&archive, &bytes).unwrap();
    let e = read_cifar100(&archive, Cifar100Labels::Fine).unwrap_err();
    let msg = e.to_string();
    eprintln!("{msg}");
    assert!(msg.contains("bad.tar.gz"), "{msg}");
    assert!(e.offset().is_some(), "{msg}");
}

#[test]
fn label_out_of_range_is_corruption_at_its_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = cifar100_files(5, 3);
    files[1].1[2 * 3074 + 1] = 100; // fine label of test record 2
    write_folder(tmp.path(), "cifar-100-binary", &files);
    let e = read_cifar100(tmp.path(), Cifar100Labels::Fine).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, DataError::Corrupt { offset: 6149, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("test.bin") && msg.contains("label 100"),
        "{msg}"
    );

    // CIFAR-10: label byte 10.
    let mut one = records(&[vec![3], vec![10]], 0);
    one.truncate(2 * 3073);
    let d = tmp.path().join("c10");
    std::fs::create_dir_all(&d).unwrap();
    for n in 1..=5 {
        std::fs::write(d.join(format!("data_batch_{n}.bin")), &one).unwrap();
    }
    std::fs::write(d.join("test_batch.bin"), &one).unwrap();
    let e = read_cifar10(&d).unwrap_err();
    assert_eq!(e.offset(), Some(3073), "{e}");
    assert!(e.to_string().contains("data_batch_1.bin"), "{e}");
}

#[test]
fn mnist_idx_checks_magic_counts_and_labels() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("mnist");
    std::fs::create_dir_all(&d).unwrap();
    // Raw train files, gzipped test files: both are accepted.
    std::fs::write(d.join(MNIST_FILES[0]), idx_images(6, 28, 28, 1)).unwrap();
    std::fs::write(d.join(MNIST_FILES[1]), idx_labels(&[0, 1, 2, 3, 4, 9])).unwrap();
    std::fs::write(
        d.join(format!("{}.gz", MNIST_FILES[2])),
        gz(&idx_images(2, 28, 28, 2)),
    )
    .unwrap();
    std::fs::write(
        d.join(format!("{}.gz", MNIST_FILES[3])),
        gz(&idx_labels(&[7, 8])),
    )
    .unwrap();
    let sets = read_mnist(tmp.path()).unwrap();
    assert_eq!((sets.train.len(), sets.test.len()), (6, 2));
    assert_eq!(sets.test.labels, vec![7, 8]);
    assert_eq!(sets.test.images, idx_images(2, 28, 28, 2)[16..]);

    // Count mismatch between images and labels.
    std::fs::write(d.join(MNIST_FILES[1]), idx_labels(&[0, 1, 2])).unwrap();
    let e = read_mnist(&d).unwrap_err();
    assert!(e.to_string().contains("3 labels for the 6 images"), "{e}");

    // A label of 10.
    std::fs::write(d.join(MNIST_FILES[1]), idx_labels(&[0, 1, 2, 10, 4, 9])).unwrap();
    let e = read_mnist(&d).unwrap_err();
    assert_eq!(e.offset(), Some(11), "{e}");

    // Images and labels swapped: wrong magic at offset 0.
    std::fs::write(d.join(MNIST_FILES[1]), idx_images(6, 28, 28, 1)).unwrap();
    let e = read_mnist(&d).unwrap_err();
    assert!(matches!(e, DataError::Corrupt { offset: 0, .. }), "{e}");
    assert!(e.to_string().contains(MNIST_FILES[1]), "{e}");

    // A truncated image file.
    std::fs::write(d.join(MNIST_FILES[1]), idx_labels(&[0, 1, 2, 3, 4, 9])).unwrap();
    let mut cut = idx_images(6, 28, 28, 1);
    cut.truncate(16 + 784 * 5 + 100);
    std::fs::write(d.join(MNIST_FILES[0]), cut).unwrap();
    let e = read_mnist(&d).unwrap_err();
    assert!(
        matches!(e, DataError::Truncated { offset: 4036, .. }),
        "{e}"
    );

    // A truncated .gz stream.
    std::fs::write(d.join(MNIST_FILES[0]), idx_images(6, 28, 28, 1)).unwrap();
    let g = gz(&idx_images(2, 28, 28, 2));
    std::fs::write(d.join(format!("{}.gz", MNIST_FILES[2])), &g[..g.len() / 2]).unwrap();
    let e = read_mnist(&d).unwrap_err();
    assert!(matches!(e, DataError::Truncated { .. }), "{e}");
    assert!(e.to_string().contains("t10k-images-idx3-ubyte.gz"), "{e}");
}

#[test]
fn missing_data_without_download_says_where_it_looked() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = LoadOptions {
        path: Some(tmp.path().to_path_buf()),
        download: false,
        mirror: None,
    };
    let e = load(DatasetKind::Cifar10, &opts).unwrap_err();
    assert!(matches!(e, DataError::Missing { .. }), "{e}");
    assert!(
        e.to_string().contains(&tmp.path().display().to_string()),
        "{e}"
    );
}

// ---------------------------------------------------------------- download

#[test]
fn download_checks_the_md5_and_leaves_nothing_on_failure() {
    let archive = tar_gz("cifar-100-binary", &cifar100_files(20, 10));
    let good = md5_hex(&archive);
    let files = HashMap::from([(CIFAR100_ARCHIVE.to_string(), archive.clone())]);
    let (base, server) = serve(files, 4);
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("{base}{CIFAR100_ARCHIVE}");

    // 1. Wrong checksum: an error naming both sums, and no file left behind.
    let dest = tmp.path().join("wrong").join(CIFAR100_ARCHIVE);
    let e = download(&url, &dest, "00000000000000000000000000000000").unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DataError::Checksum { .. }), "{msg}");
    assert!(msg.contains(&good), "{msg}");
    assert_eq!(dir_entries(dest.parent().unwrap()), Vec::<String>::new());

    // 2. Not on the server: a download error, nothing left.
    let e = download(&format!("{base}nope.tar.gz"), &dest, &good).unwrap_err();
    assert!(matches!(e, DataError::Download { .. }), "{e}");
    assert_eq!(dir_entries(dest.parent().unwrap()), Vec::<String>::new());

    // 3. Through the lookup with the official checksum (the generated archive cannot match it).
    let opts = LoadOptions {
        path: Some(tmp.path().join("root")),
        download: true,
        mirror: Some(base.clone()),
    };
    let e = load(DatasetKind::Cifar100(Cifar100Labels::Fine), &opts).unwrap_err();
    assert!(matches!(e, DataError::Checksum { .. }), "{e}");
    assert!(e.to_string().contains(CIFAR100_MD5), "{e}");
    assert_eq!(dir_entries(&tmp.path().join("root")), Vec::<String>::new());

    // 4. The right checksum: the file is in place, complete, and reads.
    let root = tmp.path().join("ok");
    // A part file left by a killed download (its process is long gone) is cleaned up.
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(
        root.join(format!(".{CIFAR100_ARCHIVE}.part-4000000000")),
        b"x",
    )
    .unwrap();
    let got = fetch_all(&root, &base, &[Remote::new(CIFAR100_ARCHIVE, &good)]).unwrap();
    assert_eq!(got, vec![root.join(CIFAR100_ARCHIVE)]);
    assert_eq!(std::fs::read(&got[0]).unwrap(), archive);
    assert_eq!(dir_entries(&root), vec![CIFAR100_ARCHIVE.to_string()]);
    let sets = load(
        DatasetKind::Cifar100(Cifar100Labels::Fine),
        &LoadOptions {
            path: Some(root.clone()),
            download: false,
            mirror: None,
        },
    )
    .unwrap();
    assert_eq!(sets.train.len(), 20);
    // Already there: a second fetch does not ask the server again.
    fetch_all(&root, &base, &[Remote::new(CIFAR100_ARCHIVE, &good)]).unwrap();

    assert_eq!(server.join().unwrap(), 4);
}

#[test]
fn mirror_url_resolution() {
    assert_eq!(
        base_url(Some("http://127.0.0.1:9/x"), CIFAR_BASE),
        "http://127.0.0.1:9/x/"
    );
    assert!(base_url(Some("http://m/"), MNIST_BASE).ends_with("m/"));
    // The environment variable applies when no explicit mirror is given.
    let env = Some("http://127.0.0.1:9/env");
    assert_eq!(
        choose_base(None, env, CIFAR_BASE),
        "http://127.0.0.1:9/env/"
    );
    assert_eq!(choose_base(Some("http://x"), env, CIFAR_BASE), "http://x/");
    assert_eq!(choose_base(None, Some("  "), CIFAR_BASE), CIFAR_BASE);
    assert_eq!(choose_base(None, None, MNIST_BASE), MNIST_BASE);
    let kinds = [DatasetKind::Cifar10, DatasetKind::Mnist];
    assert_eq!(kinds[0].remotes()[0].md5, CIFAR10_MD5);
    assert_eq!(kinds[1].remotes().len(), 4);
}

// ---------------------------------------------------------------- split, augmentation, batches

#[test]
fn split_is_seeded_disjoint_and_complete() {
    let ds = small_set(100, 10);
    let a = ds.split(ValSize::Fraction(0.2), 7).unwrap();
    let b = ds.split(ValSize::Fraction(0.2), 7).unwrap();
    let c = ds.split(ValSize::Fraction(0.2), 8).unwrap();
    assert_eq!(a.val_indices, b.val_indices);
    assert_eq!(a.train, b.train);
    assert_ne!(a.val_indices, c.val_indices);
    assert_eq!((a.train.len(), a.val.len()), (80, 20));
    let mut all: Vec<usize> = a
        .train_indices
        .iter()
        .chain(&a.val_indices)
        .copied()
        .collect();
    all.sort_unstable();
    assert_eq!(all, (0..100).collect::<Vec<_>>());
    assert_eq!(a.val.image(0), ds.image(a.val_indices[0]));
    assert_eq!(a.val.labels[3], ds.labels[a.val_indices[3]]);
    assert_eq!(
        (a.train.name.as_str(), a.val.name.as_str()),
        ("small-train", "small-val")
    );

    let d = ds.split(ValSize::Count(33), 1).unwrap();
    assert_eq!(d.val.len(), 33);
    assert!(ds.split(ValSize::Count(100), 1).is_err());
    assert!(ds.split(ValSize::Fraction(1.5), 1).is_err());
}

#[test]
fn normalization_uses_the_training_statistics() {
    let ds = small_set(64, 4);
    let n = ds.channel_stats();
    let x = n.apply(&ds.images_tensor(Device::Cpu)).unwrap();
    assert_eq!(x.kind(), Kind::Float);
    for c in 0..3 {
        let ch = x.select(1, c);
        assert!(ch.mean(Kind::Double).double_value(&[]).abs() < 1e-4);
        let sd = (ch.square().mean(Kind::Double)).double_value(&[]).sqrt();
        assert!((sd - 1.0).abs() < 1e-3, "{sd}");
    }
    // Uniform random bytes: mean about 127.5/255, std about 73.9/255.
    assert!(
        (n.mean[0] - 0.5).abs() < 0.05 && (n.std[0] - 0.29).abs() < 0.03,
        "{n:?}"
    );
}

#[test]
fn augmentation_is_seeded_and_changes_pixels() {
    let ds = small_set(32, 4);
    let x = ds.images_tensor(Device::Cpu);
    let aug = Augment::default();
    let a = aug.apply(&x, &mut SplitMix64::new(5)).unwrap();
    let b = aug.apply(&x, &mut SplitMix64::new(5)).unwrap();
    let c = aug.apply(&x, &mut SplitMix64::new(6)).unwrap();
    assert_eq!(a.size(), vec![32, 3, 8, 8]);
    assert_eq!(a.kind(), Kind::Uint8);
    assert!(a.equal(&b));
    assert!(!a.equal(&c));
    assert!(!a.equal(&x));

    // Each image is its own crop of the padded original, flipped or not.
    let draw = aug.draw(32, &mut SplitMix64::new(5));
    assert!(draw.flip.iter().any(|&f| f) && draw.flip.iter().any(|&f| !f));
    let padded = x.constant_pad_nd([4, 4, 4, 4]);
    for k in 0..32 {
        let crop =
            padded
                .get(k)
                .narrow(1, draw.dy[k as usize], 8)
                .narrow(2, draw.dx[k as usize], 8);
        let want = if draw.flip[k as usize] {
            crop.flip([2])
        } else {
            crop
        };
        assert!(a.get(k).equal(&want), "image {k}");
    }

    // Flip only: exactly the mirror images, nothing else moves.
    let flip_only = Augment { pad: 0, flip: true };
    let y = flip_only.apply(&x, &mut SplitMix64::new(3)).unwrap();
    let d = flip_only.draw(32, &mut SplitMix64::new(3));
    for k in 0..32 {
        let want = if d.flip[k as usize] {
            x.get(k).flip([2])
        } else {
            x.get(k)
        };
        assert!(y.get(k).equal(&want));
    }
    // Crop only, on floats.
    let crop_only = Augment {
        pad: 4,
        flip: false,
    };
    let xf = x.to_kind(Kind::Float);
    let z = crop_only.apply(&xf, &mut SplitMix64::new(3)).unwrap();
    assert_eq!(z.kind(), Kind::Float);
    assert!(!z.equal(&xf));
}

#[test]
fn loader_is_seeded_per_epoch_and_resumes_exactly() {
    let ds = small_set(50, 5);
    let make = || {
        Loader::new(&ds, 16, Device::Cpu)
            .unwrap()
            .shuffled(11)
            .augmented(Augment::default())
    };
    let l = make();
    assert_eq!(l.batches_per_epoch(), 4);
    let e0: Vec<Batch> = l.epoch(0).map(Result::unwrap).collect();
    assert_eq!(
        e0.iter().map(|b| b.images.size()[0]).collect::<Vec<_>>(),
        vec![16, 16, 16, 2]
    );
    assert_eq!(e0[0].images.kind(), Kind::Float);
    assert_eq!(e0[0].labels.kind(), Kind::Int64);

    // Every image once per epoch.
    let mut order = l.order(0);
    order.sort_unstable();
    assert_eq!(order, (0..50).collect::<Vec<_>>());
    let labels: Vec<i64> = e0
        .iter()
        .flat_map(|b| Vec::<i64>::try_from(&b.labels).unwrap())
        .collect();
    let want: Vec<i64> = l.order(0).iter().map(|&i| ds.labels[i]).collect();
    assert_eq!(labels, want);

    // A fresh loader (a resumed run) gives the same batches, also from the middle.
    let l2 = make();
    let again: Vec<Batch> = l2.epoch(0).map(Result::unwrap).collect();
    for (x, y) in e0.iter().zip(&again) {
        assert!(x.images.equal(&y.images) && x.labels.equal(&y.labels));
    }
    let resumed = l2.epoch_from(0, 2).next().unwrap().unwrap();
    assert_eq!(resumed.index, 2);
    assert!(resumed.images.equal(&e0[2].images));
    assert_eq!(l2.epoch_from(0, 2).len(), 2);

    // Another epoch, another order; another seed, another order.
    assert_ne!(l.order(0), l.order(1));
    assert_ne!(l.order(0), make().shuffled(12).order(0));

    // Unshuffled, unaugmented, drop_last: in order, scaled to [0, 1].
    let plain = Loader::new(&ds, 16, Device::Cpu).unwrap().drop_last(true);
    assert_eq!(plain.batches_per_epoch(), 3);
    let b = plain.epoch(5).next().unwrap().unwrap();
    let want = ds
        .images_tensor(Device::Cpu)
        .narrow(0, 0, 16)
        .to_kind(Kind::Float)
        / 255.0;
    assert!(b.images.allclose(&want, 0.0, 0.0, false));

    assert!(Loader::new(&ds, 0, Device::Cpu).is_err());
    let _ = Tensor::zeros([1], (Kind::Float, Device::Cpu));
}

#[test]
fn dataset_constructor_rejects_bad_input() {
    assert!(Dataset::new("x", vec![0; 10], vec![0], [1, 2, 2], 2).is_err());
    assert!(Dataset::new("x", vec![0; 4], vec![2], [1, 2, 2], 2).is_err());
    assert!(Dataset::new("x", vec![0; 4], vec![-1], [1, 2, 2], 2).is_err());
    let d = Dataset::new("x", vec![0; 8], vec![1, 0], [1, 2, 2], 2).unwrap();
    assert_eq!(d.class_counts(), vec![1, 1]);
    assert!(d.subset(&[2], "y").is_err());
}
