//! Small statistics for reports: rank correlations (Kendall's τ-b, Spearman's ρ with average
//! ranks for ties), mean, sample standard deviation, median, and Student's t intervals for
//! paired differences.

/// The pairs of `x` and `y` where both values are finite; `None` when the lengths differ.
fn finite_pairs(x: &[f64], y: &[f64]) -> Option<Vec<(f64, f64)>> {
    if x.len() != y.len() {
        return None;
    }
    Some(
        x.iter()
            .zip(y)
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|(a, b)| (*a, *b))
            .collect(),
    )
}

fn sign(v: f64) -> f64 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// Kendall's rank correlation τ-b of paired samples, which accounts for ties on either side:
/// `(concordant − discordant) / √((n₀ − tiesₓ)(n₀ − ties_y))` over all `n₀ = n(n−1)/2` pairs.
///
/// Pairs where either value is not finite are left out first. `None` when the slices differ
/// in length, fewer than 2 pairs remain, or one side is constant.
///
/// ```
/// use optarch_search::report::kendall_tau;
/// assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
/// assert_eq!(kendall_tau(&[1.0, 1.0], &[1.0, 2.0]), None);
/// ```
pub fn kendall_tau(x: &[f64], y: &[f64]) -> Option<f64> {
    let p = finite_pairs(x, y)?;
    if p.len() < 2 {
        return None;
    }
    let (mut s, mut untied_x, mut untied_y) = (0.0, 0.0, 0.0);
    for i in 0..p.len() {
        for j in i + 1..p.len() {
            let (dx, dy) = (sign(p[j].0 - p[i].0), sign(p[j].1 - p[i].1));
            s += dx * dy;
            untied_x += dx.abs();
            untied_y += dy.abs();
        }
    }
    if untied_x == 0.0 || untied_y == 0.0 {
        return None;
    }
    Some((s / (untied_x * untied_y).sqrt()).clamp(-1.0, 1.0))
}

/// The largest sample whose p-value is computed exactly (8! = 40,320 permutations).
const EXACT_MAX: usize = 8;

/// The share of the orders of `ys` whose statistic is at least as far from 0 as the observed
/// one: the exact two-sided permutation p-value under independence. Heap's algorithm visits
/// every permutation once.
fn permutation_p_value(xs: &[f64], mut ys: Vec<f64>, observed: f64, stat: Statistic) -> f64 {
    let n = ys.len();
    let (mut total, mut extreme) = (0u64, 0u64);
    let mut visit = |ys: &[f64]| {
        total += 1;
        if stat(xs, ys).is_some_and(|v| v.abs() >= observed.abs() - 1e-12) {
            extreme += 1;
        }
    };
    visit(&ys);
    let mut c = vec![0usize; n];
    let mut i = 1;
    while i < n {
        if c[i] < i {
            let j = if i % 2 == 0 { 0 } else { c[i] };
            ys.swap(j, i);
            visit(&ys);
            c[i] += 1;
            i = 1;
        } else {
            c[i] = 0;
            i += 1;
        }
    }
    extreme as f64 / total as f64
}

/// A rank correlation of paired samples.
type Statistic = fn(&[f64], &[f64]) -> Option<f64>;

/// The two-sided p-value of a rank correlation under independence: exact (every permutation,
/// [`permutation_p_value`]) up to [`EXACT_MAX`] finite pairs, else from the statistic's normal
/// approximation `z = value · scale(n)`. `None` where the statistic is.
fn rank_p_value(x: &[f64], y: &[f64], stat: Statistic, scale: fn(f64) -> f64) -> Option<f64> {
    let observed = stat(x, y)?;
    let (xs, ys): (Vec<f64>, Vec<f64>) = finite_pairs(x, y)?.into_iter().unzip();
    if xs.len() <= EXACT_MAX {
        return Some(permutation_p_value(&xs, ys, observed, stat));
    }
    let z = observed * scale(xs.len() as f64);
    Some(erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0))
}

/// The two-sided p-value of Kendall's τ-b under independence: the probability that shuffled
/// pairs correlate at least as strongly. Exact (every permutation of `y`) up to 8 pairs, else
/// the normal approximation `z = 3τ√(n(n−1)) / √(2(2n+5))`. `None` where τ is.
pub(super) fn kendall_p_value(x: &[f64], y: &[f64]) -> Option<f64> {
    rank_p_value(x, y, kendall_tau, |n| {
        3.0 * (n * (n - 1.0)).sqrt() / (2.0 * (2.0 * n + 5.0)).sqrt()
    })
}

/// The two-sided p-value of Spearman's ρ under independence: exact up to 8 pairs, else the
/// normal approximation `z = ρ√(n−1)`. `None` where ρ is.
pub(super) fn spearman_p_value(x: &[f64], y: &[f64]) -> Option<f64> {
    rank_p_value(x, y, spearman_rho, |n| (n - 1.0).sqrt())
}

