//! Export: the TorchScript module, loaded with `torch.jit.load` in the project's Python
//! environment, gives optarch's outputs on the same input; the filled-in spec and the generated
//! code come with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use optarch_core::spec;
use optarch_search::data::synthetic;
use optarch_search::train::{self, RunConfigFile};
use std::path::Path;
use std::process::Command;
use tch::nn::ModuleT;
use tch::{Device, Kind, Tensor};

fn python() -> Option<String> {
    let ok = Command::new("python")
        .args(["-c", "import torch"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some("python".into());
    }
    let msg = "python with torch is not on PATH: run the tests through scripts/test.sh, which \
               puts the project's environment (.venv) first";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// Runs `script` with `args` in `py` (one thread) and parses what it prints as JSON; a failing
/// script fails the test with Python's error.
fn run_python<T: serde::de::DeserializeOwned>(
    py: &str,
    script: &str,
    args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>,
) -> T {
    let out = Command::new(py)
        .args(["-c", script])
        .args(args)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_torchscript_module_matches_optarch_in_python() {
    tch::set_num_threads(1);
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let data = synthetic::write_cifar10(&tmp.path().join("d"), 40, 5).unwrap();
    let run = tmp.path().join("run");
    let bin = env!("CARGO_BIN_EXE_optarch");
    let specs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs");
    let out = Command::new(bin)
        .args(["--threads", "1", "--device", "cpu", "train", "--spec"])
        .arg(specs.join("heavy_ball.yaml"))
        .args([
            "--set",
            "beta=0.7",
            "--widths",
            "4,8,8",
            "--stage-steps",
            "2,2,2",
        ])
        .args([
            "--epochs",
            "1",
            "--batch-size",
            "32",
            "--val",
            "40",
            "--data",
        ])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The export does not read the data set again: it is moved away meanwhile.
    let exp = tmp.path().join("export");
    let gone = tmp.path().join("d-moved");
    std::fs::rename(&data, &gone).unwrap();
    let out = Command::new(bin)
        .args(["export", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&exp)
        .env_remove("OPTARCH_DATA")
        .output()
        .unwrap();
    // Nor does `train --resume` of the finished run: it reports the recorded summary.
    let resumed = Command::new(bin)
        .args(["train", "--resume"])
        .arg(&run)
        .env_remove("OPTARCH_DATA")
        .output()
        .unwrap();
    std::fs::rename(&gone, &data).unwrap();
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let summary = String::from_utf8_lossy(&resumed.stdout);
    assert!(summary.contains("status            done"), "{summary}");
    assert!(summary.contains("data              cifar10 ("), "{summary}");
    assert!(summary.contains(" on cpu "), "{summary}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "spec.yaml",
        "weights.safetensors",
        "model.rs",
        "model.py",
        "model.pt",
        "export.json",
    ] {
        assert!(exp.join(f).is_file(), "{f} missing");
    }
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exp.join("export.json")).unwrap()).unwrap();
    assert_eq!(meta["python_class"], "HeavyBall", "{meta}");
    assert_eq!(meta["best_epoch"], 1, "{meta}");
    assert!(meta["val_accuracy"].as_f64().is_some(), "{meta}");
    assert_eq!(meta["files"].as_array().unwrap().len(), 6, "{meta}");
    assert_eq!(meta["data_path"], data.display().to_string(), "{meta}");
    // `--format` picks the artifacts.
    let only = tmp.path().join("export-py");
    let out = Command::new(bin)
        .args(["export", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&only)
        .args(["--format", "pytorch"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(only.join("model.py").is_file() && !only.join("model.pt").exists());
    assert!(!only.join("model.rs").exists());
    // `--json` prints export.json's content.
    let out = Command::new(bin)
        .args(["export", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&only)
        .args(["--format", "rust", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(only.join("export.json")).unwrap()).unwrap();
    assert_eq!(printed, written);
    assert_eq!(printed["files"][2], "model.rs", "{printed}");
    // The filled-in spec loads, with beta = 0.7 written in.
    let filled = spec::load(exp.join("spec.yaml")).unwrap();
    let beta = filled.params.iter().find(|p| p.name == "beta").unwrap();
    assert_eq!(beta.kind, spec::ParamKind::Const(0.7));
    let code = std::fs::read_to_string(exp.join("model.rs")).unwrap();
    assert!(code.contains("impl"), "{code}");

    // optarch's own output, from the run's configuration and best weights.
    let cfg: RunConfigFile =
        serde_json::from_str(&std::fs::read_to_string(run.join("config.json")).unwrap()).unwrap();
    let (train_set, _, _) = cfg.train.data.load(cfg.train.run.seed).unwrap();
    let norm = train_set.channel_stats();
    let train::Built { mut vs, net, .. } =
        train::build(&cfg.spec, &cfg.train, &train_set, Device::Cpu).unwrap();
    vs.load(run.join("best.safetensors")).unwrap();
    tch::manual_seed(11);
    let x = Tensor::rand([3, 3, 32, 32], (Kind::Float, Device::Cpu));
    let mean = Tensor::from_slice(&norm.mean)
        .to_kind(Kind::Float)
        .view([1, 3, 1, 1]);
    let std = Tensor::from_slice(&norm.std)
        .to_kind(Kind::Float)
        .view([1, 3, 1, 1]);
    let want = tch::no_grad(|| net.forward_t(&((&x - &mean) / &std), false));
    let want: Vec<f32> = Vec::try_from(want.flatten(0, -1)).unwrap();

    // The same input through torch.jit.load in Python.
    let input: Vec<f32> = Vec::try_from(x.flatten(0, -1)).unwrap();
    let bytes: Vec<u8> = input.iter().flat_map(|v| v.to_le_bytes()).collect();
    let xin = tmp.path().join("x.bin");
    std::fs::write(&xin, bytes).unwrap();
    let script = format!(
        "import json, torch\n\
         import importlib.util, safetensors.torch\n\
         m = torch.jit.load({model:?})\n\
         x = torch.frombuffer(bytearray(open({xin:?}, 'rb').read()), dtype=torch.float32).reshape(3, 3, 32, 32)\n\
         with torch.no_grad():\n    y = m(x)\n\
         spec = importlib.util.spec_from_file_location('model', {py:?})\n\
         mod = importlib.util.module_from_spec(spec)\n\
         spec.loader.exec_module(mod)\n\
         net = mod.HeavyBall()\n\
         net.load_state_dict(safetensors.torch.load_file({weights:?}))\n\
         net.eval()\n\
         with torch.no_grad():\n    z = net(x)\n\
         print(json.dumps([y.flatten().tolist(), z.flatten().tolist()]))\n",
        model = exp.join("model.pt").display().to_string(),
        py = exp.join("model.py").display().to_string(),
        weights = exp.join("weights.safetensors").display().to_string(),
        xin = xin.display().to_string(),
    );
    let [got, got_py]: [Vec<f32>; 2] = run_python(&py, &script, [] as [&str; 0]);
    for (what, got) in [("TorchScript", &got), ("model.py", &got_py)] {
        assert_eq!(got.len(), want.len());
        assert_eq!(got.len(), 30);
        let diff = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            diff <= 1e-5,
            "{what} in Python differs from optarch by {diff}"
        );
    }
    // Not a constant network: the logits differ between images.
    assert!((want[0] - want[10]).abs() > 1e-6);

    // The same run traced in bf16 with channels_last: the casts are in the module, the logits
    // within bf16's tolerance of fp32's, and export.json says which compute it holds.
    let exp16 = tmp.path().join("export-bf16");
    let out = Command::new(bin)
        .args(["export", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&exp16)
        .args(["--precision", "bf16", "--channels-last"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("bf16, channels_last"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exp16.join("export.json")).unwrap()).unwrap();
    assert_eq!(meta["compute"]["bf16"], true, "{meta}");
    assert_eq!(meta["compute"]["channels_last"], true, "{meta}");
    let m = tch::CModule::load(exp16.join("model.pt")).unwrap();
    let y16 = tch::no_grad(|| m.forward_ts(&[&x]).unwrap());
    assert_eq!(y16.kind(), Kind::Float, "the head is fp32");
    let got16: Vec<f32> = Vec::try_from(y16.flatten(0, -1)).unwrap();
    let (num, den) = got16
        .iter()
        .zip(&want)
        .fold((0.0f64, 0.0f64), |(n, d), (a, b)| {
            (n + f64::from(a - b).powi(2), d + f64::from(*b).powi(2))
        });
    let rel = (num / den).sqrt();
    assert!(
        rel <= 2e-2,
        "bf16 export differs from fp32 by {rel} (relative L2)"
    );
    assert!(rel > 0.0, "the bf16 export computed exactly fp32's logits");
    // fp16 is CUDA autocast, not something a trace can hold: a usage error.
    let out = Command::new(bin)
        .args(["export", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(tmp.path().join("export-fp16"))
        .args(["--precision", "fp16"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fp16"));
}

/// The PyTorch module of every shipped spec on every macro-architecture it builds on (basic,
/// bottleneck with projections, pre-activation, DenseNet-BC, projected history), against the
/// executor: the state dict loads strictly from the export's weights file, the logits agree to
/// 1e-5 in evaluation mode and again after one SGD step taken on each side in training mode
/// (so the gradients and the BatchNorm statistics agree as well), and the module compiles with
/// `torch.jit.script`, moves to float64 and keeps its parameters.
#[test]
fn the_pytorch_module_matches_the_executor_on_every_spec() {
    use optarch_core::exec::{Arch, BlockKind, History, Network, Shortcut};
    use tch::nn::{self, OptimizerConfig};
    tch::set_num_threads(1);
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let specs_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs");
    let mut resnet = Arch::cifar_resnet(8, 10).unwrap();
    for (s, w) in resnet.stages.iter_mut().zip([4, 8, 8]) {
        s.width = w;
        s.steps = 2;
    }
    resnet.stem.width = 4;
    let mut bottleneck = resnet.clone();
    bottleneck.block = BlockKind::Bottleneck { expansion: 2 };
    bottleneck.shortcut = Shortcut::Projection;
    let mut preact = resnet.clone();
    preact.block = BlockKind::Preact;
    preact.post_activation = false;
    let mut projected = resnet.clone();
    projected.history = History::Project;
    let mut dense = Arch::cifar_densenet(16, 4, 0.5, 10).unwrap();
    for s in &mut dense.stages {
        s.steps = 2;
    }
    let mut dense_projected = dense.clone();
    dense_projected.history = History::Project;
    let archs = [
        ("basic", resnet),
        ("bottleneck", bottleneck),
        ("preact", preact),
        ("projected", projected),
        ("densenet", dense),
        ("densenet_projected", dense_projected),
    ];
    let (mean, std) = ([0.5, 0.45, 0.4], [0.25, 0.2, 0.3]);
    let norm = |x: &Tensor| {
        (x - Tensor::from_slice(&mean)
            .to_kind(Kind::Float)
            .view([1, 3, 1, 1]))
            / Tensor::from_slice(&std)
                .to_kind(Kind::Float)
                .view([1, 3, 1, 1])
    };
    let mut cases = Vec::new();
    let mut built_specs = std::collections::BTreeSet::new();
    let mut names: Vec<_> = std::fs::read_dir(&specs_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    names.sort();
    for path in &names {
        let spec = spec::load(path).unwrap();
        for (arch_name, arch) in &archs {
            tch::manual_seed(3);
            let mut vs = nn::VarStore::new(Device::Cpu);
            let Ok(net) = Network::new(&vs.root(), &spec, &Default::default(), arch) else {
                continue; // e.g. a concatenating spec on residual blocks
            };
            built_specs.insert(spec.name.clone());
            // Learnable coefficients away from their initial values, and BatchNorm statistics
            // that are not the identity.
            tch::no_grad(|| {
                for (name, mut v) in vs.variables() {
                    if name.contains(".coef.") {
                        let _ = v.f_add_(&(Tensor::randn([], (Kind::Float, Device::Cpu)) * 0.1));
                    }
                }
                let _ = net.forward_t(
                    &Tensor::randn([8, 3, 32, 32], (Kind::Float, Device::Cpu)),
                    true,
                );
            });
            let case = format!("{}_{arch_name}", spec.name);
            let dir = tmp.path().join(&case);
            std::fs::create_dir_all(&dir).unwrap();
            let py_src = net.python("Net", &mean, &std, "A test network.").unwrap();
            std::fs::write(dir.join("model.py"), py_src).unwrap();
            optarch_search::export::write_weights(&vs, &dir.join("weights.safetensors")).unwrap();
            let x = Tensor::rand([4, 3, 32, 32], (Kind::Float, Device::Cpu));
            let labels = Tensor::from_slice(&[1i64, 7, 3, 0]);
            let eval = tch::no_grad(|| net.forward_t(&norm(&x), false));
            // One plain SGD step (lr 0.1) on the mean cross-entropy, in training mode.
            let mut opt = nn::Sgd::default().build(&vs, 0.1).unwrap();
            let loss = net
                .forward_t(&norm(&x), true)
                .cross_entropy_for_logits(&labels);
            opt.backward_step(&loss);
            let after = tch::no_grad(|| net.forward_t(&norm(&x), false));
            let moved = f64::try_from((&after - &eval).abs().max()).unwrap();
            assert!(moved > 1e-6, "{}: the SGD step changed nothing", spec.name);
            vs.freeze();
            Tensor::write_safetensors(
                &[
                    ("x", &x),
                    ("labels", &labels),
                    ("eval", &eval),
                    ("after", &after),
                ],
                dir.join("io.safetensors"),
            )
            .unwrap();
            cases.push(case);
        }
    }
    for name in [
        "gradient_descent",
        "heavy_ball",
        "nesterov",
        "lm_resnet",
        "densenet",
    ] {
        assert!(
            built_specs.contains(name),
            "{name} built on no architecture"
        );
    }
    assert!(cases.len() >= 20, "only {} cases: {cases:?}", cases.len());
    let script = r#"
import importlib.util, json, sys
import safetensors.torch, torch
torch.set_num_threads(1)
root, cases = sys.argv[1], sys.argv[2:]
report = {}
for case in cases:
    d = f"{root}/{case}"
    spec = importlib.util.spec_from_file_location(f"m_{case}", f"{d}/model.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.Net()
    weights = safetensors.torch.load_file(f"{d}/weights.safetensors")
    io = safetensors.torch.load_file(f"{d}/io.safetensors")
    assert sorted(model.state_dict()) == sorted(weights), (case, sorted(set(model.state_dict()) ^ set(weights)))
    model.load_state_dict(weights)  # strict
    model.eval()
    with torch.no_grad():
        eval_diff = (model(io["x"]) - io["eval"]).abs().max().item()
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(io["x"]), io["labels"])
    opt.zero_grad()
    loss.backward()
    opt.step()
    model.eval()
    with torch.no_grad():
        after_diff = (model(io["x"]) - io["after"]).abs().max().item()
        scripted = torch.jit.script(model)
        script_diff = (scripted(io["x"]) - model(io["x"])).abs().max().item()
        double = model.double()(io["x"].double())
    params = sum(p.numel() for p in scripted.parameters())
    report[case] = {"eval": eval_diff, "after": after_diff, "script": script_diff,
                    "params": params, "double": str(double.dtype)}
print(json.dumps(report))
"#;
    let args = std::iter::once(tmp.path().as_os_str()).chain(cases.iter().map(|c| c.as_ref()));
    let report: serde_json::Value = run_python(&py, script, args);
    for case in &cases {
        let r = &report[case];
        for key in ["eval", "after", "script"] {
            let d = r[key].as_f64().unwrap();
            assert!(d <= 1e-5, "{case}: {key} differs by {d}: {r}");
        }
        assert!(r["params"].as_i64().unwrap() > 0, "{case}: {r}");
        assert_eq!(r["double"], "torch.float64", "{case}");
    }
    eprintln!("{report:#}");
}

/// optarch's bf16 step rounds as PyTorch's autocast does: on the same ResNet-20, weights and
/// batch (training mode), the relative error of its logits and of its gradient vector against
/// its own fp32 is of the size of autocast's against PyTorch's fp32 (the exported module), and
/// so is that of `bench/bf16_accuracy.py`'s simulated bf16 (rounding in fp32), which stands for
/// real bf16 in the accuracy measurements of docs/BENCHMARKS.md. Measured (1 thread, AVX2):
/// logits 0.38 %, 0.49 %, 0.40 % and gradients 15.8 %, 15.7 %, 16.9 % from fp32 (optarch,
/// autocast, simulated); a path that computed in fp32 would show 0, one that rounded in more
/// places (the loss, the optimiser) more.
#[test]
fn bf16_rounds_like_pytorch_autocast_on_the_same_network() {
    use optarch_core::exec::{Arch, Compute, Network};
    use tch::nn;
    tch::set_num_threads(1);
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let spec = spec::load(root.join("specs/gradient_descent.yaml")).unwrap();
    tch::manual_seed(11);
    let vs = nn::VarStore::new(Device::Cpu);
    let mut net = Network::new(
        &vs.root(),
        &spec,
        &Default::default(),
        &Arch::cifar_resnet(20, 10).unwrap(),
    )
    .unwrap();
    let (mean, std) = ([0.49, 0.48, 0.45], [0.25, 0.24, 0.26]);
    let py_src = net.python("Net", &mean, &std, "A test network.").unwrap();
    std::fs::write(tmp.path().join("model.py"), py_src).unwrap();
    optarch_search::export::write_weights(&vs, &tmp.path().join("weights.safetensors")).unwrap();
    let x = Tensor::rand([32, 3, 32, 32], (Kind::Float, Device::Cpu));
    let labels = Tensor::arange(32, (Kind::Int64, Device::Cpu)).remainder(10);
    Tensor::write_safetensors(
        &[("x", &x), ("labels", &labels)],
        tmp.path().join("io.safetensors"),
    )
    .unwrap();
    let view = |v: [f64; 3]| {
        Tensor::from_slice(&v)
            .to_kind(Kind::Float)
            .view([1, 3, 1, 1])
    };
    let input = (&x - view(mean)) / view(std);
    // Training mode: each pass updates the BatchNorm running statistics, which the next pass
    // does not read (it normalises with the batch's own).
    let mut step = |compute: Compute| {
        net.set_compute(compute);
        for v in vs.trainable_variables() {
            let mut g = v.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
        let y = net.forward_t(&input, true);
        y.cross_entropy_for_logits(&labels).backward();
        let grads: Vec<Tensor> = vs
            .trainable_variables()
            .iter()
            .map(|v| v.grad().detach().flatten(0, -1))
            .collect();
        (y.detach(), Tensor::cat(&grads, 0))
    };
    let rel = |a: &Tensor, b: &Tensor| {
        let d = f64::try_from((a - b).norm()).unwrap();
        d / f64::try_from(b.norm()).unwrap()
    };
    let (y32, g32) = step(Compute::FP32);
    let (y16, g16) = step("bf16+cl".parse().unwrap());
    let ours = (rel(&y16, &y32), rel(&g16, &g32));
    let script = r#"
import importlib.util, json, sys
import safetensors.torch, torch
torch.set_num_threads(1)
d, bench = sys.argv[1], sys.argv[2]
def load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod
model_mod, b = load("model", f"{d}/model.py"), load("bf16_accuracy", bench)
model = model_mod.Net()
model.load_state_dict(safetensors.torch.load_file(f"{d}/weights.safetensors"))
io = safetensors.torch.load_file(f"{d}/io.safetensors")
e = b.errors(model, io["x"], io["labels"], ["autocast", "sim-head32"])
out = {name: [r["logits"], r["grad"]] for name, r in e.items()}
print(json.dumps(out))
"#;
    let bench = root.join("bench/bf16_accuracy.py");
    let report: serde_json::Value = run_python(&py, script, [tmp.path(), bench.as_path()]);
    let pair = |k: &str| {
        let v = &report[k];
        (v[0].as_f64().unwrap(), v[1].as_f64().unwrap())
    };
    let (autocast, sim) = (pair("autocast"), pair("sim-head32"));
    eprintln!(
        "relative error against fp32 (logits, gradients): optarch bf16+cl {ours:.4?}, \
         PyTorch autocast {autocast:.4?}, simulated bf16 {sim:.4?}"
    );
    let within = |a: f64, b: f64| a <= 2.0 * b && b <= 2.0 * a;
    assert!(
        autocast.0 > 1e-4 && autocast.1 > 1e-3,
        "autocast did not round: {autocast:?}"
    );
    for (name, e) in [("optarch bf16+cl", ours), ("simulated bf16", sim)] {
        assert!(
            within(e.0, autocast.0) && within(e.1, autocast.1),
            "{name}'s error {e:?} is not of the size of autocast's {autocast:?}"
        );
    }
}

/// `bench/bf16_gap.py`, issue 13's accuracy measurement in one command, end to end on generated
/// CIFAR-10 files: it trains optarch (this build) and PyTorch in fp32 and bf16 over two seeds,
/// passes each arm its precision and layout, summarises each bf16 arm against its fp32 seed by
/// seed from the runs' own results, and run again, it finds everything done and runs nothing.
#[test]
fn bf16_gap_measures_each_bf16_arm_against_its_fp32() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().unwrap();
    synthetic::write_cifar10(&tmp.path().join("d"), 40, 5).unwrap();
    let out = tmp.path().join("out");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let gap = |extra: &[&str]| {
        Command::new(&py)
            .arg(root.join("bench/bf16_gap.py"))
            .arg("--data")
            .arg(tmp.path().join("d"))
            .arg("--out")
            .arg(&out)
            .args(["--optarch", env!("CARGO_BIN_EXE_optarch")])
            .args(["--seeds", "2", "--jobs", "2", "--epochs", "1"])
            .args(["--train-subset", "64", "--test-subset", "20"])
            .args(["--arms", "optarch-bf16,torch-autocast"])
            .args(extra)
            .output()
            .unwrap()
    };
    let o = gap(&["--force"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(stderr.contains("8 runs to do (0 already done"), "{stderr}");
    let read = |p: std::path::PathBuf| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    };
    // Each run's own result, and that it ran in the arm's precision and layout.
    let acc = |arm: &str, seed: u64| -> f64 {
        let base = out.join(format!("{arm}-s{seed}"));
        if arm.starts_with("optarch") {
            let s = read(base.join("summary.json"));
            let compute = if arm.ends_with("bf16") {
                "bf16, channels_last"
            } else {
                "fp32"
            };
            assert_eq!(s["compute"], compute, "{arm}");
            100.0 * s["final_test_acc"].as_f64().unwrap()
        } else {
            let r = read(base.with_extension("json"));
            let bf16 = arm.ends_with("autocast");
            assert_eq!(r["precision"], if bf16 { "autocast" } else { "fp32" });
            assert_eq!(r["channels_last"], bf16);
            assert_eq!(r["test_images"], 20);
            100.0 * r["test_accuracy"].as_f64().unwrap()
        }
    };
    let summary = read(out.join("summary.json"));
    let comparisons = summary["comparisons"].as_array().unwrap();
    let pairs: Vec<_> = comparisons
        .iter()
        .map(|c| (c["arm"].as_str().unwrap(), c["reference"].as_str().unwrap()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("optarch-bf16", "optarch-fp32"),
            ("torch-autocast", "torch-fp32")
        ]
    );
    for c in comparisons {
        let (arm, reference) = (c["arm"].as_str().unwrap(), c["reference"].as_str().unwrap());
        let d = &c["acc_diff"];
        let diffs: Vec<f64> = (0..2).map(|s| acc(arm, s) - acc(reference, s)).collect();
        for (got, want) in d["diffs"].as_array().unwrap().iter().zip(&diffs) {
            assert!((got.as_f64().unwrap() - want).abs() < 1e-9, "{c}");
        }
        let mean = (diffs[0] + diffs[1]) / 2.0;
        let sd = (diffs[0] - diffs[1]).abs() / 2f64.sqrt();
        let half = 12.706 * sd / 2f64.sqrt();
        let ci = d["ci95"].as_array().unwrap();
        assert!((d["mean"].as_f64().unwrap() - mean).abs() < 1e-9, "{c}");
        assert!(
            (ci[0].as_f64().unwrap() - (mean - half)).abs() < 1e-6,
            "{c}"
        );
        assert!(
            (ci[1].as_f64().unwrap() - (mean + half)).abs() < 1e-6,
            "{c}"
        );
    }
    assert_eq!(summary["missing"].as_array().unwrap().len(), 0);
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(md.contains("**optarch-bf16 against optarch-fp32**"), "{md}");
    // Again: nothing left to run; the summary stands.
    let again = gap(&["--force"]);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(again.status.success(), "{stderr}");
    assert!(stderr.contains("0 runs to do (8 already done"), "{stderr}");
    assert_eq!(read(out.join("summary.json")), summary);

    // The statistics, on results written by hand: seeds 0-2 paired, seed 3 without its bf16.
    let hand = tmp.path().join("hand");
    std::fs::create_dir(&hand).unwrap();
    let runs = [(60.0, 59.0), (61.5, 61.0), (59.0, 57.5)];
    for (s, (fp32, bf16)) in runs.iter().enumerate() {
        for (arm, a) in [("torch-fp32", fp32), ("torch-autocast", bf16)] {
            let line = format!(
                r#"{{"test_accuracy": {}, "final_train_loss": 1.0}}"#,
                a / 100.0
            );
            std::fs::write(hand.join(format!("{arm}-s{s}.json")), line).unwrap();
        }
    }
    let line = r#"{"test_accuracy": 0.6, "final_train_loss": 1.0}"#;
    std::fs::write(hand.join("torch-fp32-s3.json"), line).unwrap();
    let o = Command::new(&py)
        .arg(root.join("bench/bf16_gap.py"))
        .arg("--out")
        .arg(&hand)
        .args(["--summarize", "--seeds", "4", "--arms", "torch-autocast"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s = read(hand.join("summary.json"));
    let c = &s["comparisons"][0];
    assert_eq!(c["seeds"], serde_json::json!([0, 1, 2]));
    // differences -1.0, -0.5, -1.5: mean -1, sd 0.5, half-width t(2) 4.303 * 0.5 / sqrt(3)
    let d = &c["acc_diff"];
    let close = |v: &serde_json::Value, want: f64| (v.as_f64().unwrap() - want).abs() < 1e-3;
    assert!(close(&d["mean"], -1.0) && close(&d["sd"], 0.5), "{d}");
    assert!(
        close(&d["ci95"][0], -2.242) && close(&d["ci95"][1], 0.242),
        "{d}"
    );
    assert_eq!(s["missing"], serde_json::json!(["torch-autocast seed 3"]));
}
