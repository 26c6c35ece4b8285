//! Export of a trained network (`optarch export DIR`, and the end of every search): the winner
//! of a search, or any run directory.
//!
//! `OUT/` holds:
//! * `spec.yaml`: the candidate's spec with its parameters filled in;
//! * `weights.safetensors`: the trained weights (the run's best epoch), named as the VarStore
//!   names them, with BatchNorm's `num_batches_tracked` added for PyTorch;
//! * `model.py`: the whole network as a PyTorch `nn.Module` ([`Network::python`]) whose state
//!   dict's keys are the weights file's: trainable, movable, scriptable;
//! * `model.rs`: the generated Rust module of one stage (`optarch codegen`), for the derive;
//! * `model.pt`: a TorchScript module of the whole network, traced (its weights are constants:
//!   for inference), input images on the `[0, 1]` scale (N×C×H×W, float32), with the
//!   per-channel normalisation built in, output logits;
//! * `export.json`: what was exported, the normalisation, the input shape, the classes, the
//!   data, the epoch and its validation and test accuracies.
//!
//! The data set is not read: the run's `data.json` holds its shape, classes and statistics.

use crate::search::rank;
use crate::search::store::{Store, StoreError};
use crate::train::{
    self, checkpoint, CheckpointError, DataRecord, RunConfigFile, RunState, TrainError,
};
use optarch_core::device::DeviceChoice;
use optarch_core::exec::Compute;
use optarch_core::exec::Network;
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

/// Which artifacts to write (`optarch export --format`); the spec, the weights and
/// `export.json` are always written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Formats {
    /// `model.py`: the PyTorch module.
    pub pytorch: bool,
    /// `model.pt`: the traced TorchScript module.
    pub torchscript: bool,
    /// `model.rs`: the generated Rust of one stage, for the derive.
    pub rust: bool,
}

impl Formats {
    /// Everything.
    pub const ALL: Formats = Formats {
        pytorch: true,
        torchscript: true,
        rust: true,
    };
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
    /// The class `model.py` defines.
    pub python_class: String,
    /// The files written, in `out`.
    pub files: Vec<String>,
    /// The data set the run trained on, and where it was read from.
    pub dataset: String,
    pub data_path: PathBuf,
    /// The epoch whose weights these are (the best on validation, counted from 1 as the
    /// trainer prints it), with its accuracies; the test accuracy is there when the run
    /// evaluated the test set.
    pub best_epoch: Option<usize>,
    pub val_accuracy: Option<f64>,
    pub test_accuracy: Option<f64>,
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

/// The run's data record (`data.json`); for a run made before optarch wrote one, read off the
/// data set itself.
fn data_record(run_dir: &Path, cfg: &RunConfigFile) -> R<DataRecord> {
    let path = run_dir.join(checkpoint::DATA);
    if path.exists() {
        return checkpoint::read_json(&path)
            .map_err(|source| ExportError::NotARun { path, source });
    }
    let d = &cfg.train.data;
    let (train, val, test) = d.load(cfg.train.run.seed).map_err(TrainError::from)?;
    Ok(d.record(&train, val.as_ref(), &test)
        .map_err(TrainError::from)?)
}

/// The weights file of the export: the run's variables, plus the `num_batches_tracked` counter
/// PyTorch's BatchNorm keeps (0: optarch does not count batches, and with a momentum set
/// PyTorch never reads it), so that `load_state_dict` finds every key it expects.
pub fn write_weights(vs: &tch::nn::VarStore, path: &Path) -> R<()> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    let counters: Vec<(String, Tensor)> = named
        .iter()
        .filter_map(|(n, _)| n.strip_suffix(".running_mean"))
        .map(|bn| (format!("{bn}.num_batches_tracked"), Tensor::from(0i64)))
        .collect();
    named.extend(counters);
    named.sort_by(|a, b| a.0.cmp(&b.0));
    beside_then_rename(path, |tmp| Ok(Tensor::write_safetensors(&named, tmp)?))
}

