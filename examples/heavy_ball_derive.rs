//! A heavy-ball network from a spec file, with the user's own block type: `#[derive(Unroll)]`
//! generates the forward pass of `specs/heavy_ball.yaml` unrolled for 4 steps at compile time
//! (with β = 0.9 instead of the spec's default), and a constructor that builds each block from
//! a closure. One training step on random data, and a check against the runtime executor.
//!
//! ```text
//! cargo run --release -p optarch-examples --example heavy_ball_derive
//! ```

use anyhow::{anyhow, Result};
use optarch_core::exec::plan::Kernels;
use optarch_core::Unrolled;
use optarch_macros::Unroll;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

/// The user's block: a 1×1 convolution, a ReLU and a 3×3 convolution (no BN, with bias).
#[derive(Debug)]
struct MyBlock {
    mix: nn::Conv2D,
    conv: nn::Conv2D,
}

impl MyBlock {
    fn new(p: &nn::Path, width: i64) -> MyBlock {
        let same = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        MyBlock {
            mix: nn::conv2d(p / "mix", width, width, 1, Default::default()),
            conv: nn::conv2d(p / "conv", width, width, 3, same),
        }
    }
}

impl ModuleT for MyBlock {
    fn forward_t(&self, xs: &Tensor, _train: bool) -> Tensor {
        xs.apply(&self.mix).relu().apply(&self.conv)
    }
}

/// Heavy ball, four steps, β = 0.9.
#[derive(Debug, Unroll)]
#[optarch(spec = "../specs/heavy_ball.yaml", steps = 4, set(beta = 0.9))]
struct HeavyBall {
    blocks: Vec<MyBlock>,
}

struct Blocks<'a>(&'a [MyBlock]);

impl Kernels for Blocks<'_> {
    fn block(&self, index: usize, _op: usize, x: &Tensor, train: bool) -> Tensor {
        self.0[index].forward_t(x, train)
    }
}

/// What any derived network says about itself: generic code names the `Unrolled` trait the
/// derive implements.
fn describe<N: Unrolled>() -> Result<String> {
    Ok(format!(
        "{} from {} (hash {:016x}): {} steps, {} blocks",
        N::spec().map_err(|e| anyhow!("{e}"))?.name,
        N::SPEC_FILE,
        N::SPEC_HASH,
        N::STEPS,
        N::BLOCKS
    ))
}

fn main() -> Result<()> {
    tch::set_num_threads(1);
    tch::manual_seed(0);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = HeavyBall::new(&vs.root(), |p, _step| MyBlock::new(p, 8));
    println!(
        "{}, {} variables",
        describe::<HeavyBall>()?,
        vs.variables().len()
    );
    let x = Tensor::randn([4, 8, 16, 16], (Kind::Float, Device::Cpu));
    let target = Tensor::randn([4, 8, 16, 16], (Kind::Float, Device::Cpu));
    let mut opt = nn::Adam::default().build(&vs, 1e-3)?;
    let before = net
        .forward_t(&x, true)
        .mse_loss(&target, tch::Reduction::Mean);
    opt.backward_step(&before);
    let after = net
        .forward_t(&x, true)
        .mse_loss(&target, tch::Reduction::Mean);
    println!(
        "loss {:.4} -> {:.4} after one Adam step",
        before.double_value(&[]),
        after.double_value(&[])
    );

    // The same plan, interpreted by the runtime executor, gives the same output.
    let plan = HeavyBall::plan().map_err(|e| anyhow!("{e}"))?;
    let y_exec = plan
        .run(
            x.shallow_clone(),
            None,
            &[],
            &Blocks(&net.blocks),
            false,
            None,
        )
        .map_err(|e| anyhow!("{e}"))?;
    let diff = (net.forward_t(&x, false) - y_exec)
        .abs()
        .max()
        .double_value(&[]);
    println!("derived vs executor: largest difference {diff:e}");
    if diff > 1e-5 {
        return Err(anyhow!("the derived module and the executor disagree"));
    }
    Ok(())
}
