//! The heavy-ball ResNet-20 whose stages `#[derive(Unroll)]` generates (see `src/lib.rs`),
//! trained for one epoch on a CIFAR-10 subset on the CPU: 1,000 training images, tested on 500.
//! The data is found through `OPTARCH_DATA` (see docs/DATA.md); without it the example says so
//! and exits cleanly. Nothing is downloaded.
//!
//! ```text
//! OPTARCH_DATA=/work/shared/data cargo run --release -p optarch-examples --example cifar_derive
//! ```

use anyhow::Result;
use optarch_core::exec::Compute;
use optarch_examples::{data_root, derived_resnet20};
use optarch_search::data::{self, DatasetKind, LoadOptions};
use std::time::Instant;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind};

fn main() -> Result<()> {
    // Freed tensors stay for the next step, as in `optarch` (docs/SETUP.md, "The allocator").
    optarch_core::malloc::tune_for_training().map_err(anyhow::Error::msg)?;
    let Some(root) = data_root("cifar_derive") else {
        return Ok(());
    };
    tch::set_num_threads(2);
    tch::manual_seed(0);
    let opts = LoadOptions {
        path: Some(root),
        download: false,
        ..Default::default()
    };
    let tt = data::load(DatasetKind::Cifar10, &opts)?;
    let train = tt.train.take(1000);
    let test = tt.test.take(500);
    let norm = train.channel_stats();
    let xs = norm.apply(&train.images_tensor(Device::Cpu))?;
    let ys = train.labels_tensor(Device::Cpu);
    let xt = norm.apply(&test.images_tensor(Device::Cpu))?;
    let yt = test.labels_tensor(Device::Cpu);

    let vs = nn::VarStore::new(Device::Cpu);
    let batch = 50;
    // The fastest precision this CPU supports (bf16 + channels_last with AVX-512-BF16 or AMX)
    // for steps of `batch` images of 32×32.
    let compute = Compute::fastest(Device::Cpu, batch * 32 * 32);
    let net = derived_resnet20(&vs.root(), 10, compute);
    let mut opt = nn::Sgd {
        momentum: 0.9,
        nesterov: true,
        ..Default::default()
    }
    .build(&vs, 0.05)?;
    let start = Instant::now();
    let perm = tch::Tensor::randperm(xs.size()[0], (Kind::Int64, Device::Cpu));
    let mut losses = Vec::new();
    for i in 0..(xs.size()[0] / batch) {
        let idx = perm.narrow(0, i * batch, batch);
        let loss = net
            .forward_t(&xs.index_select(0, &idx), true)
            .cross_entropy_for_logits(&ys.index_select(0, &idx));
        opt.backward_step(&loss);
        losses.push(loss.double_value(&[]));
    }
    let acc = tch::no_grad(|| net.batch_accuracy_for_logits(&xt, &yt, Device::Cpu, 250));
    let first = losses.first().copied().unwrap_or(f64::NAN);
    let last = losses.last().copied().unwrap_or(f64::NAN);
    println!(
        "one epoch on {} CIFAR-10 images ({} steps, {compute}) in {:.1} s: loss {first:.3} -> \
         {last:.3}, test accuracy {:.1} % on {} images",
        train.len(),
        losses.len(),
        start.elapsed().as_secs_f64(),
        100.0 * acc,
        test.len()
    );
    if !last.is_finite() {
        anyhow::bail!("the loss diverged");
    }
    Ok(())
}
