//! One semantics: for every shipped spec, the module `#[derive(Unroll)]` generates and the
//! runtime executor (`Plan::run`) give the same outputs and the same gradients for the same
//! weights (the derived module's own blocks serve as the executor's kernels).

#![allow(clippy::unwrap_used)] // helpers outside #[test] functions

use optarch_core::exec::plan::{Kernels, Plan};
use optarch_core::Unrolled;
use optarch_macros::Unroll;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// A small block: conv3×3 (in → out) - BN - ReLU - conv3×3 (out → out).
#[derive(Debug)]
struct Conv {
    c1: nn::Conv2D,
    bn: nn::BatchNorm,
    c2: nn::Conv2D,
}

impl Conv {
    fn new(p: &nn::Path, cin: i64, cout: i64) -> Conv {
        let cfg = nn::ConvConfig {
            padding: 1,
            ..Default::default()
        };
        Conv {
            c1: nn::conv2d(p / "c1", cin, cout, 3, cfg),
            bn: nn::batch_norm2d(p / "bn", cout, Default::default()),
            c2: nn::conv2d(p / "c2", cout, cout, 3, cfg),
        }
    }
}

impl ModuleT for Conv {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        xs.apply(&self.c1)
            .apply_t(&self.bn, train)
            .relu()
            .apply(&self.c2)
    }
}

const C: i64 = 4;
const GROWTH: i64 = 3;

/// The derived module's blocks as the executor's kernels.
struct Shared<'a>(&'a [Conv]);

impl Kernels for Shared<'_> {
    fn block(&self, index: usize, _op: usize, x: &Tensor, train: bool) -> Tensor {
        self.0[index].forward_t(x, train)
    }
}

/// Runs the derived module and the executor on the same input and weights, and returns the
/// largest differences of the outputs and of the gradients.
fn compare(
    vs: &nn::VarStore,
    derived: &dyn ModuleT,
    blocks: &[Conv],
    coef: Option<&Tensor>,
    topo: &optarch_core::topology::Topology,
    cin: i64,
) -> (f64, f64) {
    tch::manual_seed(7);
    let x = Tensor::randn([2, cin, 6, 6], (Kind::Float, Device::Cpu));
    let plan = Plan::compile(topo).unwrap();
    let mut results = Vec::new();
    for which in 0..2 {
        for mut v in vs.trainable_variables() {
            v.zero_grad();
        }
        let y = if which == 0 {
            derived.forward_t(&x, true)
        } else {
            let params: Vec<Tensor> = (0..topo.learnables.len() as i64)
                .map(|i| coef.unwrap().get(i))
                .collect();
            plan.run(
                x.shallow_clone(),
                None,
                &params,
                &Shared(blocks),
                true,
                None,
            )
            .unwrap()
        };
        let w = Tensor::linspace(-1.0, 1.0, y.numel() as i64, (Kind::Float, Device::Cpu))
            .reshape(y.size());
        (&y * &w).sum(Kind::Float).backward();
        let mut vars: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, v)| v.requires_grad())
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let grads: Vec<Tensor> = vars.iter().map(|(_, v)| v.grad().copy()).collect();
        results.push((y.detach(), grads));
    }
    let (y0, g0) = &results[0];
    let (y1, g1) = &results[1];
    assert_eq!(y0.size(), y1.size());
    let dy = (y0 - y1).abs().max().double_value(&[]);
    let dg = g0
        .iter()
        .zip(g1)
        .map(|(a, b)| (a - b).abs().max().double_value(&[]))
        .fold(0.0, f64::max);
    assert!(!g0.is_empty());
    (dy, dg)
}

macro_rules! equal {
    ($test:ident, $file:literal, $steps:literal, dense = $dense:literal) => {
        equal!(@ $test, $file, $steps, $dense, {});
    };
    ($test:ident, $file:literal, $steps:literal, dense = $dense:literal, coef) => {
        equal!(@ $test, $file, $steps, $dense, { coef: Tensor });
    };
    (@ $test:ident, $file:literal, $steps:literal, $dense:literal, { $($coef:ident: $cty:ty)? }) => {
        #[test]
        fn $test() {
            tch::set_num_threads(1);
            #[derive(Debug, Unroll)]
            #[optarch(spec = $file, steps = $steps)]
            struct Net {
                blocks: Vec<Conv>,
                $($coef: $cty,)?
            }
            let vs = nn::VarStore::new(Device::Cpu);
            tch::manual_seed(1);
            let net = Net::new(&vs.root(), |p, step| {
                if $dense {
                    Conv::new(p, C + GROWTH * step as i64, GROWTH)
                } else {
                    Conv::new(p, C, C)
                }
            });
            let topo = Net::topology().unwrap();
            assert_eq!(Net::BLOCKS, topo.block_count());
            assert_eq!(net.blocks.len(), Net::BLOCKS);
            #[allow(unused_mut, unused_assignments)]
            let mut coef: Option<&Tensor> = None;
            $( coef = Some(&net.$coef); assert_eq!(net.$coef.size(), [topo.learnables.len() as i64]); )?
            let (dy, dg) = compare(&vs, &net, &net.blocks, coef, &topo, C);
            eprintln!("{}: outputs {dy:e}, gradients {dg:e}", $file);
            assert!(dy <= 1e-5 && dg <= 1e-5, "outputs {dy:e}, gradients {dg:e}");
        }
    };
}

