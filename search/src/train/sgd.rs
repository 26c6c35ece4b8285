//! SGD with (Nesterov) momentum and decoupled-from-BN weight decay, written on plain tensors
//! so that its state (the momentum buffers) can be saved and a run resumed bit for bit.

use super::config::OptimConfig;
use std::path::Path;
use tch::{nn::VarStore, Tensor};

/// One trainable tensor and how it is updated.
struct Slot {
    name: String,
    var: Tensor,
    decay: bool,
    buf: Option<Tensor>,
}

/// SGD: `b ← μ b + g + λ w`, then `w ← w − lr (g + λ w + μ b)` (Nesterov) or `w ← w − lr b`.
pub struct Sgd {
    slots: Vec<Slot>,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

/// True for parameters that usually get no weight decay: biases, BatchNorm scales and shifts,
/// and scalar coefficients.
pub(super) fn is_no_decay(name: &str, var: &Tensor) -> bool {
    var.dim() <= 1 || name.ends_with("bias")
}

impl Sgd {
    /// An optimiser over the trainable variables of `vs` with `cfg`'s momentum and weight decay;
    /// without `cfg.decay_bn_bias`, parameters of dimension ≤ 1 (biases, BatchNorm,
    /// coefficients) get no weight decay.
    pub fn new(vs: &VarStore, cfg: &OptimConfig) -> Sgd {
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let slots = vars
            .into_iter()
            .map(|(name, var)| {
                let decay = cfg.decay_bn_bias || !is_no_decay(&name, &var);
                Slot {
                    name,
                    var,
                    decay,
                    buf: None,
                }
            })
            .collect();
        Sgd {
            slots,
            momentum: cfg.momentum,
            nesterov: cfg.nesterov,
            weight_decay: cfg.weight_decay,
        }
    }

    /// Clears the gradients.
    pub fn zero_grad(&mut self) {
        for s in &mut self.slots {
            let mut g = s.var.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// The global L2 norm of the gradients.
    pub(crate) fn grad_norm(&self) -> f64 {
        let mut total = 0.0;
        for s in &self.slots {
            let g = s.var.grad();
            if g.defined() {
                let n = g.norm().double_value(&[]);
                total += n * n;
            }
        }
        total.sqrt()
    }

    /// Scales every gradient by `factor` (gradient clipping, loss-scale removal).
    pub(crate) fn scale_grads(&mut self, factor: f64) {
        tch::no_grad(|| {
            for s in &self.slots {
                let mut g = s.var.grad();
                if g.defined() {
                    let _ = g.g_mul_scalar_(factor);
                }
            }
        });
    }

    /// True when every gradient is finite.
    pub(crate) fn grads_finite(&self) -> bool {
        self.slots.iter().all(|s| {
            let g = s.var.grad();
            !g.defined() || g.isfinite().all().int64_value(&[]) != 0
        })
    }

    /// One update with learning rate `lr`.
    pub fn step(&mut self, lr: f64) {
        let (mu, wd, nesterov) = (self.momentum, self.weight_decay, self.nesterov);
        tch::no_grad(|| {
            for s in &mut self.slots {
                let g = s.var.grad();
                if !g.defined() {
                    continue;
                }
                let mut d = if s.decay && wd != 0.0 {
                    &g + &s.var * wd
                } else {
                    g.shallow_clone()
                };
                if mu != 0.0 {
                    let buf = match s.buf.take() {
                        Some(mut b) => {
                            let _ = b.g_mul_scalar_(mu).g_add_(&d);
                            b
                        }
                        None => d.detach().copy(),
                    };
                    d = if nesterov {
                        &d + &buf * mu
                    } else {
                        buf.shallow_clone()
                    };
                    s.buf = Some(buf);
                }
                let _ = s.var.g_sub_(&(d * lr));
            }
        });
    }

    /// Writes the momentum buffers (safetensors).
    pub fn save(&self, path: &Path) -> Result<(), tch::TchError> {
        let named: Vec<(String, Tensor)> = self
            .slots
            .iter()
            .filter_map(|s| {
                s.buf
                    .as_ref()
                    .map(|b| (s.name.clone(), b.to_device(tch::Device::Cpu)))
            })
            .collect();
        Tensor::write_safetensors(&named, path)
    }

    /// Reads momentum buffers written by [`Sgd::save`].
    pub fn load(&mut self, path: &Path) -> Result<(), tch::TchError> {
        let named = Tensor::read_safetensors(path)?;
        for (name, t) in named {
            if let Some(s) = self.slots.iter_mut().find(|s| s.name == name) {
                s.buf = Some(t.to_device(s.var.device()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    #[test]
    fn matches_the_textbook_update() {
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[2], nn::Init::Const(1.0));
        let cfg = OptimConfig {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.1,
            decay_bn_bias: true,
            ..OptimConfig::default()
        };
        let mut opt = Sgd::new(&vs, &cfg);
        // f(w) = ½‖w‖² so g = w.
        let mut expect_w = [1.0f64, 1.0];
        let mut buf = [0.0f64, 0.0];
        for step in 0..3 {
            opt.zero_grad();
            (&w * &w).sum(Kind::Float).g_mul_scalar(0.5).backward();
            opt.step(0.1);
            for i in 0..2 {
                let d = expect_w[i] + 0.1 * expect_w[i];
                buf[i] = if step == 0 { d } else { 0.9 * buf[i] + d };
                expect_w[i] -= 0.1 * (d + 0.9 * buf[i]);
            }
        }
        let got = Vec::<f64>::try_from(&w.to_kind(Kind::Double)).unwrap();
        for i in 0..2 {
            assert!(
                (got[i] - expect_w[i]).abs() < 1e-6,
                "{got:?} vs {expect_w:?}"
            );
        }
    }
}
