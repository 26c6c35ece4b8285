//! Batched, seeded augmentation on the device: random crop after zero padding, and horizontal
//! flip, applied to a whole (N, C, H, W) batch in one gather.
//!
//! The random draws (crop offsets, flip flags) come from a [`SplitMix64`] on the host, so a
//! seed gives the same augmentation on CPU and GPU and libtorch's global generator is never
//! touched. Only the small index tensors travel to the device.

use tch::{Device, Kind, Tensor};

use super::error::{DataError, Result};
use super::rng::SplitMix64;

/// The standard CIFAR augmentation: pad by `pad` zero pixels on each side, crop back to the
/// original size at a random offset, and flip left-right with probability 1/2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    /// Zero padding on each side before the random crop (0: no crop).
    pub pad: usize,
    /// Flip left-right with probability 1/2.
    pub flip: bool,
}

impl Default for Augment {
    fn default() -> Self {
        Augment { pad: 4, flip: true }
    }
}

/// The random choices for one batch: per image, the crop offsets into the padded image
/// (each in `0..=2·pad`) and whether it is flipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    pub dy: Vec<i64>,
    pub dx: Vec<i64>,
    pub flip: Vec<bool>,
}

impl Augment {
    /// Draws the choices for `n` images.
    pub fn draw(&self, n: usize, rng: &mut SplitMix64) -> Draw {
        let span = 2 * self.pad as u64 + 1;
        let mut d = Draw {
            dy: Vec::with_capacity(n),
            dx: Vec::with_capacity(n),
            flip: Vec::with_capacity(n),
        };
        for _ in 0..n {
            d.dy.push(rng.below(span) as i64);
            d.dx.push(rng.below(span) as i64);
            d.flip.push(self.flip && rng.coin());
        }
        d
    }

    /// Augments a batch (N, C, H, W) of any kind on its device with choices drawn from `rng`.
    pub fn apply(&self, images: &Tensor, rng: &mut SplitMix64) -> Result<Tensor> {
        let n = images.size().first().copied().unwrap_or(0).max(0) as usize;
        let draw = self.draw(n, rng);
        self.apply_draw(images, &draw)
    }

    /// Augments a batch with given choices: output pixel `(n, c, i, j)` is padded pixel
    /// `(n, c, dy[n] + i, dx[n] + j)`, or `(n, c, dy[n] + i, dx[n] + W - 1 - j)` when flipped.
    pub(crate) fn apply_draw(&self, images: &Tensor, draw: &Draw) -> Result<Tensor> {
        let size = images.size();
        let [n, c, h, w] = match size.as_slice() {
            &[n, c, h, w] => [n, c, h, w],
            _ => {
                return Err(DataError::Invalid(format!(
                    "augmentation needs an (N, C, H, W) batch, got shape {size:?}"
                )))
            }
        };
        let nu = n as usize;
        if draw.dy.len() != nu || draw.dx.len() != nu || draw.flip.len() != nu {
            return Err(DataError::Invalid(format!(
                "augmentation draws for {} images applied to a batch of {n}",
                draw.dy.len()
            )));
        }
        let span = 2 * self.pad as i64;
        if draw.dy.iter().chain(&draw.dx).any(|&d| d < 0 || d > span) {
            return Err(DataError::Invalid(format!(
                "crop offsets must be in 0..={span}"
            )));
        }
        let device: Device = images.device();
        let p = self.pad as i64;
        let padded = images.f_constant_pad_nd([p, p, p, p])?;
        let mut rows = Vec::with_capacity(nu * h as usize);
        let mut cols = Vec::with_capacity(nu * w as usize);
        for k in 0..nu {
            rows.extend((0..h).map(|i| draw.dy[k] + i));
            if draw.flip[k] {
                cols.extend((0..w).map(|j| draw.dx[k] + w - 1 - j));
            } else {
                cols.extend((0..w).map(|j| draw.dx[k] + j));
            }
        }
        let rows = Tensor::from_slice(&rows)
            .view([n, 1, h, 1])
            .to_device(device);
        let cols = Tensor::from_slice(&cols)
            .view([n, 1, 1, w])
            .to_device(device);
        let ni = Tensor::f_arange(n, (Kind::Int64, device))?.view([n, 1, 1, 1]);
        let ci = Tensor::f_arange(c, (Kind::Int64, device))?.view([1, c, 1, 1]);
        Ok(padded.f_index(&[Some(ni), Some(ci), Some(rows), Some(cols)])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_offsets_at_pad_without_flip_is_identity() {
        let x = Tensor::arange(2 * 3 * 4 * 5, (Kind::Float, Device::Cpu)).view([2, 3, 4, 5]);
        let a = Augment { pad: 2, flip: true };
        let d = Draw {
            dy: vec![2, 2],
            dx: vec![2, 2],
            flip: vec![false, true],
        };
        let y = a.apply_draw(&x, &d).unwrap();
        assert_eq!(y.size(), vec![2, 3, 4, 5]);
        assert!(y.get(0).equal(&x.get(0)));
        assert!(y.get(1).equal(&x.get(1).flip([2])));
    }

    #[test]
    fn shift_moves_pixels_and_fills_zeros() {
        let x = Tensor::ones([1, 1, 3, 3], (Kind::Uint8, Device::Cpu));
        let a = Augment {
            pad: 1,
            flip: false,
        };
        let d = Draw {
            dy: vec![0],
            dx: vec![2],
            flip: vec![false],
        };
        let y = a.apply_draw(&x, &d).unwrap();
        // Window starts one row above the image and one column right of its left edge.
        let v: Vec<u8> = Vec::try_from(y.flatten(0, -1)).unwrap();
        assert_eq!(v, vec![0, 0, 0, 1, 1, 0, 1, 1, 0]);
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let a = Augment::default();
        let x = Tensor::zeros([3, 4], (Kind::Float, Device::Cpu));
        assert!(a.apply(&x, &mut SplitMix64::new(0)).is_err());
        let x = Tensor::zeros([1, 1, 4, 4], (Kind::Float, Device::Cpu));
        let d = Draw {
            dy: vec![9],
            dx: vec![0],
            flip: vec![false],
        };
        assert!(a.apply_draw(&x, &d).is_err());
    }
}
