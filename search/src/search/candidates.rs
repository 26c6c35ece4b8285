//! The candidate pool: spec files with parameter grids and samples, and generated m-step
//! linear recurrences pruned by consistency and stability; duplicates recognised by a hash of
//! the unrolled topology.

use super::config::{CandidateSource, GeneratorCfg, SearchConfig, SpecSource};
use crate::data::rng::{derive_seed, SplitMix64};
use md5::{Digest, Md5};
use optarch_core::spec::{self, Overrides, ParamKind, Spec};
use optarch_core::theory::{self, RateOptions};
use optarch_core::topology::{self, NodeKind, Topology};
use std::fmt::Write as _;
use std::path::Path;

/// One candidate network structure.
#[derive(Clone, Debug)]
pub struct Item {
    pub name: String,
    /// `spec:<file>` or `generated`.
    pub origin: String,
    /// Items of one family are neighbours for evolution's mutations.
    pub family: String,
    /// The spec's text (a generated spec's whole YAML).
    pub spec_yaml: String,
    /// The file name the spec is known by in errors.
    pub spec_file: String,
    pub overrides: Overrides,
    /// Coordinates for evolution's mutation distance (grid values, coefficients).
    pub features: Vec<f64>,
    pub topo_hash: String,
    pub spec_hash: String,
    pub contraction: Option<f64>,
    pub asymptotic: Option<f64>,
}

/// Why a candidate was dropped.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropped {
    pub name: String,
    pub reason: String,
}

/// Every distinct candidate of a search, in a fixed order.
#[derive(Clone, Debug, Default)]
pub struct Pool {
    pub items: Vec<Item>,
    /// Generated recurrences pruned by consistency or stability.
    pub pruned: Vec<Dropped>,
    /// Candidates whose topology equals an earlier one's (trained once, under the first name).
    pub duplicates: Vec<Dropped>,
}

/// A hex md5 of `text`.
pub fn md5_hex(text: &str) -> String {
    crate::data::hex(&Md5::digest(text.as_bytes()))
}

/// A canonical description of an unrolled topology: nodes in topological order, each with its
/// kind and its operands (as positions in that order) with their coefficients. Two specs that
/// unroll to the same computation (after constant folding and pruning) describe the same.
pub fn canonical(t: &Topology) -> Result<String, optarch_core::error::SpecError> {
    let order = t.order()?;
    let mut pos = vec![usize::MAX; t.graph.node_count()];
    for (i, n) in order.iter().enumerate() {
        pos[n.index()] = i;
    }
    let mut s = format!("reading {}\n", t.reading);
    for (i, &n) in order.iter().enumerate() {
        let kind = match t.graph[n].kind {
            NodeKind::Input => "in",
            NodeKind::Block { .. } => "block",
            NodeKind::Combine => "sum",
            NodeKind::Concat => "cat",
            NodeKind::Output => "out",
        };
        let _ = write!(s, "{i} {kind}");
        let mut terms: Vec<(usize, String)> = t
            .operands(n)
            .into_iter()
            .map(|(o, e)| {
                let c = match e.coef.as_const() {
                    Some(v) => format!("{v:.9e}"),
                    None => t.coef_label(&e.coef),
                };
                (pos[o.index()], c)
            })
            .collect();
        // A sum does not depend on the order of its terms; a concatenation does.
        if matches!(t.graph[n].kind, NodeKind::Combine) {
            terms.sort();
        }
        for (o, c) in terms {
            let _ = write!(s, " {o}*{c}");
        }
        s.push('\n');
    }
    Ok(s)
}

/// The topology hash of a spec at `steps` steps with `overrides`.
pub fn topology_hash(
    spec: &Spec,
    steps: usize,
    overrides: &Overrides,
) -> Result<String, optarch_core::error::SpecError> {
    let t = topology::unroll(spec, steps, overrides)?;
    Ok(md5_hex(&canonical(&t)?))
}

/// Formats a number for a spec or a name: shortest exact form.
fn num(v: f64) -> String {
    let s = format!("{v}");
    if s == "-0" {
        "0".into()
    } else {
        s
    }
}

/// `Σ c_i z[k-i]` as spec text (zero terms dropped; `None` when all are zero).
fn lin(c: &[f64]) -> Option<String> {
    let mut s = String::new();
    for (i, &v) in c.iter().enumerate() {
        if v == 0.0 {
            continue;
        }
        let z = if i == 0 {
            "z[k]".to_string()
        } else {
            format!("z[k-{i}]")
        };
        let mag = v.abs();
        let term = if mag == 1.0 {
            z
        } else {
            format!("{} * {z}", num(mag))
        };
        if s.is_empty() {
            if v < 0.0 {
                s.push('-');
            }
            s.push_str(&term);
        } else {
            s.push_str(if v < 0.0 { " - " } else { " + " });
            s.push_str(&term);
        }
    }
    (!s.is_empty()).then_some(s)
}