/// The complementary error function for x ≥ 0 (Abramowitz and Stegun 7.1.26, absolute error
/// below 1.5e-7).
fn erfc(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    poly * (-x * x).exp()
}

/// Ranks from 1, tied values sharing the average of the ranks they span.
pub(crate) fn average_ranks(v: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut ranks = vec![0.0; v.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && v[order[j + 1]] == v[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) hold ranks i+1..=j+1; their average is (i + j)/2 + 1.
        let r = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's rank correlation ρ: Pearson's correlation of the ranks, tied values taking the
/// average of the ranks they span.
///
/// Pairs where either value is not finite are left out first. `None` when the slices differ
/// in length, fewer than 2 pairs remain, or one side is constant.
///
/// ```
/// use optarch_search::report::spearman_rho;
/// let rho = spearman_rho(&[1.0, 2.0, 3.0, 4.0], &[1.0, 4.0, 9.0, 16.0]).unwrap();
/// assert!((rho - 1.0).abs() < 1e-12);
/// ```
pub fn spearman_rho(x: &[f64], y: &[f64]) -> Option<f64> {
    let p = finite_pairs(x, y)?;
    if p.len() < 2 {
        return None;
    }
    let rx = average_ranks(&p.iter().map(|q| q.0).collect::<Vec<_>>());
    let ry = average_ranks(&p.iter().map(|q| q.1).collect::<Vec<_>>());
    let n = p.len() as f64;
    // Both rank vectors have mean (n + 1) / 2.
    let m = (n + 1.0) / 2.0;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        sxy += (a - m) * (b - m);
        sxx += (a - m) * (a - m);
        syy += (b - m) * (b - m);
    }
    if sxx == 0.0 || syy == 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// The arithmetic mean; `None` for no values.
pub(crate) fn mean(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        None
    } else {
        Some(v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// The sample standard deviation (divisor n − 1); `None` for fewer than 2 values.
pub(crate) fn sample_std(v: &[f64]) -> Option<f64> {
    if v.len() < 2 {
        return None;
    }
    let m = mean(v)?;
    let ss: f64 = v.iter().map(|x| (x - m) * (x - m)).sum();
    Some((ss / (v.len() - 1) as f64).sqrt())
}

/// The median (the mean of the middle two for an even count); `None` for no values.
pub(crate) fn median(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    })
}

/// The 97.5 % quantile of Student's t distribution with `df` degrees of freedom (the half-width
/// factor of a two-sided 95 % interval): the tabulated values up to 30, beyond that the
/// Cornish–Fisher expansion around the normal quantile (error below 1e-4). `None` for 0.
pub(crate) fn t_975(df: usize) -> Option<f64> {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => None,
        1..=30 => TABLE.get(df - 1).copied(),
        _ => {
            let (z, v) = (1.959_963_984_540_054_f64, df as f64);
            let g1 = (z.powi(3) + z) / 4.0;
            let g2 = (5.0 * z.powi(5) + 16.0 * z.powi(3) + 3.0 * z) / 96.0;
            let g3 = (3.0 * z.powi(7) + 19.0 * z.powi(5) + 17.0 * z.powi(3) - 15.0 * z) / 384.0;
            Some(z + g1 / v + g2 / (v * v) + g3 / (v * v * v))
        }
    }
}

/// A mean difference with its two-sided 95 % interval (Student's t over the pairs).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub(crate) struct Interval {
    /// Pairs.
    pub n: usize,
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    /// Whether the interval excludes 0: the difference is resolved at this budget.
    pub(crate) fn resolved(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }
}

