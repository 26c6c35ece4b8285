//! Export of a trained network (`optarch export DIR`, and the end of every search): the winner
//! of a search, or any run directory.
//!
//! `OUT/` holds:
//! * `spec.yaml`: the candidate's spec with its parameters filled in;
//! * `weights.safetensors`: the trained weights (the run's best epoch);
//! * `model.rs`: the generated Rust module of one stage (`optarch codegen`), for the derive;
//! * `model.pt`: a TorchScript module of the whole network, input images on the `[0, 1]` scale
//!   (N×C×H×W, float32), with the per-channel normalisation built in, output logits;
//! * `export.json`: what was exported, the normalisation, the input shape, the classes.

use super::driver::SearchError;
use crate::train::{self, TrainConfig};
use optarch_core::spec::Overrides;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

type R<T> = Result<T, SearchError>;

fn other(e: impl std::fmt::Display) -> SearchError {
    SearchError::Other(e.to_string())
}

/// What was exported.
#[derive(Clone, Debug, Serialize)]
pub struct Exported {
    pub out: PathBuf,
    pub run: PathBuf,
    pub spec_name: String,
    pub overrides: Overrides,
    pub input_shape: [i64; 4],
    pub classes: i64,
    pub mean: Vec<f64>,
    pub std: Vec<f64>,
    pub parameters: i64,
    /// Steps per stage the generated `model.rs` unrolls.
    pub codegen_steps: usize,
}

/// The spec's YAML with every overridden parameter written in as its value.
pub fn filled_spec(yaml: &str, overrides: &Overrides) -> R<String> {
    if overrides.is_empty() {
        return Ok(yaml.to_string());
    }
    let mut v: serde_yaml::Value = serde_yaml::from_str(yaml).map_err(other)?;
    let params = v
        .get_mut("params")
        .and_then(|p| p.as_mapping_mut())
        .ok_or_else(|| other("the spec has parameters to fill in but no `params` mapping"))?;
    for (k, x) in overrides {
        params.insert(
            serde_yaml::Value::String(k.clone()),
            serde_yaml::Value::Number((*x).into()),
        );
    }
    let body = serde_yaml::to_string(&v).map_err(other)?;
    let values = overrides
        .iter()
        .map(|(k, x)| format!("{k} = {x}"))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(format!(
        "# exported by optarch with its parameters filled in: {values}\n{body}"
    ))
}