/// The spec of `z[k+1] = Σ a_i z[k-i] - h·grad(Σ b_i z[k-i])` (`z[-i] = z[0]`).
pub fn generated_spec(a: &[f64], b: &[f64], h: f64) -> Option<(String, String)> {
    let name = format!(
        "gen_a{}_b{}_h{}",
        a.iter().map(|v| num(*v)).collect::<Vec<_>>().join("_"),
        b.iter().map(|v| num(*v)).collect::<Vec<_>>().join("_"),
        num(h)
    )
    .replace('-', "m")
    .replace('.', "p");
    let za = lin(a)?;
    let zb = lin(b)?;
    let mut y = format!(
        "# generated by optarch search: an {m}-step linear recurrence\n\
         name: {name}\n\
         summary: \"z[k+1] = {za} - h * grad({zb})\"\n\
         gradient: residual\n\
         params:\n  h: {h}\n\
         state: [z]\n",
        m = a.len(),
        h = num(h),
    );
    if a.len() > 1 {
        y.push_str("init:\n");
        for i in 1..a.len() {
            let _ = writeln!(y, "  z[-{i}]: z[0]");
        }
    }
    let _ = write!(y, "step:\n  z[k+1]: {za} - h * grad({zb})\noutput: z\n");
    Some((name, y))
}

fn cartesian(grids: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let mut out: Vec<Vec<f64>> = vec![Vec::new()];
    for g in grids {
        let mut next = Vec::with_capacity(out.len() * g.len());
        for prefix in &out {
            for &v in g {
                let mut p = prefix.clone();
                p.push(v);
                next.push(p);
            }
        }
        out = next;
    }
    out
}

/// Why building the pool failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("{0}")]
    Spec(#[from] optarch_core::error::SpecError),
    #[error("{0}")]
    Config(String),
}

/// (contraction, asymptotic rate) on quadratics.
type Rates = (Option<f64>, Option<f64>);

struct Builder<'a> {
    cfg: &'a SearchConfig,
    steps: usize,
    pool: Pool,
}

