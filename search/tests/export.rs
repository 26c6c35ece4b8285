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
    let exp = tmp.path().join("export");
    let out = Command::new(bin)
        .args(["export", "--run"])
        .arg(&run)
        .arg("--out")
        .arg(&exp)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in [
        "spec.yaml",
        "weights.safetensors",
        "model.rs",
        "model.pt",
        "export.json",
    ] {
        assert!(exp.join(f).is_file(), "{f} missing");
    }
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
         m = torch.jit.load({model:?})\n\
         x = torch.frombuffer(bytearray(open({xin:?}, 'rb').read()), dtype=torch.float32).reshape(3, 3, 32, 32)\n\
         with torch.no_grad():\n    y = m(x)\n\
         print(json.dumps(y.flatten().tolist()))\n",
        model = exp.join("model.pt").display().to_string(),
        xin = xin.display().to_string(),
    );
    let out = Command::new(py)
        .args(["-c", &script])
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<f32> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got.len(), want.len());
    assert_eq!(got.len(), 30);
    let diff = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(
        diff <= 1e-5,
        "TorchScript in Python differs from optarch by {diff}"
    );
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
