//! Seeded mini-batches on a device. The whole data set is moved to the device once as bytes;
//! each batch is an `index_select`, then optional augmentation, then normalisation to f32.
//!
//! The order of epoch `e` and the augmentation of batch `b` of it depend only on
//! `(seed, e)` and `(seed, e, b)`: a run resumed at epoch `e`, batch `b` sees exactly the
//! batches it would have seen ([`Loader::epoch_from`]).

use tch::{Device, Kind, Tensor};

use super::augment::Augment;
use super::dataset::{Dataset, Normalization};
use super::error::{DataError, Result};
use super::rng::{derive_seed, SplitMix64};

const ORDER_TAG: u64 = 0x004f_5244_4552; // "ORDER"
const AUGMENT_TAG: u64 = 0x4155_474d; // "AUGM"

/// One mini-batch: images (B, C, H, W) as f32 (normalised if the loader normalises, else
/// scaled to [0, 1]) and labels (B) as i64, both on the loader's device.
#[derive(Debug)]
pub struct Batch {
    /// Position of the batch in its epoch.
    pub index: usize,
    pub images: Tensor,
    pub labels: Tensor,
}

/// Mini-batches over a data set held on a device.
#[derive(Debug)]
pub struct Loader {
    images: Tensor,
    labels: Tensor,
    len: usize,
    device: Device,
    batch_size: usize,
    drop_last: bool,
    shuffle: Option<u64>,
    augment: Option<Augment>,
    normalize: Option<Normalization>,
}

impl Loader {
    /// A loader of `batch_size` images, in order, without augmentation, scaled to [0, 1].
    pub fn new(ds: &Dataset, batch_size: usize, device: Device) -> Result<Self> {
        if batch_size == 0 {
            return Err(DataError::Invalid(
                "the batch size must be at least 1".into(),
            ));
        }
        if ds.is_empty() {
            return Err(DataError::Invalid(format!("{} is empty", ds.name)));
        }
        Ok(Loader {
            images: ds.images_tensor(device),
            labels: ds.labels_tensor(device),
            len: ds.len(),
            device,
            batch_size,
            drop_last: false,
            shuffle: None,
            augment: None,
            normalize: None,
        })
    }

    /// Shuffle every epoch, seeded by `(seed, epoch)`; also seeds the augmentation.
    pub fn shuffled(mut self, seed: u64) -> Self {
        self.shuffle = Some(seed);
        self
    }

    /// Augment every batch (seeded by the shuffle seed, or 0 without one).
    pub fn augmented(mut self, augment: Augment) -> Self {
        self.augment = Some(augment);
        self
    }

    /// Normalise every batch with these statistics (computed on the training part).
    pub fn normalized(mut self, n: Normalization) -> Self {
        self.normalize = Some(n);
        self
    }

    /// Drop the last batch of an epoch when it is smaller than the batch size.
    pub fn drop_last(mut self, drop: bool) -> Self {
        self.drop_last = drop;
        self
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// Batches in one epoch.
    pub fn batches_per_epoch(&self) -> usize {
        if self.drop_last {
            self.len / self.batch_size
        } else {
            self.len.div_ceil(self.batch_size)
        }
    }

    /// The order in which epoch `epoch` visits the images.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        match self.shuffle {
            Some(seed) => {
                SplitMix64::new(derive_seed(&[seed, epoch, ORDER_TAG])).permutation(self.len)
            }
            None => (0..self.len).collect(),
        }
    }

    /// The batches of epoch `epoch`.
    pub fn epoch(&self, epoch: u64) -> Batches<'_> {
        self.epoch_from(epoch, 0)
    }

    /// The batches of epoch `epoch` from batch `first` on (to resume a run mid-epoch).
    pub fn epoch_from(&self, epoch: u64, first: usize) -> Batches<'_> {
        Batches {
            loader: self,
            epoch,
            order: self.order(epoch),
            next: first,
        }
    }

    fn batch(&self, epoch: u64, index: usize, ids: &[usize]) -> Result<Batch> {
        let ids: Vec<i64> = ids.iter().map(|&i| i as i64).collect();
        let ids = Tensor::from_slice(&ids).to_device(self.device);
        let mut images = self.images.f_index_select(0, &ids)?;
        let labels = self.labels.f_index_select(0, &ids)?;
        if let Some(a) = &self.augment {
            let seed = derive_seed(&[self.shuffle.unwrap_or(0), epoch, index as u64, AUGMENT_TAG]);
            images = a.apply(&images, &mut SplitMix64::new(seed))?;
        }
        let images = match &self.normalize {
            Some(n) => n.apply(&images)?,
            None => images.f_to_kind(Kind::Float)? / 255.0,
        };
        Ok(Batch {
            index,
            images,
            labels,
        })
    }
}

/// The batches of one epoch, in order.
pub struct Batches<'a> {
    loader: &'a Loader,
    epoch: u64,
    order: Vec<usize>,
    next: usize,
}

impl Iterator for Batches<'_> {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        let l = self.loader;
        if self.next >= l.batches_per_epoch() {
            return None;
        }
        let start = self.next * l.batch_size;
        let end = (start + l.batch_size).min(l.len);
        let index = self.next;
        self.next += 1;
        Some(l.batch(self.epoch, index, &self.order[start..end]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.loader.batches_per_epoch().saturating_sub(self.next);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}