/// Writes an export file through `write` into a hidden file beside `path`, then renames it into
/// place: a crash leaves the previous file or none, never a partial one.
fn beside_then_rename(path: &Path, write: impl FnOnce(&Path) -> R<()>) -> R<()> {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy().into_owned());
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    write(&tmp)?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// The docstring of `model.py`.
fn python_doc(class: &str, spec: &str, run: &Path, data: &DataRecord) -> String {
    let [c, h, w] = data.shape;
    format!(
        "{class}: the `{spec}` network optarch trained, as a PyTorch module.

Generated by `optarch export` from {run}. It takes N×{c}×{h}×{w} float images on the [0, 1]
scale (the {dataset} training data's per-channel normalisation is built in) and returns logits
over {classes} classes. Its state dict's keys are those of weights.safetensors:

    import safetensors.torch
    from model import {class}

    model = {class}()
    model.load_state_dict(safetensors.torch.load_file(\"weights.safetensors\"))
    model.eval()

It trains, moves (`.to(\"cuda\")`) and compiles with `torch.jit.script`; the stage methods
are the recurrence of the spec written out, one line per operation, as `optarch codegen` writes
it in Rust.",
        run = run.display(),
        dataset = data.dataset,
        classes = data.classes,
    )
}

/// Exports the run in `run_dir` (a trainer run directory: `config.json`, `best.safetensors`)
/// into `out`: the artifacts `formats` names, with `model.pt` traced in `compute`
/// ([`Compute::FP32`] is exact; bf16 traces the casts of the mixed-precision forward pass into
/// the module). The data set is not read again (the run's `data.json` has what is needed).
pub fn export_run(run_dir: &Path, out: &Path, compute: Compute, formats: Formats) -> R<Exported> {
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
    let data = data_record(run_dir, &cfg)?;
    let [c, h, w] = data.shape.map(|d| d as i64);
    let train::Built {
        spec: s,
        mut vs,
        mut net,
        arch,
    } = train::build_for(
        &cfg.spec,
        &cfg.train,
        data.classes,
        data.shape[0],
        Device::Cpu,
    )?;
    vs.load(&weights)?;
    // Constants in the trace: no variable may require a gradient.
    vs.freeze();
    std::fs::create_dir_all(out).map_err(io(out))?;
    let mut files = Vec::new();
    let mut write = |name: &str, bytes: &[u8]| {
        let p = out.join(name);
        files.push(name.to_string());
        checkpoint::write_atomic(&p, bytes).map_err(TrainError::from)
    };
    write(
        "spec.yaml",
        filled_spec(&cfg.spec.text, &cfg.spec.overrides)?.as_bytes(),
    )?;
    let steps = arch.stages.first().map(|st| st.steps).unwrap_or(1).max(1);
    if formats.rust {
        let code = optarch_core::codegen::source(&s, steps, &cfg.spec.overrides, None, false)?;
        write("model.rs", code.as_bytes())?;
    }
    let class = optarch_core::codegen::type_name(&s.name);
    if formats.pytorch {
        let doc = python_doc(&class, &s.name, run_dir, &data);
        let py = net
            .python(&class, &data.mean, &data.std, &doc)
            .map_err(|e| ExportError::Trace(e.to_string()))?;
        write("model.py", py.as_bytes())?;
    }
    write_weights(&vs, &out.join("weights.safetensors"))?;
    files.insert(1, "weights.safetensors".into());
    if formats.torchscript {
        trace(&mut net, compute, &data, out)?;
        files.push("model.pt".into());
    }
    let best = checkpoint::read_metrics(run_dir)
        .into_iter()
        .find(|m| Some(m.epoch) == state.best_epoch);
    files.push("export.json".into());
    let e = Exported {
        out: out.to_path_buf(),
        run: run_dir.to_path_buf(),
        spec_name: s.name.clone(),
        overrides: cfg.spec.overrides.clone(),
        input_shape: [1, c, h, w],
        classes: arch.classes,
        mean: data.mean.clone(),
        std: data.std.clone(),
        parameters: optarch_core::exec::parameter_count(&vs),
        codegen_steps: steps,
        compute,
        python_class: class,
        files,
        dataset: data.dataset.clone(),
        data_path: data.path.clone(),
        best_epoch: best.as_ref().map(|m| m.epoch + 1),
        val_accuracy: best.as_ref().and_then(|m| m.val_acc),
        test_accuracy: best.as_ref().and_then(|m| m.test_acc),
    };
    checkpoint::write_json(&out.join("export.json"), &e).map_err(TrainError::from)?;
    Ok(e)
}

/// `model.pt`: TorchScript by tracing the evaluation-mode forward pass in `compute`, the
/// normalisation included.
fn trace(net: &mut Network, compute: Compute, data: &DataRecord, out: &Path) -> R<()> {
    net.set_compute(compute);
    let [c, h, w] = data.shape.map(|d| d as i64);
    let mean = Tensor::from_slice(&data.mean)
        .to_kind(Kind::Float)
        .view([1, c, 1, 1]);
    let std = Tensor::from_slice(&data.std)
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
    let traced = traced?;
    beside_then_rename(&out.join("model.pt"), |tmp| Ok(traced.save(tmp)?))
}

/// Exports the winner of the search in `dir` into `out` (a search writes `DIR/export`): the
/// leaderboard's first candidate, from the trial [`rank::winner`] picks.
pub fn export_winner(dir: &Path, out: &Path, compute: Compute, formats: Formats) -> R<Exported> {
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
    export_run(&run, out, compute, formats)
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
