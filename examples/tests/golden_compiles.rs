//! The modules `optarch codegen` prints (pinned in `core/tests/golden/`) compile without
//! warnings (clippy runs on this file with `-D warnings`) and run.

#![allow(clippy::unwrap_used)]

use optarch_core::Unrolled;
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

mod golden {
    pub mod densenet {
        include!("../../core/tests/golden/densenet.rs");
    }
    pub mod gradient_descent {
        include!("../../core/tests/golden/gradient_descent.rs");
    }
    pub mod gradient_descent_objective {
        include!("../../core/tests/golden/gradient_descent_objective.rs");
    }
    pub mod heavy_ball {
        include!("../../core/tests/golden/heavy_ball.rs");
    }
    pub mod lm_resnet {
        include!("../../core/tests/golden/lm_resnet.rs");
    }
    pub mod momentum_resnet {
        include!("../../core/tests/golden/momentum_resnet.rs");
    }
    pub mod nesterov {
        include!("../../core/tests/golden/nesterov.rs");
    }
    pub mod nesterov_theta {
        include!("../../core/tests/golden/nesterov_theta.rs");
    }
    pub mod polyak_ema {
        include!("../../core/tests/golden/polyak_ema.rs");
    }
}

fn linear(p: &nn::Path, cin: i64, cout: i64) -> nn::Linear {
    nn::linear(p, cin, cout, Default::default())
}

fn run(net: &dyn ModuleT, cin: i64) -> Vec<i64> {
    net.forward_t(&Tensor::ones([2, cin], (Kind::Float, Device::Cpu)), true)
        .size()
}

#[test]
fn golden_modules_run() {
    tch::set_num_threads(1);
    let vs = nn::VarStore::new(Device::Cpu);
    let p = vs.root();
    use golden::*;
    let w = 4;
    assert_eq!(
        run(
            &gradient_descent::GradientDescent::new(&(&p / "gd"), |p, _| linear(p, w, w)),
            w
        ),
        [2, w]
    );
    assert_eq!(
        run(
            &gradient_descent_objective::GradientDescentObjective::new(&(&p / "gdo"), |p, _| {
                linear(p, w, w)
            }),
            w
        ),
        [2, w]
    );
    assert_eq!(
        run(
            &heavy_ball::HeavyBall::new(&(&p / "hb"), |p, _| linear(p, w, w)),
            w
        ),
        [2, w]
    );
    assert_eq!(
        run(
            &nesterov::Nesterov::new(&(&p / "n"), |p, _| linear(p, w, w)),
            w
        ),
        [2, w]
    );
    assert_eq!(
        run(
            &nesterov_theta::NesterovTheta::new(&(&p / "nt"), |p, _| linear(p, w, w)),
            w
        ),
        [2, w]
    );
    assert_eq!(
        run(
            &momentum_resnet::MomentumResnet::new(&(&p / "m"), |p, _| linear(p, w, w)),
            w
        ),
        [2, w]
    );
    assert_eq!(
        run(
            &polyak_ema::PolyakEma::new(&(&p / "pe"), |p, _| linear(p, w, w)),
            w
        ),
        [2, w]
    );
    let lm = lm_resnet::LmResnet::new(&(&p / "lm"), |p, _| linear(p, w, w));
    assert_eq!(
        lm.coef.size(),
        [lm_resnet::LmResnet::<nn::Linear>::LEARNABLES as i64]
    );
    assert_eq!(run(&lm, w), [2, w]);
    // DenseNet: block k reads w + 2k features and adds 2; the output concatenates all.
    let d = densenet::Densenet::new(&(&p / "d"), |p, k| linear(p, w + 2 * k as i64, 2));
    assert_eq!(run(&d, w), [2, w + 2 * 3]);
    assert_eq!(
        heavy_ball::HeavyBall::<nn::Linear>::topology()
            .unwrap()
            .block_count(),
        3
    );
}
