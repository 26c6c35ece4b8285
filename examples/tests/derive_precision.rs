//! A network of your own with `#[derive(Unroll)]` stages computes in bf16 (with channels_last)
//! as optarch's own networks do: the same weights give logits and gradients within bf16's
//! tolerance of fp32's, and the derived stages agree with the same recurrence written by hand.
#![allow(clippy::unwrap_used)]

use optarch_core::exec::Compute;
use optarch_examples::{derived_resnet20, hand_resnet20};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

const BF16_CL: Compute = Compute {
    bf16: true,
    channels_last: true,
};

/// Relative L2 error of `a` against `b`.
fn rel(a: &Tensor, b: &Tensor) -> f64 {
    let a = a.to_kind(Kind::Double);
    let b = b.to_kind(Kind::Double);
    (a - &b).norm().double_value(&[]) / b.norm().double_value(&[]).max(1e-30)
}

/// Logits and the gradient of every trainable variable (in the VarStore's name order), with
/// batch norm on its running statistics (see core/tests/precision.rs for why).
fn run(vs: &nn::VarStore, net: &dyn ModuleT, x: &Tensor) -> (Tensor, Vec<Tensor>) {
    let y = net.forward_t(x, false);
    let labels = Tensor::arange(x.size()[0], (Kind::Int64, Device::Cpu)).remainder(10);
    y.cross_entropy_for_logits(&labels).backward();
    let vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    let grads = names
        .iter()
        .filter(|n| vars[**n].requires_grad())
        .map(|n| vars[*n].grad().detach().copy())
        .collect();
    (y.detach(), grads)
}

#[test]
fn derived_networks_compute_in_bf16_within_tolerance_of_fp32() {
    tch::set_num_threads(1);
    tch::manual_seed(3);
    let vs32 = nn::VarStore::new(Device::Cpu);
    let net32 = derived_resnet20(&vs32.root(), 10, Compute::FP32);
    let mut vs16 = nn::VarStore::new(Device::Cpu);
    let net16 = derived_resnet20(&vs16.root(), 10, BF16_CL);
    vs16.copy(&vs32).unwrap();
    let mut vsh = nn::VarStore::new(Device::Cpu);
    let hand16 = hand_resnet20(&vsh.root(), 10, BF16_CL);
    vsh.copy(&vs32).unwrap();
    // Batch norm's running statistics away from (0, 1), so that evaluation mode is not trivial.
    tch::no_grad(|| {
        let x = Tensor::randn([32, 3, 32, 32], (Kind::Float, Device::Cpu));
        let _ = net32.forward_t(&x, true);
    });
    vs16.copy(&vs32).unwrap();
    vsh.copy(&vs32).unwrap();

    let x = Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu));
    let (y32, g32) = run(&vs32, &net32, &x);
    let (y16, g16) = run(&vs16, &net16, &x);
    let (yh, gh) = run(&vsh, &hand16, &x);
    assert_eq!(y16.kind(), Kind::Float, "the classifier computes in fp32");
    assert_eq!(g16.len(), g32.len());
    assert!(!g32.is_empty());
    for g in &g16 {
        assert_eq!(
            g.kind(),
            Kind::Float,
            "gradients reach the fp32 master weights"
        );
    }
    let out = rel(&y16, &y32);
    assert!(
        out > 0.0,
        "bf16 gave exactly fp32's logits: it did not run in bf16"
    );
    assert!(out < 1e-2, "bf16 logits {out} (relative L2) from fp32's");
    let worst = g16
        .iter()
        .zip(&g32)
        .map(|(a, b)| rel(a, b))
        .fold(0.0, f64::max);
    let all = rel(
        &Tensor::cat(&g16.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(), 0),
        &Tensor::cat(&g32.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(), 0),
    );
    eprintln!("derived ResNet-20, bf16 + channels_last against fp32: logits {out:.2e}, gradients {all:.2e} (worst tensor {worst:.2e})");
    assert!(all < 5e-2, "bf16 gradients {all} (relative L2) from fp32's");
    // The derived stages and the hand-written recurrence, both in bf16.
    let dh = rel(&y16, &yh);
    assert!(
        dh < 1e-2,
        "derived and hand-written bf16 networks differ by {dh}"
    );
    let gdh = rel(
        &Tensor::cat(&g16.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(), 0),
        &Tensor::cat(&gh.iter().map(|g| g.flatten(0, -1)).collect::<Vec<_>>(), 0),
    );
    assert!(
        gdh < 5e-2,
        "derived and hand-written bf16 gradients differ by {gdh}"
    );
}
