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

use crate::search::rank;
use crate::search::store::{Store, StoreError};
use crate::train::{self, checkpoint, CheckpointError, RunConfigFile, RunState, TrainError};
use optarch_core::device::DeviceChoice;
use optarch_core::exec::Compute;
use optarch_core::spec::Overrides;
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(
        "{}: {source} (is this a run directory of optarch train or a search trial?)",
        .path.display()
    )]
    NotARun {
        path: PathBuf,
        source: CheckpointError,
    },
    #[error("{}: no checkpoint to export", .0.display())]
    NoCheckpoint(PathBuf),
    #[error(transparent)]
    Train(#[from] TrainError),
    #[error(transparent)]
    Spec(#[from] optarch_core::error::SpecError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("tracing the network failed: {0}")]
    Trace(String),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the spec has parameters to fill in but no `params` mapping")]
    NoParams,
    #[error("cannot fill the parameters into the spec: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("cannot encode export.json: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{}: the search has no trained candidate to export yet", .0.display())]
    NoWinner(PathBuf),
}

type R<T> = Result<T, ExportError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExportError + '_ {
    move |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    }
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
    /// The precision and layout traced into `model.pt` (fp32 unless asked otherwise; the
    /// weights file is fp32 either way).
    pub compute: Compute,
}

/// The spec's YAML with every overridden parameter written in as its value.
pub(crate) fn filled_spec(yaml: &str, overrides: &Overrides) -> R<String> {
    if overrides.is_empty() {
        return Ok(yaml.to_string());
    }
    let mut v: serde_yaml::Value = serde_yaml::from_str(yaml)?;
    let params = v
        .get_mut("params")
        .and_then(|p| p.as_mapping_mut())
        .ok_or(ExportError::NoParams)?;
    for (k, x) in overrides {
        params.insert(
            serde_yaml::Value::String(k.clone()),
            serde_yaml::Value::Number((*x).into()),
        );
    }
    let body = serde_yaml::to_string(&v)?;
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
/// into `out`, tracing `model.pt` in `compute` ([`Compute::FP32`] is exact; bf16 traces the
/// casts of the mixed-precision forward pass into the module).
pub fn export_run(run_dir: &Path, out: &Path, compute: Compute) -> R<Exported> {
    let cpath = run_dir.join(checkpoint::CONFIG);
    let mut cfg: RunConfigFile =
        checkpoint::read_json(&cpath).map_err(|source| ExportError::NotARun {
            path: cpath.clone(),
            source,
        })?;
    // The best epoch's weights, checked against the sums the run's state recorded.
    let state: RunState =
        checkpoint::read_json(&run_dir.join(checkpoint::STATE)).map_err(|source| {
            ExportError::NotARun {
                path: run_dir.join(checkpoint::STATE),
                source,
            }
        })?;
    let weights = state
        .best
        .as_ref()
        .or(state.checkpoint.as_ref())
        .ok_or_else(|| ExportError::NoCheckpoint(run_dir.to_path_buf()))?
        .verified(run_dir, checkpoint::WEIGHTS)
        .map_err(|source| ExportError::NotARun {
            path: run_dir.join(checkpoint::STATE),
            source,
        })?;
    // The network is rebuilt on the CPU from the data's shape, classes and statistics.
    cfg.train.run.device = DeviceChoice::Cpu;
    let t = &cfg.train;
    let (train_set, _, _) = t.data.load(t.run.seed).map_err(TrainError::from)?;
    let norm = train_set.channel_stats();
    let [c, h, w] = train_set.shape.map(|d| d as i64);
    let train::Built {
        spec: s,
        mut vs,
        mut net,
        arch,
    } = train::build(&cfg.spec, t, &train_set, Device::Cpu)?;
    net.set_compute(compute);
    vs.load(&weights)?;
    // Constants in the trace: no variable may require a gradient.
    vs.freeze();
    std::fs::create_dir_all(out).map_err(io(out))?;
    let write = |name: &str, bytes: &[u8]| {
        let p = out.join(name);
        std::fs::write(&p, bytes).map_err(io(&p))
    };
    write(
        "spec.yaml",
        filled_spec(&cfg.spec.text, &cfg.spec.overrides)?.as_bytes(),
    )?;
    let wpath = out.join("weights.safetensors");
    std::fs::copy(&weights, &wpath).map_err(io(&wpath))?;
    let steps = arch.stages.first().map(|st| st.steps).unwrap_or(1).max(1);
    let code = optarch_core::codegen::source(&s, steps, &cfg.spec.overrides, None, false)?;
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
        return Err(ExportError::Trace(f));
    }
    let module = traced?;
    module.save(out.join("model.pt"))?;
    let e = Exported {
        out: out.to_path_buf(),
        run: run_dir.to_path_buf(),
        spec_name: s.name.clone(),
        overrides: cfg.spec.overrides.clone(),
        input_shape: [1, c, h, w],
        classes: arch.classes,
        mean: norm.mean,
        std: norm.std,
        parameters: optarch_core::exec::parameter_count(&vs),
        codegen_steps: steps,
        compute,
    };
    write("export.json", serde_json::to_string_pretty(&e)?.as_bytes())?;
    Ok(e)
}

/// Exports the winner of the search in `dir` into `out` (a search writes `DIR/export`): the
/// leaderboard's first candidate, from the trial [`rank::winner`] picks.
pub fn export_winner(dir: &Path, out: &Path, compute: Compute) -> R<Exported> {
    let (store, _, cfg) = Store::open_search(dir)?;
    let candidates: Vec<_> = store.candidates()?.iter().map(|c| c.id).collect();
    let trials = store.trials()?;
    let (_, best) = rank::winner(
        &store.all_epochs()?,
        &cfg.budget.rungs(),
        &candidates,
        &trials,
    )
    .ok_or_else(|| ExportError::NoWinner(dir.to_path_buf()))?;
    let run = trials
        .iter()
        .find(|t| t.id == best)
        .map(|t| dir.join(&t.dir))
        .ok_or_else(|| ExportError::NoWinner(dir.to_path_buf()))?;
    export_run(&run, out, compute)
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
