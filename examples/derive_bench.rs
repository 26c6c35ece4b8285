//! Training-step time of the heavy-ball ResNet-20 whose stages `#[derive(Unroll)]` generates,
//! against the same network written by hand in tch (same weights), at 1 and 2 libtorch
//! threads in one run. Rounds alternate the two networks (and which goes first); each round
//! times `--iters` steps of SGD (forward in train mode, cross-entropy, backward, update). The
//! ratio is derived / hand-written, of the medians over rounds.
//!
//! ```text
//! cargo run --release -p optarch-examples --example derive_bench -- --batch 64 --rounds 7
//! cargo run --release -p optarch-examples --example derive_bench -- --compute bf16+cl
//! ```

use anyhow::{bail, Result};
use optarch_core::exec::Compute;
use optarch_examples::{derived_resnet20, hand_resnet20};
use std::time::Instant;
use tch::nn::{self, ModuleT, OptimizerConfig};
use tch::{Device, Kind, Tensor};

struct Opts {
    batch: i64,
    iters: usize,
    rounds: usize,
    threads: Vec<i32>,
    compute: Compute,
}

fn parse() -> Result<Opts> {
    let mut o = Opts {
        batch: 64,
        iters: 3,
        rounds: 7,
        threads: vec![1, 2],
        compute: Compute::FP32,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let v = it.next().map(String::as_str).unwrap_or("");
        match a.as_str() {
            "--batch" => o.batch = v.parse()?,
            "--iters" => o.iters = v.parse()?,
            "--rounds" => o.rounds = v.parse()?,
            "--threads" => {
                o.threads = v.split(',').map(str::parse).collect::<Result<_, _>>()?;
            }
            "--compute" => o.compute = v.parse().map_err(anyhow::Error::msg)?,
            _ => bail!(
                "usage: derive_bench [--batch N] [--iters N] [--rounds N] [--threads 1,2] \
                 [--compute fp32|fp32+cl|bf16|bf16+cl]"
            ),
        }
    }
    Ok(o)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

struct Net {
    vs: nn::VarStore,
    module: Box<dyn ModuleT>,
    opt: nn::Optimizer,
}

impl Net {
    fn step(&mut self, x: &Tensor, y: &Tensor) {
        let loss = self.module.forward_t(x, true).cross_entropy_for_logits(y);
        self.opt.backward_step(&loss);
    }
}

fn main() -> Result<()> {
    // Freed tensors stay for the next step, as in `optarch` (docs/SETUP.md, "The allocator").
    optarch_core::malloc::tune_for_training().map_err(anyhow::Error::msg)?;
    let o = parse()?;
    tch::manual_seed(0);
    let vs_d = nn::VarStore::new(Device::Cpu);
    let derived = derived_resnet20(&vs_d.root(), 10, o.compute);
    let mut vs_h = nn::VarStore::new(Device::Cpu);
    let hand = hand_resnet20(&vs_h.root(), 10, o.compute);
    vs_h.copy(&vs_d)?;
    let mut nets = [
        Net {
            opt: nn::Sgd::default().build(&vs_d, 0.01)?,
            vs: vs_d,
            module: Box::new(derived),
        },
        Net {
            opt: nn::Sgd::default().build(&vs_h, 0.01)?,
            vs: vs_h,
            module: Box::new(hand),
        },
    ];
    let params: i64 = nets[0]
        .vs
        .trainable_variables()
        .iter()
        .map(|t| t.numel() as i64)
        .sum();
    println!(
        "heavy-ball ResNet-20 ({params} parameters), batch {}, {} steps per round, {} rounds, CPU",
        o.batch, o.iters, o.rounds
    );
    let x = Tensor::randn([o.batch, 3, 32, 32], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(10, [o.batch], (Kind::Int64, Device::Cpu));
    for &threads in &o.threads {
        tch::set_num_threads(threads);
        for n in nets.iter_mut() {
            n.step(&x, &y); // warm-up
        }
        let mut times = [Vec::new(), Vec::new()];
        for r in 0..o.rounds {
            for j in 0..2 {
                let which = (r + j) % 2;
                let t = Instant::now();
                for _ in 0..o.iters {
                    nets[which].step(&x, &y);
                }
                times[which].push(t.elapsed().as_secs_f64() * 1e3 / o.iters as f64);
            }
        }
        let [d, h] = times.map(median);
        println!(
            "threads {threads}: derived {d:.1} ms/step, hand-written {h:.1} ms/step, ratio {:.3}",
            d / h
        );
    }
    Ok(())
}
