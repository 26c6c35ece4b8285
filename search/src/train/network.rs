//! The network a run trains: its spec on its architecture, for data of a given shape.

use super::config::{RunSpec, TrainConfig};
use super::run::TrainError;
use crate::data::Dataset;
use optarch_core::exec::{Arch, Network};
use optarch_core::spec::Spec;
use tch::{nn, Device};

/// A run's network, as [`build`] makes it.
pub struct Built {
    pub spec: Spec,
    pub vs: nn::VarStore,
    pub net: Network,
    pub arch: Arch,
}

/// The network `spec` and `cfg` describe for data shaped like `train` (its classes and
/// channels), initialised from the configuration's seed: the run's own network, or, with a
/// checkpoint loaded into `vs`, the trained one (export).
pub fn build(
    spec: &RunSpec,
    cfg: &TrainConfig,
    train: &Dataset,
    device: Device,
) -> Result<Built, TrainError> {
    build_for(spec, cfg, train.classes, train.shape[0], device)
}

/// [`build`] for `classes` classes and images of `channels` channels, without the data (export
/// reads them from the run's [`DataRecord`](super::DataRecord)).
pub fn build_for(
    spec: &RunSpec,
    cfg: &TrainConfig,
    classes: usize,
    channels: usize,
    device: Device,
) -> Result<Built, TrainError> {
    let loaded = spec.load()?;
    let classes = i64::try_from(classes)
        .map_err(|_| TrainError::Invalid(format!("{classes} classes are too many")))?;
    let in_channels = i64::try_from(channels)
        .map_err(|_| TrainError::Invalid(format!("{channels} channels are too many")))?;
    let arch = cfg.arch.build(classes, in_channels)?;
    tch::manual_seed(cfg.run.seed as i64);
    let vs = nn::VarStore::new(device);
    let net = Network::new(&vs.root(), &loaded, &spec.overrides, &arch)?;
    Ok(Built {
        spec: loaded,
        vs,
        net,
        arch,
    })
}
