//! An inline custom spec: a three-step method `z[k+1] = z[k] + h·B(z[k]) + a (z[k] − z[k−1])
//! − b (z[k−1] − z[k−2])` written in the attribute, with one block shared by every step (tied
//! weights, the setting of the paper's theory). Prints the topology the forward pass was
//! generated from.
//!
//! ```text
//! cargo run --release -p optarch-examples --example inline_spec
//! ```

use anyhow::{anyhow, Result};
use optarch_core::Unrolled;
use optarch_macros::Unroll;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// A small MLP block on feature vectors.
#[derive(Debug)]
struct Mlp {
    l1: nn::Linear,
    l2: nn::Linear,
}

impl ModuleT for Mlp {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.apply(&self.l1).tanh().apply(&self.l2)
    }
}

#[derive(Debug, Unroll)]
#[optarch(
    yaml = r#"
name: three_step
summary: a three-step linear method with two momentum terms
params:
  h: 0.5
  a: 0.6
  b: 0.1
state: [z]
init:
  z[-1]: z[0]
  z[-2]: z[0]
step:
  z[k+1]: z[k] - h * grad(z[k]) + a * (z[k] - z[k-1]) - b * (z[k-1] - z[k-2])
output: z
"#,
    steps = 6,
    set(a = 0.7)
)]
struct ThreeStep {
    /// One block, used at every step (the marker names the blocks field).
    #[optarch(blocks)]
    block: Mlp,
    #[allow(dead_code)]
    label: String,
}

/// A fixed-size array of blocks: its length must be the number of blocks (checked at compile
/// time).
#[derive(Debug, Unroll)]
#[optarch(
    yaml = "name: gd\nstate: [z]\nstep:\n  z[k+1]: z[k] - grad(z[k])\noutput: z\n",
    steps = 2
)]
struct Pair {
    blocks: [Mlp; 2],
}

fn mlp(p: &nn::Path, width: i64) -> Mlp {
    Mlp {
        l1: nn::linear(p / "l1", width, 2 * width, Default::default()),
        l2: nn::linear(p / "l2", 2 * width, width, Default::default()),
    }
}

fn main() -> Result<()> {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = ThreeStep::new(&vs.root(), |p, _step| mlp(p, 16));
    let topo = ThreeStep::topology().map_err(|e| anyhow!("{e}"))?;
    let report = optarch_core::analysis::analyse(&topo).map_err(|e| anyhow!("{e}"))?;
    print!("{report}");
    let x = Tensor::randn([32, 16], (Kind::Float, Device::Cpu));
    let y = net.forward_t(&x, false);
    println!(
        "{} unrolled for {} steps with one shared block ({} variables): output {:?}",
        topo.name,
        ThreeStep::STEPS,
        vs.variables().len(),
        y.size()
    );
    let pair = Pair::new(&(vs.root() / "pair"), |p, _| mlp(p, 16));
    println!(
        "array of blocks: output {:?}",
        pair.forward_t(&x, false).size()
    );
    Ok(())
}