/// Exports the run in `run_dir` (a trainer run directory: `config.json`, `best.safetensors`)
/// into `out`.
pub fn export_run(run_dir: &Path, out: &Path) -> R<Exported> {
    let text = std::fs::read_to_string(run_dir.join("config.json")).map_err(|e| {
        other(format!(
            "{}: {e} (is this a run directory of optarch train or a search trial?)",
            run_dir.join("config.json").display()
        ))
    })?;
    let mut cfg: TrainConfig = serde_json::from_str(&text).map_err(other)?;
    let weights = ["best.safetensors", "last.safetensors"]
        .iter()
        .map(|f| run_dir.join(f))
        .find(|p| p.is_file())
        .ok_or_else(|| other(format!("{}: no checkpoint to export", run_dir.display())))?;
    // The network is rebuilt on the CPU from the data's shape, classes and statistics.
    cfg.device = "cpu".into();
    let (train_set, _, _) = train::load_data(&cfg)?;
    let norm = train_set.channel_stats();
    let classes = i64::try_from(train_set.classes).map_err(other)?;
    let [c, h, w] = train_set.shape.map(|d| d as i64);
    let train::Built {
        spec: s,
        mut vs,
        net,
        arch,
    } = train::build(&cfg, &train_set, Device::Cpu)?;
    vs.load(&weights).map_err(other)?;
    // Constants in the trace: no variable may require a gradient.
    vs.freeze();
    std::fs::create_dir_all(out).map_err(|e| other(format!("{}: {e}", out.display())))?;
    let write = |name: &str, bytes: &[u8]| {
        let p = out.join(name);
        std::fs::write(&p, bytes).map_err(|e| other(format!("{}: {e}", p.display())))
    };
    write(
        "spec.yaml",
        filled_spec(&cfg.spec_text, &cfg.overrides)?.as_bytes(),
    )?;
    std::fs::copy(&weights, out.join("weights.safetensors"))
        .map_err(|e| other(format!("{}: {e}", weights.display())))?;
    let steps = arch.stages.first().map(|st| st.steps).unwrap_or(1).max(1);
    let code = optarch_core::codegen::source(&s, steps, &cfg.overrides, None, false)?;
    write("model.rs", code.as_bytes())?;
    // TorchScript by tracing the evaluation-mode forward pass, normalisation included.
    let mean = Tensor::from_slice(&norm.mean)
        .to_kind(Kind::Float)
        .view([1, c, 1, 1]);
    let std = Tensor::from_slice(&norm.std)
        .to_kind(Kind::Float)
        .view([1, c, 1, 1]);
    let example = Tensor::rand([1, c, h, w], (Kind::Float, Device::Cpu));
    let mut failure: Option<String> = None;
    let mut forward = |xs: &[Tensor]| -> Vec<Tensor> {
        let Some(x) = xs.first() else {
            return Vec::new();
        };
        match net.try_forward_t(&((x - &mean) / &std), false, None) {
            Ok(y) => vec![y],
            Err(e) => {
                failure = Some(e.to_string());
                Vec::new()
            }
        }
    };
    let traced = tch::no_grad(|| {
        tch::CModule::create_by_tracing("OptarchNet", "forward", &[example], &mut forward)
    });
    if let Some(f) = failure {
        return Err(other(format!("tracing the network failed: {f}")));
    }
    let module = traced.map_err(other)?;
    module.save(out.join("model.pt")).map_err(other)?;
    let e = Exported {
        out: out.to_path_buf(),
        run: run_dir.to_path_buf(),
        spec_name: s.name.clone(),
        overrides: cfg.overrides.clone(),
        input_shape: [1, c, h, w],
        classes,
        mean: norm.mean,
        std: norm.std,
        parameters: optarch_core::exec::parameter_count(&vs),
        codegen_steps: steps,
    };
    write(
        "export.json",
        serde_json::to_string_pretty(&e).map_err(other)?.as_bytes(),
    )?;
    Ok(e)
}

/// Exports the winner of the search in `dir` into `DIR/export`: the leaderboard's first
/// candidate, from its full-budget trial with the best validation score.
pub fn export_winner(dir: &Path) -> R<Exported> {
    let report = super::report::compute(dir).map_err(other)?;
    let winner = report
        .leaderboard
        .first()
        .ok_or_else(|| other("the search has no ranked candidate to export yet"))?;
    let store = super::store::Store::open_existing(&dir.join("search.db"))?;
    let best = store
        .trials()?
        .into_iter()
        .filter(|t| t.candidate == winner.candidate && t.epochs_done > 0)
        .max_by(|a, b| {
            (a.epochs_done, a.val_acc.unwrap_or(f64::NEG_INFINITY))
                .partial_cmp(&(b.epochs_done, b.val_acc.unwrap_or(f64::NEG_INFINITY)))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .ok_or_else(|| other(format!("{}: no trained trial", winner.name)))?;
    export_run(&dir.join(&best.dir), &dir.join("export"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_filled_in() {
        let y = "name: hb\nparams:\n  h: 1.0\n  beta: { range: [0.0, 0.9], default: 0.5 }\nstate: [z]\n";
        let ov: Overrides = [("beta".to_string(), 0.7)].into_iter().collect();
        let f = filled_spec(y, &ov).unwrap();
        assert!(f.starts_with("# exported by optarch"), "{f}");
        let v: serde_yaml::Value = serde_yaml::from_str(&f).unwrap();
        assert_eq!(v["params"]["beta"].as_f64(), Some(0.7));
        assert_eq!(v["params"]["h"].as_f64(), Some(1.0));
        assert_eq!(filled_spec(y, &Overrides::new()).unwrap(), y);
    }
}