impl Builder<'_> {
    fn rate(&self, spec: &Spec, overrides: &Overrides) -> Rates {
        let opts = RateOptions {
            kappa: self.cfg.theory.kappa,
            steps: self.steps,
            ..RateOptions::default()
        };
        match theory::rate(spec, &opts, overrides) {
            Ok(r) => (Some(r.rate.contraction), r.rate.asymptotic),
            Err(_) => (None, None),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        name: String,
        origin: String,
        family: String,
        spec: &Spec,
        overrides: Overrides,
        features: Vec<f64>,
        rates: Rates,
    ) -> Result<(), PoolError> {
        let topo_hash = topology_hash(spec, self.steps, &overrides)?;
        if let Some(first) = self.pool.items.iter().find(|i| i.topo_hash == topo_hash) {
            self.pool.duplicates.push(Dropped {
                name,
                reason: format!("same topology as {}", first.name),
            });
            return Ok(());
        }
        let params_json = serde_json::to_string(&overrides).unwrap_or_default();
        self.pool.items.push(Item {
            spec_hash: md5_hex(&format!("{}\n{params_json}", spec.text)),
            name,
            origin,
            family,
            spec_yaml: spec.text.clone(),
            spec_file: spec.file.clone(),
            overrides,
            features,
            topo_hash,
            contraction: rates.0,
            asymptotic: rates.1,
        });
        Ok(())
    }

    fn spec_source(&mut self, s: &SpecSource, base: &Path, index: usize) -> Result<(), PoolError> {
        let path = base.join(&s.spec);
        let spec = spec::load(&path)?;
        let names: Vec<String> = s.grid.keys().cloned().collect();
        for n in &names {
            if spec.param(n).is_none() {
                return Err(PoolError::Config(format!(
                    "{}: the grid names `{n}`, which is not a parameter of the spec (it has: {})",
                    path.display(),
                    spec.params
                        .iter()
                        .map(|p| p.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            }
        }
        let grids: Vec<Vec<f64>> = s.grid.values().cloned().collect();
        let ranged: Vec<&optarch_core::spec::Param> = spec
            .params
            .iter()
            .filter(|p| {
                !s.grid.contains_key(&p.name)
                    && matches!(p.kind, ParamKind::Range { .. } | ParamKind::Choices { .. })
            })
            .collect();
        let mut rng = SplitMix64::new(derive_seed(&[self.cfg.seed, 0x5350_4543, index as u64]));
        for point in cartesian(&grids) {
            let base_ov: Overrides = names.iter().cloned().zip(point.iter().copied()).collect();
            let draws = if ranged.is_empty() { 0 } else { s.samples };
            for d in 0..draws.max(1) {
                let mut ov = base_ov.clone();
                if d < draws {
                    for p in &ranged {
                        let v = match &p.kind {
                            ParamKind::Range { lo, hi, .. } => lo + (hi - lo) * rng.unit(),
                            ParamKind::Choices { values, .. } => values
                                .get(rng.below(values.len() as u64) as usize)
                                .copied()
                                .unwrap_or_default(),
                            _ => continue,
                        };
                        ov.insert(p.name.clone(), (v * 1e4).round() / 1e4);
                    }
                }
                let label = if ov.is_empty() {
                    String::new()
                } else {
                    format!(
                        "[{}]",
                        ov.iter()
                            .map(|(k, v)| format!("{k}={}", num(*v)))
                            .collect::<Vec<_>>()
                            .join(",")
                    )
                };
                let rates = self.rate(&spec, &ov);
                let features = ov.values().copied().collect();
                self.add(
                    format!("{}{label}", spec.name),
                    format!("spec:{}", s.spec.display()),
                    format!("spec:{}", s.spec.display()),
                    &spec,
                    ov,
                    features,
                    rates,
                )?;
            }
        }
        Ok(())
    }

    fn generator(&mut self, g: &GeneratorCfg, index: usize) -> Result<(), PoolError> {
        let mut grids = g.a.clone();
        grids.extend(g.b.iter().cloned());
        grids.push(g.h.clone());
        let mut survivors: Vec<(String, Spec, Vec<f64>, Rates)> = Vec::new();
        for point in cartesian(&grids) {
            let m = g.history;
            let (a, rest) = point.split_at(m);
            let (b, h) = rest.split_at(m);
            let h = h.first().copied().unwrap_or(1.0);
            let Some((name, yaml)) = generated_spec(a, b, h) else {
                self.pool.pruned.push(Dropped {
                    name: format!("a={a:?} b={b:?}"),
                    reason: "all coefficients zero".into(),
                });
                continue;
            };
            let sa: f64 = a.iter().sum();
            let sb: f64 = b.iter().sum();
            if (sa - 1.0).abs() > 1e-9 || (sb - 1.0).abs() > 1e-9 {
                self.pool.pruned.push(Dropped {
                    name,
                    reason: format!(
                        "inconsistent: Σa = {}, Σb = {} (a fixed point of the method needs both = 1)",
                        num(sa),
                        num(sb)
                    ),
                });
                continue;
            }
            let spec = spec::load_str(&format!("{name}.yaml"), &yaml)?;
            let rates = self.rate(&spec, &Overrides::new());
            let stable = match rates {
                (_, Some(r)) => r < self.cfg.theory.max_rate,
                (Some(c), None) => c < self.cfg.theory.max_rate,
                (None, None) => false,
            };
            if !stable {
                self.pool.pruned.push(Dropped {
                    name,
                    reason: format!(
                        "unstable on quadratics (κ = {}): asymptotic rate {}",
                        self.cfg.theory.kappa,
                        rates.1.or(rates.0).map(num).unwrap_or_else(|| "n/a".into())
                    ),
                });
                continue;
            }
            survivors.push((name, spec, point.clone(), rates));
        }
        if let Some(limit) = g.limit {
            if survivors.len() > limit {
                let mut rng =
                    SplitMix64::new(derive_seed(&[self.cfg.seed, 0x4745_4e00, index as u64]));
                let mut keep = rng.permutation(survivors.len());
                keep.truncate(limit);
                keep.sort_unstable();
                let mut i = 0;
                survivors.retain(|_| {
                    let k = keep.binary_search(&i).is_ok();
                    i += 1;
                    k
                });
            }
        }
        for (name, spec, features, rates) in survivors {
            self.add(
                name,
                "generated".into(),
                format!("generated:m{}", g.history),
                &spec,
                Overrides::new(),
                features,
                rates,
            )?;
        }
        Ok(())
    }
}

/// Builds the pool of `cfg` (spec paths relative to `base`).
pub fn build(cfg: &SearchConfig, base: &Path) -> Result<Pool, PoolError> {
    let mut b = Builder {
        cfg,
        steps: cfg.arch.first_stage_steps(),
        pool: Pool::default(),
    };
    for (i, src) in cfg.candidates.iter().enumerate() {
        match src {
            CandidateSource::Spec(s) => b.spec_source(s, base, i)?,
            CandidateSource::Generator { generate } => b.generator(generate, i)?,
        }
    }
    if b.pool.items.is_empty() {
        return Err(PoolError::Config(format!(
            "no candidate survives ({} pruned, {} duplicates): widen the generator's grids or \
             add spec files",
            b.pool.pruned.len(),
            b.pool.duplicates.len()
        )));
    }
    Ok(b.pool)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::config;

    fn specs() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs")
    }

    #[test]
    fn generated_specs_parse_and_gradient_descent_is_recognised() {
        let (name, y) = generated_spec(&[1.0], &[1.0], 1.0).unwrap();
        let g = spec::load_str("g.yaml", &y).unwrap();
        let gd = spec::load(specs().join("gradient_descent.yaml")).unwrap();
        assert_eq!(name, "gen_a1_b1_h1");
        assert_eq!(
            topology_hash(&g, 3, &Overrides::new()).unwrap(),
            topology_hash(&gd, 3, &Overrides::new()).unwrap()
        );
        // Heavy ball with beta = 0.5 is the 2-step recurrence a = (1.5, -0.5), b = (1, 0).
        let (_, y) = generated_spec(&[1.5, -0.5], &[1.0, 0.0], 1.0).unwrap();
        assert!(
            y.contains("z[k+1]: 1.5 * z[k] - 0.5 * z[k-1] - h * grad(z[k])"),
            "{y}"
        );
        let g = spec::load_str("g.yaml", &y).unwrap();
        let hb = spec::load(specs().join("heavy_ball.yaml")).unwrap();
        let ov: Overrides = [("beta".to_string(), 0.5)].into_iter().collect();
        assert_eq!(
            topology_hash(&g, 3, &Overrides::new()).unwrap(),
            topology_hash(&hb, 3, &ov).unwrap()
        );
        assert_ne!(
            topology_hash(&g, 3, &Overrides::new()).unwrap(),
            topology_hash(&gd, 3, &Overrides::new()).unwrap()
        );
    }

    #[test]
    fn the_pool_prunes_inconsistent_and_unstable_recurrences_and_merges_duplicates() {
        let text = format!(
            "name: t\nbudget: {{max_epochs: 2, trials: 4}}\narch: {{depth: 20}}\n\
             candidates:\n\
             \x20 - spec: {d}/gradient_descent.yaml\n\
             \x20 - spec: {d}/heavy_ball.yaml\n    grid: {{beta: [0.0, 0.5, 0.9]}}\n\
             \x20 - generate: {{history: 2, a: [[1.5, 2.5, 1.0], [-0.5, -1.5, 0.0]], b: [[1.0], [0.0]]}}\n",
            d = specs().display()
        );
        let cfg = config::parse(Path::new("t.yaml"), &text).unwrap();
        let pool = build(&cfg, Path::new("/")).unwrap();
        let names: Vec<&str> = pool.items.iter().map(|i| i.name.as_str()).collect();
        // beta = 0 is gradient descent; a = (1, 0) is gradient descent; a = (1.5, -0.5) is heavy
        // ball with beta = 0.5: all three are duplicates.
        assert_eq!(
            names,
            [
                "gradient_descent",
                "heavy_ball[beta=0.5]",
                "heavy_ball[beta=0.9]"
            ],
            "{:?}",
            pool.duplicates
        );
        assert_eq!(pool.duplicates.len(), 3, "{:?}", pool.duplicates);
        // a = (2.5, -1.5): consistent, but unstable (rate ≥ 1); the mixed sums are inconsistent.
        assert!(
            pool.pruned
                .iter()
                .any(|d| d.name.starts_with("gen_a2p5_m1p5") && d.reason.contains("unstable")),
            "{:?}",
            pool.pruned
        );
        assert!(pool
            .pruned
            .iter()
            .any(|d| d.reason.contains("inconsistent")));
        let hb = &pool.items[1];
        assert!(hb.contraction.is_some_and(|c| c > 0.0 && c < 1.0));
        assert_eq!(hb.overrides.get("beta"), Some(&0.5));
    }

    #[test]
    fn a_grid_over_an_unknown_parameter_is_an_error() {
        let text = format!(
            "name: t\nbudget: {{max_epochs: 2, trials: 4}}\ncandidates:\n  - spec: {}/heavy_ball.yaml\n    grid: {{gamma: [1]}}\n",
            specs().display()
        );
        let cfg = config::parse(Path::new("t.yaml"), &text).unwrap();
        let e = build(&cfg, Path::new("/")).unwrap_err().to_string();
        assert!(e.contains("`gamma`") && e.contains("beta"), "{e}");
    }
}