/// The mean of `a[i] − b[i]` with its 95 % t interval; `None` for fewer than 2 pairs or
/// lengths that differ.
pub(crate) fn paired_interval(a: &[f64], b: &[f64]) -> Option<Interval> {
    if a.len() != b.len() || a.len() < 2 {
        return None;
    }
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let m = mean(&d)?;
    let half = t_975(d.len() - 1)? * sample_std(&d)? / (d.len() as f64).sqrt();
    Some(Interval {
        n: d.len(),
        mean: m,
        lo: m - half,
        hi: m + half,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: Option<f64>, b: f64) -> bool {
        a.is_some_and(|a| (a - b).abs() < 1e-12)
    }

    #[test]
    fn average_ranks_share_ties() {
        assert_eq!(
            average_ranks(&[10.0, 30.0, 20.0, 30.0, 5.0]),
            vec![2.0, 4.5, 3.0, 4.5, 1.0]
        );
        assert_eq!(average_ranks(&[7.0, 7.0, 7.0]), vec![2.0, 2.0, 2.0]);
    }

    #[test]
    fn kendall_counts_concordant_and_discordant_pairs() {
        // x = 1..5, y = [3, 1, 2, 5, 4]: of 10 pairs, 3 are discordant ((1,2), (1,3), (4,5)).
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        let y = [3.0, 1.0, 2.0, 5.0, 4.0];
        assert!(close(kendall_tau(&x, &y), (7.0 - 3.0) / 10.0));
        // Spearman: Σd² = 4 + 1 + 1 + 1 + 1 = 8, ρ = 1 − 6·8 / (5·24) = 0.6.
        assert!(close(spearman_rho(&x, &y), 0.6));
    }

    #[test]
    fn degenerate_inputs_have_no_correlation() {
        assert_eq!(kendall_tau(&[1.0], &[2.0]), None);
        assert_eq!(spearman_rho(&[1.0, 2.0], &[3.0, 3.0]), None);
        assert_eq!(kendall_tau(&[1.0, 2.0], &[1.0]), None);
        // A non-finite value drops its pair, leaving two points that agree.
        assert_eq!(
            kendall_tau(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0]),
            Some(1.0)
        );
        assert_eq!(spearman_rho(&[1.0, f64::NAN], &[1.0, 2.0]), None);
    }

    #[test]
    fn kendall_p_values_exact_and_approximate() {
        // n = 4, a perfect ranking: 2 of the 24 orders are as extreme (itself and its reverse).
        let x = [1.0, 2.0, 3.0, 4.0];
        let p = kendall_p_value(&x, &[4.0, 3.0, 2.0, 1.0]).unwrap();
        assert!((p - 2.0 / 24.0).abs() < 1e-12, "{p}");
        // n = 3, τ = 1/3: every order is as extreme (τ only takes the values ±1 and ±1/3).
        assert_eq!(
            kendall_p_value(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0]),
            Some(1.0)
        );
        // n = 20, perfect: z = 3·√380 / √90 ≈ 6.16, p ≈ 7e-10.
        let x: Vec<f64> = (0..20).map(f64::from).collect();
        let p = kendall_p_value(&x, &x).unwrap();
        assert!(p > 0.0 && p < 1e-8, "{p}");
        assert!((erfc(0.0) - 1.0).abs() < 1e-6 && (erfc(1.0) - 0.157_299_207).abs() < 1e-6);
        assert_eq!(kendall_p_value(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
    }

    #[test]
    fn spearman_p_values_exact_and_approximate() {
        // n = 4, a perfect ranking: only itself and its reverse have |ρ| = 1, 2 of 24 orders.
        let x = [1.0, 2.0, 3.0, 4.0];
        let p = spearman_p_value(&x, &[4.0, 3.0, 2.0, 1.0]).unwrap();
        assert!((p - 2.0 / 24.0).abs() < 1e-12, "{p}");
        // ρ = 0.8 ([1, 2, 4, 3], Σd² = 2): the orders with Σd² ≤ 2 (the identity and the three
        // swaps of neighbours, itself among them) and their reverses, 8 of 24.
        let p = spearman_p_value(&x, &[1.0, 2.0, 4.0, 3.0]).unwrap();
        assert!((p - 8.0 / 24.0).abs() < 1e-12, "{p}");
        // n = 20, perfect: z = √19 ≈ 4.36, p ≈ 1.3e-5.
        let x: Vec<f64> = (0..20).map(f64::from).collect();
        let p = spearman_p_value(&x, &x).unwrap();
        assert!(p > 5e-6 && p < 5e-5, "{p}");
        assert_eq!(spearman_p_value(&[1.0, 2.0, 3.0], &[1.0, 1.0, 1.0]), None);
    }

    #[test]
    fn t_quantiles_and_paired_intervals() {
        assert_eq!(t_975(0), None);
        assert_eq!(t_975(2), Some(4.303));
        // The expansion meets the table: t(0.975, 40) = 2.021, t(0.975, 120) = 1.980.
        assert!((t_975(40).unwrap() - 2.021).abs() < 5e-4);
        assert!((t_975(120).unwrap() - 1.980).abs() < 5e-4);
        assert!((t_975(31).unwrap() - 2.040).abs() < 5e-4);
        // d = (0.02, 0.04, 0.03): mean 0.03, sd 0.01, half width 4.303 · 0.01 / √3.
        let i = paired_interval(&[0.52, 0.54, 0.53], &[0.50, 0.50, 0.50]).unwrap();
        let half = 4.303 * 0.01 / 3f64.sqrt();
        assert!((i.mean - 0.03).abs() < 1e-12 && (i.hi - i.mean - half).abs() < 1e-12);
        assert!(i.resolved());
        let j = paired_interval(&[0.52, 0.48, 0.50], &[0.50, 0.50, 0.50]).unwrap();
        assert!(!j.resolved(), "{j:?}");
        assert_eq!(paired_interval(&[0.5], &[0.4]), None);
        assert_eq!(paired_interval(&[0.5, 0.6], &[0.4]), None);
    }

    #[test]
    fn mean_std_median() {
        assert!(close(mean(&[1.0, 2.0, 6.0]), 3.0));
        assert!(close(
            sample_std(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]),
            (32.0f64 / 7.0).sqrt()
        ));
        assert_eq!(sample_std(&[1.0]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }
}
