//! Small synthetic data sets in the official file layouts, for tests and examples that must run
//! without the real data: random pixels with a weak class signal, so training can lower the loss.

use std::path::{Path, PathBuf};

use super::error::{DataError, Result};
use super::rng::SplitMix64;

/// Writes `cifar-10-batches-bin/` under `dir` with `per_file` random records in each of the six
/// batch files (labels 0..10, pixels shifted by 12·label), and returns the folder.
pub fn write_cifar10(dir: &Path, per_file: usize, seed: u64) -> Result<PathBuf> {
    let root = dir.join("cifar-10-batches-bin");
    let io =
        |path: &Path, e: std::io::Error| DataError::Invalid(format!("{}: {e}", path.display()));
    std::fs::create_dir_all(&root).map_err(|e| io(&root, e))?;
    let mut rng = SplitMix64::new(seed);
    let files = [
        "data_batch_1",
        "data_batch_2",
        "data_batch_3",
        "data_batch_4",
        "data_batch_5",
        "test_batch",
    ];
    for f in files {
        let mut bytes = Vec::with_capacity(per_file * 3073);
        for _ in 0..per_file {
            let label = (rng.next_u64() % 10) as u8;
            bytes.push(label);
            for _ in 0..3072 {
                bytes.push(((rng.next_u64() >> 56) as u8 / 2).wrapping_add(label.wrapping_mul(12)));
            }
        }
        let path = root.join(format!("{f}.bin"));
        std::fs::write(&path, bytes).map_err(|e| io(&path, e))?;
    }
    Ok(root)
}