equal!(
    gradient_descent,
    "../specs/gradient_descent.yaml",
    3,
    dense = false
);
equal!(
    gradient_descent_objective,
    "../specs/gradient_descent_objective.yaml",
    3,
    dense = false
);
equal!(heavy_ball, "../specs/heavy_ball.yaml", 4, dense = false);
equal!(nesterov, "../specs/nesterov.yaml", 4, dense = false);
equal!(
    nesterov_theta,
    "../specs/nesterov_theta.yaml",
    4,
    dense = false
);
equal!(densenet, "../specs/densenet.yaml", 3, dense = true);
equal!(lm_resnet, "../specs/lm_resnet.yaml", 4, dense = false, coef);
equal!(
    momentum_resnet,
    "../specs/momentum_resnet.yaml",
    4,
    dense = false
);
// The average is updated as soon as each iterate exists (the plan's memory order), in the
// derived module and in the executor alike.
equal!(polyak_ema, "../specs/polyak_ema.yaml", 6, dense = false);

// Multistep methods: Adams–Bashforth reuses earlier steps' blocks, the midpoint rule has two
// blocks a step.
equal!(
    adams_bashforth3,
    "../specs/adams_bashforth3.yaml",
    4,
    dense = false
);
equal!(
    midpoint,
    "../core/tests/fixtures/methods/midpoint.yaml",
    3,
    dense = false
);

/// The check can fail: a different block order gives different outputs.
#[test]
fn a_wrong_kernel_is_detected() {
    tch::set_num_threads(1);
    #[derive(Debug, Unroll)]
    #[optarch(spec = "../specs/heavy_ball.yaml", steps = 3)]
    struct Net {
        blocks: Vec<Conv>,
    }
    struct Reversed<'a>(&'a [Conv]);
    impl Kernels for Reversed<'_> {
        fn block(&self, index: usize, _op: usize, x: &Tensor, train: bool) -> Tensor {
            self.0[self.0.len() - 1 - index].forward_t(x, train)
        }
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let net = Net::new(&vs.root(), |p, _| Conv::new(p, C, C));
    let x = Tensor::randn([2, C, 6, 6], (Kind::Float, Device::Cpu));
    let plan = Plan::compile(&Net::topology().unwrap()).unwrap();
    let a = net.forward_t(&x, false);
    let b = plan
        .run(
            x.shallow_clone(),
            None,
            &[],
            &Reversed(&net.blocks),
            false,
            None,
        )
        .unwrap();
    assert!((a - b).abs().max().double_value(&[]) > 1e-3);
}

/// Tied weights: a single block shared by every step is built once, under `block`.
#[test]
fn shared_block_is_built_once() {
    tch::set_num_threads(1);
    #[derive(Debug, Unroll)]
    #[optarch(spec = "../specs/heavy_ball.yaml", steps = 5, set(beta = 0.9))]
    struct Tied {
        blocks: Conv,
    }
    let vs = nn::VarStore::new(Device::Cpu);
    let mut calls = Vec::new();
    let net = Tied::new(&vs.root(), |p, step| {
        calls.push(step);
        Conv::new(p, C, C)
    });
    assert_eq!(calls, [0]);
    let names: Vec<String> = vs.variables().into_keys().collect();
    assert!(names.iter().all(|n| n.starts_with("block.")), "{names:?}");
    assert_eq!(Tied::overrides().get("beta"), Some(&0.9));
    let y = net.forward_t(
        &Tensor::ones([1, C, 4, 4], (Kind::Float, Device::Cpu)),
        false,
    );
    assert_eq!(y.size(), [1, C, 4, 4]);
}
// Quasi-hyperbolic momentum reads its step's block twice (one block); triple momentum's blocks
// see an extrapolated point, its coefficients come from schedules of rho.
equal!(qhm, "../specs/qhm.yaml", 4, dense = false);
equal!(
    triple_momentum,
    "../specs/triple_momentum.yaml",
    4,
    dense = false
);
