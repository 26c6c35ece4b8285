//! A small seeded generator (SplitMix64) for shuffles, splits and augmentation draws.
//!
//! Everything random in the data layer comes from here, never from libtorch's global
//! generator, so a seed fixes the data order and the augmentations on every device.

/// SplitMix64 (Steele, Lea and Flood, 2014): 64 bits of state, passes BigCrush, and is
/// trivially reproducible.
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// One round of the SplitMix64 output function: a good 64-bit mixer.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A seed derived from several numbers (a run seed, an epoch, a batch index, a purpose tag).
/// Different inputs give unrelated streams.
pub(crate) fn derive_seed(parts: &[u64]) -> u64 {
    parts.iter().fold(0x6F70_7461_7263_6821u64, |acc, &p| {
        mix64(acc.wrapping_add(GOLDEN) ^ mix64(p.wrapping_add(GOLDEN)))
    })
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix64(self.state)
    }

    /// Uniform in `0..n` without modulo bias (`n == 0` gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Rejection sampling on the largest multiple of n.
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Uniform in `[0, 1)` (53 random bits).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// A fair coin.
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }

    /// Fisher-Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }

    /// A random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<usize> {
        let mut p: Vec<usize> = (0..n).collect();
        self.shuffle(&mut p);
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_first_outputs() {
        // Reference values of SplitMix64 seeded with 0 (from the published C code).
        let mut r = SplitMix64::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn permutation_is_a_permutation_and_seeded() {
        let a = SplitMix64::new(7).permutation(1000);
        let b = SplitMix64::new(7).permutation(1000);
        let c = SplitMix64::new(8).permutation(1000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = SplitMix64::new(1);
        let mut seen = [0usize; 9];
        for _ in 0..9000 {
            let x = r.below(9) as usize;
            seen[x] += 1;
        }
        assert!(seen.iter().all(|&k| k > 800 && k < 1200), "{seen:?}");
        assert_eq!(r.below(0), 0);
    }

    #[test]
    fn derived_seeds_differ() {
        assert_ne!(derive_seed(&[1, 0]), derive_seed(&[0, 1]));
        assert_ne!(derive_seed(&[1, 2, 3]), derive_seed(&[1, 2, 4]));
        assert_eq!(derive_seed(&[5, 6]), derive_seed(&[5, 6]));
    }
}
