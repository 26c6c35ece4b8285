//! The executor against hand-written tch networks: ResNet-20 (option A) from the gradient
//! descent spec, small heavy-ball and Nesterov networks from their formulas; parameter counts,
//! learnable coefficients, and freeing of intermediates.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optarch_core::exec::reference::{conv3, Basic, HandResNet};
use optarch_core::exec::{
    parameter_count, Arch, BlockKind, ExecError, History, Kernels, Network, Plan, Shortcut, Stage,
    Stem,
};
use optarch_core::spec::{load, Overrides, Spec};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

fn spec(name: &str) -> Spec {
    load(format!(
        "{}/../specs/{name}.yaml",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn set(o: &[(&str, f64)]) -> Overrides {
    o.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

// ---------------------------------------------------------------- hand-written networks

/// One stage of `steps` basic blocks at width `w` after a 3x3 stem (BN-ReLU), with a
/// momentum update written from the formulas in DESIGN.md.
#[derive(Debug)]
struct HandMomentum {
    stem: nn::Conv2D,
    stem_bn: nn::BatchNorm,
    blocks: Vec<Basic>,
    fc: nn::Linear,
    nesterov: bool,
    beta: f64,
    h: f64,
    relu: bool,
}

impl HandMomentum {
    fn new(
        p: &nn::Path,
        steps: usize,
        w: i64,
        classes: i64,
        nesterov: bool,
        beta: f64,
        relu: bool,
    ) -> Self {
        HandMomentum {
            stem: conv3(p / "stem" / "conv", 3, w, 1),
            stem_bn: nn::batch_norm2d(p / "stem" / "bn", w, Default::default()),
            blocks: (0..steps)
                .map(|k| Basic::new(&(p / "s0" / format!("b{k}")), w, w, 1))
                .collect(),
            fc: nn::linear(p / "head" / "fc", w, classes, Default::default()),
            nesterov,
            beta,
            h: 1.0,
            relu,
        }
    }
}

impl ModuleT for HandMomentum {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let act = |t: Tensor| if self.relu { t.relu() } else { t };
        let mut z = x.apply(&self.stem).apply_t(&self.stem_bn, train).relu();
        let mut z_prev = z.shallow_clone(); // z[-1] = z[0]
        for (k, b) in self.blocks.iter().enumerate() {
            let next = if self.nesterov {
                // y_k = z_k + β_k (z_k − z_{k−1}), β_k = (k−1)/(k+2); z_{k+1} = y_k + h B(y_k)
                let beta_k = (k as f64 - 1.0) / (k as f64 + 2.0);
                let y = &z + (&z - &z_prev) * beta_k;
                act(&y + b.f(&y, train) * self.h)
            } else {
                // z_{k+1} = z_k + h B(z_k) + β (z_k − z_{k−1})
                act(&z + b.f(&z, train) * self.h + (&z - &z_prev) * self.beta)
            };
            z_prev = z;
            z = next;
        }
        z.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}

// ---------------------------------------------------------------- comparison helpers

fn zero_grads(vs: &nn::VarStore) {
    for mut v in vs.trainable_variables() {
        v.zero_grad();
    }
}

/// Copies `exec`'s variables into `hand` (same names and shapes), runs both on `x` in train and
/// then eval mode, and returns the largest absolute difference of outputs and of gradients.
fn compare(
    exec_vs: &nn::VarStore,
    exec: &dyn ModuleT,
    hand_vs: &mut nn::VarStore,
    hand: &dyn ModuleT,
    x: &Tensor,
) -> (f64, f64) {
    let names_e: Vec<String> = {
        let mut v: Vec<String> = exec_vs.variables().into_keys().collect();
        v.sort();
        v
    };
    let names_h: Vec<String> = {
        let mut v: Vec<String> = hand_vs.variables().into_keys().collect();
        v.sort();
        v
    };
    assert_eq!(
        names_e, names_h,
        "the two networks name their variables differently"
    );
    for (name, t) in exec_vs.variables() {
        assert_eq!(
            t.size(),
            hand_vs.variables()[&name].size(),
            "shape of {name}"
        );
    }
    hand_vs.copy(exec_vs).unwrap();
    let (mut out_diff, mut grad_diff) = (0.0f64, 0.0f64);
    let weights = Tensor::randn([x.size()[0], 10], (Kind::Float, Device::Cpu));
    for train in [true, false] {
        zero_grads(exec_vs);
        zero_grads(hand_vs);
        let ye = exec.forward_t(x, train);
        let yh = hand.forward_t(x, train);
        let w = weights.narrow(1, 0, ye.size()[1]);
        out_diff = out_diff.max(f64::try_from((&ye - &yh).abs().max()).unwrap());
        (&ye * &w).sum(Kind::Float).backward();
        (&yh * &w).sum(Kind::Float).backward();
        let ve = exec_vs.variables();
        let vh = hand_vs.variables();
        for (name, te) in &ve {
            if !te.requires_grad() {
                continue;
            }
            let (ge, gh) = (te.grad(), vh[name].grad());
            assert!(ge.defined() && gh.defined(), "no gradient for {name}");
            grad_diff = grad_diff.max(f64::try_from((&ge - &gh).abs().max()).unwrap());
        }
        // running statistics are updated identically by the train pass
        for (name, te) in &ve {
            if !te.requires_grad() {
                let d = f64::try_from((te - &vh[name]).abs().max()).unwrap();
                assert!(d <= 1e-6, "buffer {name} differs by {d}");
            }
        }
    }
    (out_diff, grad_diff)
}

fn small_arch(width: i64, steps: usize, classes: i64, block: BlockKind, post: bool) -> Arch {
    Arch {
        in_channels: 3,
        classes,
        stem: Stem {
            width,
            kernel: 3,
            stride: 1,
            bn_relu: true,
            max_pool: false,
        },
        stages: vec![Stage {
            width,
            stride: 1,
            steps,
        }],
        block,
        shortcut: Shortcut::ZeroPad,
        post_activation: post,
        history: History::Restart,
    }
}

/// A fresh CPU variable store.
fn store() -> nn::VarStore {
    nn::VarStore::new(Device::Cpu)
}

/// A random CPU batch of shape `[n, c, h, w]`.
fn randn(shape: [i64; 4]) -> Tensor {
    Tensor::randn(shape, (Kind::Float, Device::Cpu))
}

/// The executor's network for spec `name` under overrides `o`, in a fresh store.
fn try_build(name: &str, o: &Overrides, arch: &Arch) -> (nn::VarStore, Result<Network, ExecError>) {
    let vs = store();
    let net = Network::new(&vs.root(), &spec(name), o, arch);
    (vs, net)
}

/// As [`try_build`], for a network that must build.
fn build_with(name: &str, o: &Overrides, arch: &Arch) -> (nn::VarStore, Network) {
    let (vs, net) = try_build(name, o, arch);
    (vs, net.unwrap())
}

/// As [`build_with`], without overrides.
fn build(name: &str, arch: &Arch) -> (nn::VarStore, Network) {
    build_with(name, &Overrides::new(), arch)
}

fn resnet20() -> Arch {
    Arch::cifar_resnet(20, 10).unwrap()
}

/// The hand-written CIFAR ResNet-(6n+2) for 10 classes, in a fresh store.
fn hand_resnet(n: usize) -> (nn::VarStore, HandResNet) {
    let vs = store();
    let net = HandResNet::new(&vs.root(), n, 10);
    (vs, net)
}

/// Seeds the generator, then builds the executor's ResNet-20 from gradient descent and the
/// hand-written one (in that order, so both draw the same initial weights each run).
fn resnet20_pair(seed: i64) -> (nn::VarStore, Network, nn::VarStore, HandResNet) {
    tch::manual_seed(seed);
    let (exec_vs, net) = build("gradient_descent", &resnet20());
    let (hand_vs, hand) = hand_resnet(3);
    (exec_vs, net, hand_vs, hand)
}

/// Reports a [`compare`] result and requires outputs and gradients to agree within 1e-5.
fn assert_agree(what: &str, (out, grad): (f64, f64)) {
    eprintln!("{what}: max |Δ output| = {out:e}, max |Δ grad| = {grad:e}");
    assert!(
        out <= 1e-5 && grad <= 1e-5,
        "{what}: output diff {out}, gradient diff {grad}"
    );
}

// ---------------------------------------------------------------- tests

#[test]
fn gradient_descent_on_cifar_resnet_is_resnet20_option_a() {
    let (exec_vs, net, mut hand_vs, hand) = resnet20_pair(0);
    assert_eq!(parameter_count(&exec_vs), parameter_count(&hand_vs));
    let x = randn([3, 3, 32, 32]);
    assert_agree(
        "resnet-20",
        compare(&exec_vs, &net, &mut hand_vs, &hand, &x),
    );
}

#[test]
fn resnet_parameter_counts_match_he_et_al() {
    // Option A (zero-padded identity shortcuts) as in He et al.'s CIFAR experiments.
    for (depth, n, expected) in [(20, 3, 269_722), (56, 9, 853_018), (110, 18, 1_727_962)] {
        let (vs, _net) = build("gradient_descent", &Arch::cifar_resnet(depth, 10).unwrap());
        let (hand_vs, _hand) = hand_resnet(n);
        assert_eq!(
            parameter_count(&hand_vs),
            expected,
            "hand-written ResNet-{depth}"
        );
        assert_eq!(parameter_count(&vs), expected, "executor ResNet-{depth}");
    }
    // Option B (1x1 projection + BN at the two stage changes) adds 2,752 parameters.
    let mut arch = resnet20();
    arch.shortcut = Shortcut::Projection;
    let (vs, _net) = build("gradient_descent", &arch);
    assert_eq!(parameter_count(&vs), 272_474);
}

fn momentum_case(nesterov: bool, post: bool) -> (f64, f64) {
    tch::manual_seed(1);
    let (steps, width, classes, beta) = (3, 4, 3, 0.7);
    let (name, o) = if nesterov {
        ("nesterov", Overrides::new())
    } else {
        ("heavy_ball", set(&[("beta", beta)]))
    };
    let arch = small_arch(width, steps, classes, BlockKind::Basic, post);
    let (exec_vs, net) = build_with(name, &o, &arch);
    let mut hand_vs = store();
    let hand = HandMomentum::new(&hand_vs.root(), steps, width, classes, nesterov, beta, post);
    let x = randn([2, 3, 8, 8]);
    compare(&exec_vs, &net, &mut hand_vs, &hand, &x)
}

#[test]
fn heavy_ball_matches_its_formula() {
    for post in [true, false] {
        assert_agree(
            &format!("heavy ball (relu {post})"),
            momentum_case(false, post),
        );
    }
}

#[test]
fn nesterov_matches_its_formula() {
    for post in [true, false] {
        assert_agree(
            &format!("nesterov (relu {post})"),
            momentum_case(true, post),
        );
    }
}

#[test]
fn learnable_coefficients_are_named_and_trained() {
    tch::manual_seed(2);
    let arch = small_arch(4, 4, 3, BlockKind::Basic, true);
    let topo = optarch_core::topology::unroll(&spec("lm_resnet"), 4, &Overrides::new()).unwrap();
    assert!(!topo.learnables.is_empty());
    let (vs, net) = build("lm_resnet", &arch);
    let learnable = net.learnable_names();
    let expected: Vec<String> = topo
        .learnables
        .iter()
        .map(|l| format!("s0.coef.{}", l.name))
        .collect();
    assert_eq!(learnable, expected);
    // stable: a second build names them the same way
    assert_eq!(build("lm_resnet", &arch).1.learnable_names(), learnable);
    let vars = vs.variables();
    for (name, l) in learnable.iter().zip(&topo.learnables) {
        let v = &vars[name];
        assert!(v.requires_grad());
        assert!((f64::try_from(v).unwrap() - l.init).abs() < 1e-7);
    }
    let x = randn([2, 3, 8, 8]);
    net.forward_t(&x, true).square().sum(Kind::Float).backward();
    for name in &learnable {
        let g = vars[name].grad();
        assert!(g.defined(), "{name} got no gradient");
        assert!(
            f64::try_from(g.abs()).unwrap() > 0.0,
            "{name} has a zero gradient"
        );
    }
}

/// Channels of a toy run's output: 2 per unit (concatenations stack maps of 2 channels).
fn plan_out_channels(topo: &optarch_core::topology::Topology) -> i64 {
    let plan = Plan::compile(topo).unwrap();
    2 * plan.ops[plan.output].units as i64
}

/// Channel-preserving toy kernels: blocks take the first `c` channels and halve them.
struct Toy(i64);

impl Kernels for Toy {
    fn block(&self, _index: usize, _op: usize, x: &Tensor, _train: bool) -> Tensor {
        x.narrow(1, 0, self.0) * 0.5
    }
}

#[test]
fn intermediates_are_freed_as_the_analysis_predicts() {
    let dir = format!("{}/../specs", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let s = load(&path).unwrap();
        for steps in [1, 4, 7, 64] {
            let topo = optarch_core::topology::unroll(&s, steps, &Overrides::new()).unwrap();
            let plan = Plan::compile(&topo).unwrap();
            let params: Vec<Tensor> = topo
                .learnables
                .iter()
                .map(|l| Tensor::from(l.init as f32))
                .collect();
            let mut trace = Vec::new();
            let x = Tensor::ones([1, 2, 3, 3], (Kind::Float, Device::Cpu));
            let y = plan
                .run(x, None, &params, &Toy(2), false, Some(&mut trace))
                .unwrap();
            assert_eq!(y.size()[1], plan_out_channels(&topo));
            let mem = optarch_core::analysis::memory(&topo).unwrap();
            assert_eq!(trace.len(), plan.ops.len());
            // the executor holds, after every operation, what the plan counts
            assert_eq!(trace, plan.live(), "{} at {steps} steps", path.display());
            assert_eq!(
                trace.iter().max().copied(),
                Some(mem.peak),
                "{} at {steps} steps",
                path.display()
            );
            // the last value standing is the output alone
            assert_eq!(
                trace.last().copied(),
                Some(plan.ops[plan.ops[plan.output].operands[0]].units)
            );
        }
        seen += 1;
    }
    assert!(seen >= 8);
}

/// The Polyak–Ruppert running mean of the iterates: `m[k+1]` is the mean of `z[0..=k+1]`.
const RUNNING_MEAN: &str = "name: running_mean\nstate: [z, m]\ninput: z\ninit:\n  m[0]: z[0]\nstep:\n  z[k+1]: z[k] - grad(z[k])\n  m[k+1]: (k + 1) / (k + 2) * m[k] + 1 / (k + 2) * z[k+1]\noutput: m\n";

/// Averages of the iterates (`specs/polyak_ema.yaml`, and the running mean) at 64 steps: the
/// executor holds at most 4 maps, the peak the analysis reports, step by step, and computes
/// the average the recurrence defines.
#[test]
fn averages_run_in_the_memory_the_analysis_reports() {
    let mean = optarch_core::spec::load_str("running_mean.yaml", RUNNING_MEAN).unwrap();
    let ema = spec("polyak_ema");
    // the weight of m[k] in m[k+1] (the EMA's default a = 0.5)
    let weights: [fn(usize) -> f64; 2] = [|_| 0.5, |k| (k + 1) as f64 / (k + 2) as f64];
    for (s, weight) in [(&ema, weights[0]), (&mean, weights[1])] {
        let steps = 64;
        let topo = optarch_core::topology::unroll(s, steps, &Overrides::new()).unwrap();
        let plan = Plan::compile(&topo).unwrap();
        let mem = optarch_core::analysis::memory(&topo).unwrap();
        let mut trace = Vec::new();
        let x = Tensor::ones([1, 2, 3, 3], (Kind::Double, Device::Cpu));
        let y = plan
            .run(x, None, &[], &Toy(2), false, Some(&mut trace))
            .unwrap();
        let measured = trace.iter().max().copied();
        assert_eq!(measured, Some(mem.peak), "{}", s.name);
        assert_eq!(mem.peak, 4, "{}", s.name);
        for (k, want) in mem.per_step.iter().enumerate() {
            let got = plan
                .ops
                .iter()
                .zip(&trace)
                .filter(|(op, _)| op.step == Some(k))
                .map(|(_, l)| *l)
                .max();
            assert_eq!(got, Some(*want), "{} step {k}", s.name);
        }
        // The toy block halves its input: z[k+1] = 1.5 z[k].
        let (mut z, mut m) = (1.0f64, 1.0f64);
        for k in 0..steps {
            z *= 1.5;
            m = weight(k) * m + (1.0 - weight(k)) * z;
        }
        let got = y.mean(Kind::Double).double_value(&[]);
        assert!((got - m).abs() <= 1e-12 * m, "{}: {got} vs {m}", s.name);
    }
}

#[test]
fn networks_hold_only_the_live_history() {
    for name in ["heavy_ball", "polyak_ema"] {
        let (_vs, net) = build(name, &resnet20());
        let topo = optarch_core::topology::unroll(&spec(name), 3, &Overrides::new()).unwrap();
        let peak = optarch_core::analysis::memory(&topo).unwrap().peak;
        let mut trace = Vec::new();
        let x = randn([2, 3, 32, 32]);
        let y = tch::no_grad(|| net.try_forward_t(&x, false, Some(&mut trace))).unwrap();
        assert_eq!(y.size(), [2, 10]);
        assert_eq!(trace.len(), 3);
        for stage in &trace {
            assert_eq!(stage.iter().max().copied(), Some(peak), "{name}");
        }
    }
}

#[test]
fn mismatched_widths_and_bad_depths_are_errors() {
    assert!(Arch::cifar_resnet(21, 10).is_err());
    assert!(Arch::preset("cifar-resnet", 56, 10).is_ok());
    assert!(Arch::preset("lenet", 5, 10).is_err());
    assert!(BlockKind::parse("dense").is_ok() && BlockKind::parse("wide").is_err());
    // dense blocks output 12 channels: they cannot be added to 16-channel states
    let mut arch = resnet20();
    arch.block = BlockKind::parse("dense").unwrap();
    let err = try_build("gradient_descent", &Overrides::new(), &arch)
        .1
        .unwrap_err();
    assert!(err.to_string().contains("channels"), "{err}");
}

/// bn1, conv1 (1x1), bn2, conv2 (3x3)
type DenseLayer = (nn::BatchNorm, nn::Conv2D, nn::BatchNorm, nn::Conv2D);
/// bn, conv (1x1); the 2x2 average pool has no parameters
type Transition = (nn::BatchNorm, nn::Conv2D);

/// DenseNet-BC on CIFAR (Huang et al.), written out by hand: stem conv3x3 to 2k channels,
/// three dense stages of n layers BN-ReLU-1x1(4k)-BN-ReLU-3x3(k), transitions
/// BN-ReLU-1x1(θC)-avgpool2, final BN-ReLU, global pool, linear.
#[derive(Debug)]
struct HandDenseNet {
    stem: nn::Conv2D,
    /// per stage: optional transition (bn, conv), then layers (bn1, conv1, bn2, conv2)
    stages: Vec<(Option<Transition>, Vec<DenseLayer>)>,
    bn: nn::BatchNorm,
    fc: nn::Linear,
}

impl HandDenseNet {
    fn new(p: &nn::Path, depth: i64, k: i64, classes: i64) -> HandDenseNet {
        let n = (depth - 4) / 6;
        let nobias = |stride: i64, padding: i64| nn::ConvConfig {
            stride,
            padding,
            bias: false,
            ..Default::default()
        };
        let stem = nn::conv2d(p / "stem" / "conv", 3, 2 * k, 3, nobias(1, 1));
        let mut c = 2 * k;
        let mut stages = Vec::new();
        for s in 0..3 {
            let sp = p / format!("s{s}");
            let transition = (s > 0).then(|| {
                let t = &sp / "transition";
                let out = c / 2;
                let r = (
                    nn::batch_norm2d(&t / "bn", c, Default::default()),
                    nn::conv2d(&t / "conv", c, out, 1, nobias(1, 0)),
                );
                c = out;
                r
            });
            let mut layers = Vec::new();
            for j in 0..n {
                let b = &sp / format!("b{j}");
                layers.push((
                    nn::batch_norm2d(&b / "bn1", c, Default::default()),
                    nn::conv2d(&b / "conv1", c, 4 * k, 1, nobias(1, 0)),
                    nn::batch_norm2d(&b / "bn2", 4 * k, Default::default()),
                    nn::conv2d(&b / "conv2", 4 * k, k, 3, nobias(1, 1)),
                ));
                c += k;
            }
            stages.push((transition, layers));
        }
        HandDenseNet {
            stem,
            stages,
            bn: nn::batch_norm2d(p / "head" / "bn", c, Default::default()),
            fc: nn::linear(p / "head" / "fc", c, classes, Default::default()),
        }
    }
}

impl ModuleT for HandDenseNet {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut h = x.apply(&self.stem);
        for (transition, layers) in &self.stages {
            if let Some((bn, conv)) = transition {
                h = h.apply_t(bn, train).relu().apply(conv).avg_pool2d(
                    [2, 2],
                    [2, 2],
                    [0, 0],
                    false,
                    true,
                    None,
                );
            }
            let mut feats = vec![h];
            for (bn1, conv1, bn2, conv2) in layers {
                let input = Tensor::cat(&feats, 1);
                feats.push(
                    input
                        .apply_t(bn1, train)
                        .relu()
                        .apply(conv1)
                        .apply_t(bn2, train)
                        .relu()
                        .apply(conv2),
                );
            }
            h = Tensor::cat(&feats, 1);
        }
        h.apply_t(&self.bn, train)
            .relu()
            .adaptive_avg_pool2d([1, 1])
            .flatten(1, -1)
            .apply(&self.fc)
    }
}

#[test]
fn densenet_spec_on_cifar_densenet_is_densenet_bc() {
    tch::manual_seed(3);
    let (exec_vs, net) = build("densenet", &Arch::cifar_densenet(100, 12, 0.5, 10).unwrap());
    let mut hand_vs = store();
    let hand = HandDenseNet::new(&hand_vs.root(), 100, 12, 10);
    assert_eq!(parameter_count(&hand_vs), 769_162);
    assert_eq!(parameter_count(&exec_vs), 769_162);
    // The science campaign's DenseNet-BC (docs/SCIENCE.md): L = 40 at growth 15 matches
    // ResNet-20's 269,722 parameters within 1.2 %.
    let (k15, _) = build("densenet", &Arch::cifar_densenet(40, 15, 0.5, 10).unwrap());
    assert_eq!(parameter_count(&k15), 272_980);
    let x = randn([2, 3, 32, 32]);
    assert_agree(
        "densenet-bc-100",
        compare(&exec_vs, &net, &mut hand_vs, &hand, &x),
    );
}

#[test]
fn imagenet_resnets_have_torchvision_parameter_counts() {
    for (depth, expected) in [(18, 11_689_512), (50, 25_557_032)] {
        let (vs, _net) = build("gradient_descent", &Arch::imagenet(depth, 1000).unwrap());
        assert_eq!(parameter_count(&vs), expected, "ResNet-{depth}");
    }
}

#[test]
fn bottleneck_and_preact_networks_run() {
    tch::manual_seed(4);
    for (block, post) in [
        (BlockKind::parse("bottleneck").unwrap(), true),
        (BlockKind::parse("preact").unwrap(), false),
    ] {
        let mut arch = Arch::cifar_resnet(8, 5).unwrap();
        arch.block = block;
        arch.post_activation = post;
        arch.shortcut = Shortcut::Projection;
        let (vs, net) = build("heavy_ball", &arch);
        let x = randn([2, 3, 16, 16]);
        let y = net.forward_t(&x, true);
        assert_eq!(y.size(), [2, 5]);
        y.sum(Kind::Float).backward();
        assert!(vs.trainable_variables().iter().all(|v| v.grad().defined()));
    }
}

#[test]
fn checkpoints_load_into_a_fresh_network() {
    tch::manual_seed(5);
    let arch = small_arch(4, 3, 3, BlockKind::Basic, true);
    let (vs, net) = build("lm_resnet", &arch);
    let x = randn([2, 3, 8, 8]);
    let _ = net.forward_t(&x, true); // move the BN statistics away from their initial values
    tch::no_grad(|| {
        for v in vs.trainable_variables() {
            let _ = v.shallow_clone().g_add_scalar_(0.25);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("net.safetensors");
    vs.save(&file).unwrap();
    let (mut vs2, net2) = build("lm_resnet", &arch);
    vs2.load(&file).unwrap();
    let d = f64::try_from(
        (net.forward_t(&x, false) - net2.forward_t(&x, false))
            .abs()
            .max(),
    )
    .unwrap();
    assert_eq!(d, 0.0);
}

/// Heavy ball over two stages (widths 4 and 8, the second entered with stride 2) with the
/// history carried across the stage change through option-A projections P:
/// z_{k0+1} = relu(P z_{k0} + B(z_{k0}) + β (P z_{k0} − P z_{k0−1})).
#[derive(Debug)]
struct HandHeavyBall2 {
    stem: nn::Conv2D,
    stem_bn: nn::BatchNorm,
    stages: Vec<Vec<Basic>>,
    fc: nn::Linear,
    beta: f64,
}

fn option_a(x: &Tensor, c_out: i64) -> Tensor {
    let c = x.size()[1];
    let pad = (c_out - c) / 2;
    x.slice(2, 0, None, 2)
        .slice(3, 0, None, 2)
        .constant_pad_nd([0, 0, 0, 0, pad, c_out - c - pad])
}

impl ModuleT for HandHeavyBall2 {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let mut z = x.apply(&self.stem).apply_t(&self.stem_bn, train).relu();
        let mut z_prev = z.shallow_clone();
        for (s, blocks) in self.stages.iter().enumerate() {
            for (j, b) in blocks.iter().enumerate() {
                let (zp, zpp) = if s > 0 && j == 0 {
                    (option_a(&z, 8), option_a(&z_prev, 8))
                } else {
                    (z.shallow_clone(), z_prev)
                };
                let next = (&zp + b.f(&z, train) + (&zp - &zpp) * self.beta).relu();
                z_prev = zp;
                z = next;
            }
        }
        z.adaptive_avg_pool2d([1, 1]).flatten(1, -1).apply(&self.fc)
    }
}

fn two_stage_arch(history: History) -> Arch {
    let mut arch = small_arch(4, 2, 3, BlockKind::Basic, true);
    arch.stages.push(Stage {
        width: 8,
        stride: 2,
        steps: 2,
    });
    arch.history = history;
    arch
}

#[test]
fn projected_history_carries_momentum_across_stages() {
    tch::manual_seed(6);
    let beta = 0.6;
    let o = set(&[("beta", beta)]);
    let (exec_vs, net) = build_with("heavy_ball", &o, &two_stage_arch(History::Project));
    let mut hand_vs = store();
    let hp = hand_vs.root();
    let hand = HandHeavyBall2 {
        stem: conv3(&hp / "stem" / "conv", 3, 4, 1),
        stem_bn: nn::batch_norm2d(&hp / "stem" / "bn", 4, Default::default()),
        stages: vec![
            (0..2)
                .map(|j| Basic::new(&(&hp / "s0" / format!("b{j}")), 4, 4, 1))
                .collect(),
            vec![
                Basic::new(&(&hp / "s1" / "b0"), 4, 8, 2),
                Basic::new(&(&hp / "s1" / "b1"), 8, 8, 1),
            ],
        ],
        fc: nn::linear(&hp / "head" / "fc", 8, 3, Default::default()),
        beta,
    };
    let x = randn([2, 3, 8, 8]);
    assert_agree(
        "heavy ball, projected history",
        compare(&exec_vs, &net, &mut hand_vs, &hand, &x),
    );

    // restarting instead forgets z[k0-1]: a different network on the same weights
    let (mut restart_vs, restart) = build_with("heavy_ball", &o, &two_stage_arch(History::Restart));
    restart_vs.copy(&exec_vs).unwrap();
    let d = f64::try_from(
        (net.forward_t(&x, false) - restart.forward_t(&x, false))
            .abs()
            .max(),
    )
    .unwrap();
    assert!(d > 1e-4, "restart and projection agree ({d})");
}

#[test]
fn projecting_gradient_descent_is_still_resnet() {
    tch::manual_seed(7);
    let arch = resnet20();
    let (restart_vs, restart) = build("gradient_descent", &arch);
    let mut arch_p = arch.clone();
    arch_p.history = History::Project;
    let (mut project_vs, project) = build("gradient_descent", &arch_p);
    assert_eq!(parameter_count(&project_vs), 269_722);
    let x = randn([2, 3, 32, 32]);
    let (out, grad) = compare(&restart_vs, &restart, &mut project_vs, &project, &x);
    assert!(
        out == 0.0 && grad == 0.0,
        "output diff {out}, gradient diff {grad}"
    );
}

#[test]
fn architectures_read_and_write_yaml() {
    for arch in [
        Arch::cifar_resnet(56, 100).unwrap(),
        Arch::cifar_densenet(100, 12, 0.5, 10).unwrap(),
        Arch::imagenet(50, 1000).unwrap(),
    ] {
        let text = serde_yaml::to_string(&arch).unwrap();
        assert_eq!(Arch::from_yaml(&text).unwrap(), arch, "{text}");
    }
    let text = serde_yaml::to_string(&resnet20()).unwrap();
    assert!(
        text.contains("kind: zero_pad") && text.contains("kind: basic"),
        "{text}"
    );
    let wide = text
        .replace("width: 64", "width: 128")
        .replace("history: restart", "history: project");
    let arch = Arch::from_yaml(&wide).unwrap();
    assert_eq!(arch.stages[2].width, 128);
    assert_eq!(arch.history, History::Project);
    let err = Arch::from_yaml(&text.replace("classes", "clases")).unwrap_err();
    assert!(err.to_string().contains("clases"), "{err}");
}

#[test]
fn the_documented_config_is_resnet20() {
    let doc = std::fs::read_to_string(format!(
        "{}/../docs/EXECUTOR.md",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let start = doc.find("```yaml\n").unwrap() + "```yaml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    assert_eq!(Arch::from_yaml(&doc[start..end]).unwrap(), resnet20());
}

#[test]
fn multiply_adds_per_image() {
    let rn20 = resnet20();
    // stem 442,368 + stage 1 14,155,776 + stage 2 12,976,128 + stage 3 12,976,128 + fc 640
    let (_vs, net) = build("gradient_descent", &rn20);
    assert_eq!(net.multiply_adds(3, 32, 32).unwrap(), 40_551_040);
    // heavy ball has the same convolutions: the extra skip costs additions only
    let (_vs, hb) = build("heavy_ball", &rn20);
    assert_eq!(hb.multiply_adds(3, 32, 32).unwrap(), 40_551_040);
    // option B adds the two strided 1x1 projections: 16·32·256 + 32·64·64
    let mut b = rn20.clone();
    b.shortcut = Shortcut::Projection;
    let (_vs, net) = build("gradient_descent", &b);
    assert_eq!(
        net.multiply_adds(3, 32, 32).unwrap(),
        40_551_040 + 131_072 + 131_072
    );
    let (_vs, dense) = build("densenet", &Arch::cifar_densenet(100, 12, 0.5, 10).unwrap());
    let m = dense.multiply_adds(3, 32, 32).unwrap();
    eprintln!("DenseNet-BC-100 (k = 12): {m} multiply-adds per 32x32 image");
    assert!((250_000_000..350_000_000).contains(&m), "{m}");
}
