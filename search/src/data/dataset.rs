//! The in-memory data set, its seeded train/validation split, and per-channel normalisation.

use tch::{Device, Kind, Tensor};

use super::error::{DataError, Result};
use super::rng::{derive_seed, SplitMix64};

/// Images and labels held on the host: `images` is `len × channels × height × width` bytes,
/// row-major (N, C, H, W), the way the CIFAR binaries and MNIST store them.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// A short name such as `cifar10-train`.
    pub name: String,
    /// Pixel bytes, (N, C, H, W) row-major.
    pub images: Vec<u8>,
    /// One label per image, each in `0..classes`.
    pub labels: Vec<i64>,
    /// Channels, height, width of one image.
    pub shape: [usize; 3],
    /// Number of classes.
    pub classes: usize,
    /// Class names, where the data set ships them (may be empty).
    pub class_names: Vec<String>,
}

/// How large the validation part is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValSize {
    /// A fraction of the training set, in `[0, 1)`, rounded to the nearest image.
    Fraction(f64),
    /// A number of images.
    Count(usize),
}

/// A training set cut in two by [`Dataset::split`]; `train_indices` and `val_indices` are
/// positions in the original set, ascending, disjoint, and together all of it.
#[derive(Debug, Clone)]
pub struct Split {
    pub train: Dataset,
    pub val: Dataset,
    pub train_indices: Vec<usize>,
    pub val_indices: Vec<usize>,
}

/// Per-channel mean and standard deviation on the `[0, 1]` scale.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
}

impl Dataset {
    /// Builds a data set, checking that the sizes agree and the labels are in range.
    pub fn new(
        name: impl Into<String>,
        images: Vec<u8>,
        labels: Vec<i64>,
        shape: [usize; 3],
        classes: usize,
    ) -> Result<Self> {
        let name = name.into();
        let per = shape.iter().product::<usize>();
        if per == 0 || images.len() != labels.len() * per {
            return Err(DataError::Invalid(format!(
                "{name}: {} pixel bytes for {} labels of {:?} images",
                images.len(),
                labels.len(),
                shape
            )));
        }
        if let Some((i, l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l < 0 || l as usize >= classes)
        {
            return Err(DataError::Invalid(format!(
                "{name}: label {l} of image {i} is outside 0..{classes}"
            )));
        }
        Ok(Dataset {
            name,
            images,
            labels,
            shape,
            classes,
            class_names: Vec::new(),
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image (C·H·W).
    pub(crate) fn image_bytes(&self) -> usize {
        self.shape.iter().product()
    }

    /// The pixels of image `i`, (C, H, W).
    pub fn image(&self, i: usize) -> &[u8] {
        let per = self.image_bytes();
        &self.images[i * per..(i + 1) * per]
    }

    /// How many images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize], name: impl Into<String>) -> Result<Dataset> {
        let per = self.image_bytes();
        let mut images = Vec::with_capacity(indices.len() * per);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            if i >= self.len() {
                return Err(DataError::Invalid(format!(
                    "{}: index {i} out of range (size {})",
                    self.name,
                    self.len()
                )));
            }
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Ok(Dataset {
            name: name.into(),
            images,
            labels,
            shape: self.shape,
            classes: self.classes,
            class_names: self.class_names.clone(),
        })
    }

    /// The first `n` images (all of them if there are fewer): a quick subset for smoke runs.
    pub fn take(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        let per = self.image_bytes();
        Dataset {
            name: self.name.clone(),
            images: self.images[..n * per].to_vec(),
            labels: self.labels[..n].to_vec(),
            shape: self.shape,
            classes: self.classes,
            class_names: self.class_names.clone(),
        }
    }

    /// Carves a validation part out of this (training) set: a seeded shuffle of the indices,
    /// the first `val` of them become the validation part, the rest the training part; each
    /// part keeps the original order. The same seed always gives the same split, on any
    /// machine (the generator is SplitMix64, not libtorch's).
    pub fn split(&self, val: ValSize, seed: u64) -> Result<Split> {
        let n = self.len();
        let n_val = match val {
            ValSize::Fraction(f) if (0.0..1.0).contains(&f) => (f * n as f64).round() as usize,
            ValSize::Fraction(f) => {
                return Err(DataError::Invalid(format!(
                    "validation fraction {f} is not in [0, 1)"
                )))
            }
            ValSize::Count(k) => k,
        };
        if n_val >= n {
            return Err(DataError::Invalid(format!(
                "a validation part of {n_val} images leaves nothing to train on in {} ({n} images)",
                self.name
            )));
        }
        let mut rng = SplitMix64::new(derive_seed(&[seed, 0x0053_504c_4954]));
        let perm = rng.permutation(n);
        let mut val_indices = perm[..n_val].to_vec();
        let mut train_indices = perm[n_val..].to_vec();
        val_indices.sort_unstable();
        train_indices.sort_unstable();
        let base = self.name.strip_suffix("-train").unwrap_or(&self.name);
        Ok(Split {
            train: self.subset(&train_indices, format!("{base}-train"))?,
            val: self.subset(&val_indices, format!("{base}-val"))?,
            train_indices,
            val_indices,
        })
    }

    /// Per-channel mean and (population) standard deviation of the pixels on the `[0, 1]`
    /// scale. Compute it on the training part only and apply it to every part.
    pub fn channel_stats(&self) -> Normalization {
        let [c, h, w] = self.shape;
        let plane = h * w;
        let mut sum = vec![0u64; c];
        let mut sq = vec![0u64; c];
        for img in self.images.chunks_exact(c * plane) {
            for (ch, px) in img.chunks_exact(plane).enumerate() {
                let (s, q) = px.iter().fold((0u64, 0u64), |(s, q), &p| {
                    let p = u64::from(p);
                    (s + p, q + p * p)
                });
                sum[ch] += s;
                sq[ch] += q;
            }
        }
        let count = (self.len() * plane).max(1) as f64;
        let mean: Vec<f64> = sum.iter().map(|&s| s as f64 / count / 255.0).collect();
        let std = sq
            .iter()
            .zip(&mean)
            .map(|(&q, &m)| {
                let var = q as f64 / count / (255.0 * 255.0) - m * m;
                var.max(0.0).sqrt()
            })
            .collect();
        Normalization { mean, std }
    }

    /// All the images as a u8 tensor (N, C, H, W) on `device`.
    pub fn images_tensor(&self, device: Device) -> Tensor {
        let [c, h, w] = self.shape;
        Tensor::from_slice(&self.images)
            .view([self.len() as i64, c as i64, h as i64, w as i64])
            .to_device(device)
    }

    /// All the labels as an i64 tensor (N) on `device`.
    pub fn labels_tensor(&self, device: Device) -> Tensor {
        Tensor::from_slice(&self.labels).to_device(device)
    }
}

impl Normalization {
    /// `(x / 255 - mean) / std` per channel, as f32, on the device of `images`
    /// (u8 or float, (N, C, H, W)).
    pub fn apply(&self, images: &Tensor) -> Result<Tensor> {
        let size = images.size();
        if size.len() != 4 || size[1] as usize != self.mean.len() {
            return Err(DataError::Invalid(format!(
                "normalisation of {} channels applied to a tensor of shape {size:?}",
                self.mean.len()
            )));
        }
        if self.std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
            return Err(DataError::Invalid(format!(
                "normalisation with a zero or non-finite standard deviation {:?}",
                self.std
            )));
        }
        let device = images.device();
        let c = self.mean.len() as i64;
        let mean: Vec<f32> = self.mean.iter().map(|&m| m as f32).collect();
        let std: Vec<f32> = self.std.iter().map(|&s| s as f32).collect();
        let mean = Tensor::from_slice(&mean)
            .view([1, c, 1, 1])
            .to_device(device);
        let std = Tensor::from_slice(&std)
            .view([1, c, 1, 1])
            .to_device(device);
        let x = images.to_kind(Kind::Float) / 255.0;
        Ok((x - mean) / std)
    }
}
