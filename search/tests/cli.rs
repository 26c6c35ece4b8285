//! End-to-end tests of the `optarch` command on the shipped specs and the invalid fixtures.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn optarch(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_optarch"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("cannot run optarch")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn shipped() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn check_accepts_every_shipped_spec() {
    let out = optarch(&["check", "specs", "--steps", "12"]);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let stdout = text(&out.stdout);
    for p in shipped() {
        let name = p.file_stem().unwrap().to_str().unwrap();
        assert!(stdout.contains(name), "{name} missing from:\n{stdout}");
    }
    assert!(
        stdout.contains(&format!("{} valid, 0 invalid", shipped().len())),
        "{stdout}"
    );
    let out = optarch(&["check", "specs/heavy_ball.yaml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[0]["blocks"], 8);
    assert_eq!(v[0]["recurrence"][0], "z[-1] = z[0]");
}

#[test]
fn check_rejects_every_invalid_fixture_with_a_location() {
    let dir = root().join("core/tests/fixtures/invalid");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let first = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .to_string();
        let mut parts = first.trim_start_matches("# expect: ").splitn(3, ' ');
        let (code, at) = (parts.next().unwrap(), parts.next().unwrap());
        let p = path.to_str().unwrap();
        let out = optarch(&["check", p]);
        assert_eq!(out.status.code(), Some(1), "{p}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        let expect = if at == "-" {
            format!("{p}: error[{code}]")
        } else {
            format!("{p}:{at}: error[{code}]")
        };
        assert!(stderr.contains(&expect), "{expect} not in:\n{stderr}");
        assert!(stderr.contains("hint:"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let out = optarch(&["check", p, "--json"]);
        assert_eq!(out.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v[0]["ok"], false);
        assert_eq!(v[0]["error"]["kind"], code);
    }
}

#[test]
fn graph_draws_svg_png_and_dot_with_analyses() {
    let dir = tempfile::tempdir().unwrap();
    for (fmt, magic) in [
        ("svg", &b"<svg"[..]),
        ("png", &b"\x89PNG"[..]),
        ("dot", &b"digraph"[..]),
    ] {
        let out_file = dir.path().join(format!("hb.{fmt}"));
        let out = optarch(&[
            "graph",
            "specs/heavy_ball.yaml",
            "--steps",
            "6",
            "--format",
            fmt,
            "-o",
            out_file.to_str().unwrap(),
            "--set",
            "beta=0.9",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let bytes = std::fs::read(&out_file).unwrap();
        let start = bytes.windows(magic.len()).position(|w| w == magic);
        assert!(
            start.is_some_and(|s| s < 200),
            "{fmt} output does not look like {fmt}"
        );
        let stdout = text(&out.stdout);
        assert!(stdout.contains("peak live maps"), "{stdout}");
        assert!(
            stdout.contains("B2 = [1, 1.9, 1,"),
            "heavy-ball closed form missing:\n{stdout}"
        );
    }
    // JSON analyses: heavy ball keeps three maps alive at most, like a ResNet plus one.
    let out = optarch(&[
        "graph",
        "specs/heavy_ball.yaml",
        "--steps",
        "6",
        "--json",
        "-o",
        dir.path().join("x.svg").to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blocks"], 6);
    assert!(v["memory"]["peak"].as_u64().unwrap() <= 4);
    assert_eq!(v["skip_histogram"]["2"], 5, "{}", v["skip_histogram"]);
    assert_eq!(v["picture"]["format"], "svg");
    assert!(dir.path().join("x.svg").is_file());
    // `--json -o -`: standard output is one JSON document, the picture inside it (SVG as text,
    // PNG as base64); nothing is written to a file.
    for (fmt, encoding, magic) in [("svg", "utf-8", "<svg"), ("png", "base64", "iVBORw0KGgo")] {
        let out = optarch(&[
            "graph",
            "specs/heavy_ball.yaml",
            "--steps",
            "6",
            "--json",
            "-f",
            fmt,
            "-o",
            "-",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{fmt}: stdout is no JSON document: {e}"));
        assert_eq!(v["blocks"], 6);
        let p = &v["picture"];
        assert_eq!(
            (p["path"].as_str(), p["encoding"].as_str()),
            (Some("-"), Some(encoding))
        );
        let data = p["data"].as_str().unwrap();
        assert!(data.contains(magic), "{fmt}: {:.80}", data);
        assert!(data.len() >= p["bytes"].as_u64().unwrap() as usize);
    }
    // DOT to standard output.
    let out = optarch(&[
        "graph",
        "specs/densenet.yaml",
        "-k",
        "3",
        "-f",
        "dot",
        "-o",
        "-",
    ]);
    assert!(out.status.success());
    assert!(text(&out.stdout).starts_with("digraph"));
}

#[test]
fn rate_matches_closed_forms_end_to_end() {
    let out = optarch(&[
        "rate",
        "specs/gradient_descent.yaml",
        "--kappa",
        "10",
        "--steps",
        "5",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = v["rate"]["contraction"].as_f64().unwrap();
    assert!((c - 0.9f64.powi(5)).abs() < 1e-12, "{c}");
    let (h, beta) = (4.0 / 1.1f64.powi(2), (9.0f64 / 11.0).powi(2));
    let out = optarch(&[
        "rate",
        "specs/heavy_ball.yaml",
        "--kappa",
        "100",
        "--grid",
        "201",
        "--json",
        "--set",
        &format!("h={h}"),
        "--set",
        &format!("beta={beta}"),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let a = v["rate"]["asymptotic"].as_f64().unwrap();
    assert!((a - 9.0 / 11.0).abs() < 1e-6, "{a}");
    // Heavy ball's beta is a search range: without --set it is swept.
    let out = optarch(&["rate", "specs/heavy_ball.yaml", "--grid", "51"]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("over the search ranges"));
    // Several specs compare, with a chart of their contraction curves.
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("rates.png");
    let out = optarch(&[
        "rate",
        "specs/gradient_descent.yaml",
        "specs/nesterov.yaml",
        "--steps",
        "30",
        "--grid",
        "101",
        "--json",
        "--plot",
        plot.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let (gd, nag) = (&v[0]["rate"], &v[1]["rate"]);
    assert_eq!(gd["curve"].as_array().unwrap().len(), 30);
    assert!(nag["contraction"].as_f64().unwrap() < gd["contraction"].as_f64().unwrap());
    assert_eq!(&std::fs::read(&plot).unwrap()[..4], b"\x89PNG");
    // A divergent method is said to diverge, by rate (text and JSON) and by check.
    let div = "core/tests/fixtures/methods/divergent_heavy_ball.yaml";
    let out = optarch(&["rate", div, "--grid", "51"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("DIVERGES on quadratics: its asymptotic rate 1.46"),
        "{}",
        text(&out.stdout)
    );
    let out = optarch(&["rate", div, "--steps", "3000", "--grid", "51", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["rate"]["contraction"].is_null(), "{}", v["rate"]);
    assert!(v["rate"]["diverges"]
        .as_str()
        .unwrap()
        .contains("overflows"));
    let out = optarch(&["check", div]);
    assert!(out.status.success());
    assert!(text(&out.stdout).contains("warning: divergent_heavy_ball diverges on quadratics"));
    let out = optarch(&["check", "specs/heavy_ball.yaml", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v[0].get("diverges").is_none(), "{v}");
    // DenseNet has no scalar recurrence: a clear error, status 1.
    let out = optarch(&["rate", "specs/densenet.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("concatenation"));
}

#[test]
fn usage_errors_and_unknown_overrides_are_reported() {
    let out = optarch(&["graph"]);
    assert_eq!(out.status.code(), Some(2));
    // `--set` naming no parameter is bad usage (2), with a suggestion.
    let out = optarch(&["rate", "specs/heavy_ball.yaml", "--set", "bta=0.3"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("did you mean `beta`"),
        "{}",
        text(&out.stderr)
    );
    // A file that is not there is a file problem (3), not an invalid spec.
    let out = optarch(&["check", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("error[io]"));
    let out = optarch(&["--help"]);
    assert!(out.status.success());
    for cmd in ["check", "graph", "rate", "env"] {
        assert!(text(&out.stdout).contains(cmd));
        let out = optarch(&[cmd, "--help"]);
        assert!(out.status.success(), "{cmd} --help");
    }
}

/// `optarch env --json` with the allocator variables given and every other `MALLOC_*`,
/// `GLIBC_TUNABLES` and `LD_PRELOAD` removed.
fn env_with_malloc(vars: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_optarch"));
    cmd.args(["env", "--json"]).current_dir(root());
    for (k, _) in std::env::vars() {
        if k.starts_with("MALLOC_")
            || ["GLIBC_TUNABLES", "LD_PRELOAD", "OPTARCH_MALLOC"].contains(&k.as_str())
        {
            cmd.env_remove(k);
        }
    }
    cmd.envs(vars.iter().copied());
    cmd.output().expect("cannot run optarch")
}

#[test]
fn the_allocator_keeps_freed_memory_unless_told_otherwise() {
    let state = |vars: &[(&str, &str)]| {
        let out = env_with_malloc(vars);
        assert!(out.status.success(), "{vars:?}: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["malloc"].clone()
    };
    assert_eq!(state(&[])["state"], "keep");
    assert_eq!(state(&[("OPTARCH_MALLOC", "glibc")])["state"], "defaults");
    let user = state(&[("MALLOC_TRIM_THRESHOLD_", "0")]);
    assert_eq!(user["state"], "user", "{user}");
    assert_eq!(user["detail"], "MALLOC_TRIM_THRESHOLD_", "{user}");
    // Other malloc variables are not the same settings.
    assert_eq!(state(&[("MALLOC_ARENA_MAX", "2")])["state"], "keep");
    // A misspelt choice is bad usage that says what to write.
    let out = env_with_malloc(&[("OPTARCH_MALLOC", "kepe")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("OPTARCH_MALLOC=glibc"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn env_reports_and_cuda_fails_loudly_without_a_gpu() {
    let out = optarch(&["env", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("selected_device").is_some(), "{v}");
    let cuda = v.to_string().contains("\"cuda_available\":true");
    let out = optarch(&["--device", "cuda", "env"]);
    if cuda {
        assert!(out.status.success());
    } else {
        assert_eq!(
            out.status.code(),
            Some(3),
            "--device cuda must fail without CUDA"
        );
        assert!(
            text(&out.stderr).to_lowercase().contains("cuda"),
            "{}",
            text(&out.stderr)
        );
    }
    // An unrecognised device is bad usage (exit 2), caught before anything runs.
    let out = optarch(&["--device", "tpu", "check", "specs/gradient_descent.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("`cuda:N`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn train_runs_resumes_and_reports_divergence() {
    let dir = tempfile::tempdir().unwrap();
    let data = optarch_search::data::synthetic::write_cifar10(dir.path(), 40, 3).unwrap();
    let run = dir.path().join("run");
    let (data, run_s) = (data.to_str().unwrap(), run.to_str().unwrap());
    let common = [
        "--threads",
        "1",
        "train",
        "--spec",
        "specs/heavy_ball.yaml",
        "--depth",
        "8",
        "--epochs",
        "1",
    ];
    let small = [
        "--batch-size",
        "16",
        "--val",
        "20",
        "--data",
        data,
        "--no-download",
        "--json",
    ];
    let out = optarch(&[&common[..], &small[..], &["-o", run_s]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "done");
    assert_eq!(v["parameters"], 75_290);
    for f in [
        "config.json",
        "metrics.jsonl",
        "state.json",
        "last.safetensors",
        "best.safetensors",
        "topology.svg",
    ] {
        assert!(run.join(f).is_file(), "{f} missing");
    }
    // The same directory again is refused; --resume on a finished run just reports it.
    let out = optarch(&[&common[..], &small[..], &["-o", run_s]].concat());
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--resume"),
        "{}",
        text(&out.stderr)
    );
    let out = optarch(&["train", "--resume", run_s, "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // --resume refuses what it would ignore, naming it; the recorded thread count is fine.
    let out = optarch(&["train", "--resume", run_s, "--epochs", "3", "--lr", "0.5"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(err.contains("--epochs, --lr"), "{err}");
    let out = optarch(&["--threads", "2", "train", "--resume", run_s]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("1 intra-op threads"));
    let out = optarch(&["--threads", "1", "train", "--resume", run_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Out-of-range flags are all named at once, before anything loads (exit 2).
    let out = optarch(&[
        "train",
        "--spec",
        "specs/heavy_ball.yaml",
        "--label-smoothing",
        "2",
        "--lr",
        "nan",
        "--widths",
        "4,8",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    for want in [
        "command line: --label-smoothing is 2; it must be in [0, 1)",
        "--lr is NaN; it must be a finite number, positive",
        "--widths is [4, 8]; cifar-resnet needs 3 widths",
    ] {
        assert!(err.contains(want), "{want}:\n{err}");
    }
    assert!(!err.contains("panicked"), "{err}");
    // A directory where no run started is named with what to do.
    let none = dir.path().join("none");
    std::fs::create_dir(&none).unwrap();
    let out = optarch(&["train", "--resume", none.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("without --resume"));
    // A missing directory, a search directory and a damaged state are each named.
    let out = optarch(&[
        "train",
        "--resume",
        dir.path().join("gone").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out.stderr).contains("no such run directory"));
    let out = optarch(&["search", "--resume", run_s]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains(&format!("optarch train --resume {run_s}")),
        "{}",
        text(&out.stderr)
    );
    let damaged = dir.path().join("damaged");
    std::fs::create_dir(&damaged).unwrap();
    for f in ["config.json", "state.json"] {
        std::fs::copy(run.join(f), damaged.join(f)).unwrap();
    }
    let state = std::fs::read_to_string(damaged.join("state.json")).unwrap();
    let mut state: serde_json::Value = serde_json::from_str(&state).unwrap();
    state["epochs_done"] = 99.into();
    std::fs::write(damaged.join("state.json"), state.to_string()).unwrap();
    let out = optarch(&["train", "--resume", damaged.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stderr).contains("99 epochs done of a run of 1"),
        "{}",
        text(&out.stderr)
    );
    // Absurd sizes are refused before anything is built.
    let out = optarch(&[
        "train",
        "--spec",
        "specs/heavy_ball.yaml",
        "--epochs",
        "1000000",
        "--depth",
        "200000",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains("--epochs is 1000000; it must be from 1 to 100000"),
        "{err}"
    );
    assert!(err.contains("more than 1000 blocks in a stage"), "{err}");
    let out = optarch(&["search", "specs/search/quick.yaml", "--retry-failed"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--resume DIR"));
    // A huge learning rate diverges: status `diverged`, exit status 1.
    let bad = dir.path().join("bad");
    let out = optarch(
        &[
            &common[..],
            &small[..],
            &[
                "-o",
                bad.to_str().unwrap(),
                "--lr",
                "1e12",
                "--schedule",
                "cosine",
            ],
        ]
        .concat(),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("diverged"));
    // Bad data locations say where they looked.
    let out = optarch(&[
        "train",
        "--spec",
        "specs/heavy_ball.yaml",
        "--data",
        "/nonexistent",
        "--no-download",
        "-o",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn search_check_builds_the_pool_and_makes_nothing() {
    let out = optarch(&["search", "specs/search/quick.yaml", "--check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("specs/search/quick.yaml: valid; search `quick`: 14 candidates"),
        "{stdout}"
    );
    assert!(stdout.contains("  heavy_ball[beta=0.6]"), "{stdout}");
}

/// The science campaign's configurations (docs/SCIENCE.md): all build their pools with every
/// method of the protocol at matched parameter counts, and the GPU one dry-runs on its own and
/// on Slurm, making nothing.
#[test]
fn the_science_configs_check_and_the_gpu_one_dry_runs() {
    for (cfg, rungs, base, densenet) in [
        (
            "specs/search/science-cpu.yaml",
            "rungs [1, 3, 9] epochs",
            "269,722",
            "272,980 parameters    112.9 M multiply-adds  +1.2 %",
        ),
        (
            "specs/search/science-gpu.yaml",
            "rungs [5, 20, 80, 164] epochs",
            "269,722",
            "272,980 parameters    112.9 M multiply-adds  +1.2 %",
        ),
        (
            "specs/search/science-gpu-56.yaml",
            "rungs [5, 20, 80, 164] epochs",
            "853,018",
            "857,258 parameters    332.5 M multiply-adds  +0.5 %",
        ),
        (
            "specs/search/science-gpu-110.yaml",
            "rungs [5, 20, 80, 164] epochs",
            "1,727,962",
            "1,709,560 parameters    647.3 M multiply-adds  -1.1 %",
        ),
    ] {
        let out = optarch(&["search", cfg, "--check"]);
        assert!(out.status.success(), "{cfg}: {}", text(&out.stderr));
        let stdout = text(&out.stdout);
        assert!(stdout.contains(&format!("{cfg}: valid")), "{stdout}");
        assert!(stdout.contains(rungs), "{stdout}");
        // Every candidate is built and within ± 5 % of ResNet's parameters (DenseNet-BC by
        // its own width), or --check warns.
        assert!(!stdout.contains("warning:"), "{cfg}\n{stdout}");
        let base_line = stdout
            .lines()
            .find(|l| l.starts_with("  gradient_descent "))
            .unwrap();
        assert!(
            base_line.contains(&format!("{base} parameters"))
                && base_line.ends_with("(the base of the comparison)"),
            "{base_line}"
        );
        // DenseNet-BC by its own width, as the configuration's comment says.
        assert!(
            stdout.contains("\n  densenet  ") && stdout.contains(densenet),
            "{cfg}: {densenet}\n{stdout}"
        );
        for method in [
            "gradient_descent",
            "heavy_ball[beta=0.6]",
            "nesterov",
            "nesterov_theta",
            "momentum_resnet",
            "lm_resnet",
            "densenet",
            "triple_momentum[rho=0.5]",
            "qhm[beta=0.9,nu=0.7]",
            "adams_bashforth3",
            "gen_a1p2_m0p5_0p3_b1p25_m0p25_0_h1",
        ] {
            assert!(
                stdout.contains(&format!("\n  {method} ")),
                "{cfg}: {method}\n{stdout}"
            );
        }
    }
    // The same search at ResNet-56's depth with DenseNet-BC left at ResNet-20's size is no
    // comparison at equal cost, and --check says so.
    let tmp = tempfile::tempdir().unwrap();
    let specs = root().join("specs");
    let unmatched = std::fs::read_to_string(root().join("specs/search/science-gpu.yaml"))
        .unwrap()
        .replace("    depth: 20\n", "    depth: 56\n")
        .replace("../", &format!("{}/", specs.display()));
    let cfg = tmp.path().join("unmatched.yaml");
    std::fs::write(&cfg, unmatched).unwrap();
    let out = optarch(&["search", cfg.to_str().unwrap(), "--check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "warning: densenet has 272980 parameters, -68.0 % of gradient_descent's 853018: \
             outside the ± 5 %"
        ),
        "{stdout}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("science");
    let dir_s = dir.to_str().unwrap();
    let gpu = "specs/search/science-gpu.yaml";
    let out = optarch(&["search", gpu, "--dry-run", "--out", dir_s]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("32 candidates"),
        "{}",
        text(&out.stdout)
    );
    let slurm = [
        "search",
        gpu,
        "--dry-run",
        "--out",
        dir_s,
        "--executor",
        "slurm",
        "--partition",
        "gpu",
        "--gres",
        "gpu:1",
    ];
    let out = optarch(&slurm);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("#SBATCH --gres=gpu:1"), "{stdout}");
    assert!(stdout.contains("#SBATCH --partition=gpu"), "{stdout}");
    assert!(!dir.exists(), "a dry run makes nothing");
}

/// A spec is read no further than 1 MiB: `/dev/zero` (endless) and a large file end at once
/// with a located `too-large` error and the status of an invalid spec, in every command that
/// reads a spec.
#[test]
fn endless_and_huge_spec_files_fail_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, "# padding\n".repeat(200_000)).unwrap();
    let big = big.to_str().unwrap();
    let svg = dir.path().join("g.svg");
    let svg = svg.to_str().unwrap();
    for (file, args) in [
        ("/dev/zero", vec!["check", "/dev/zero"]),
        ("/dev/zero", vec!["check", "/dev/zero", "--json"]),
        ("/dev/zero", vec!["graph", "/dev/zero", "-o", svg]),
        ("/dev/zero", vec!["rate", "/dev/zero"]),
        (big, vec!["check", big]),
    ] {
        if !std::path::Path::new(file).exists() {
            continue;
        }
        let t = std::time::Instant::now();
        let out = optarch(&args);
        let took = t.elapsed();
        let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(took.as_secs() < 20, "{args:?} took {took:?}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        if args.contains(&"--json") {
            let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(v[0]["error"]["kind"], "too-large", "{stdout}");
        } else {
            let expect = format!("{file}: error[too-large]: the spec is larger than 1 MiB");
            assert!(stderr.contains(&expect), "{args:?}: {stderr}");
        }
    }
    assert!(!std::path::Path::new(svg).exists());
}

/// The README, `optarch train --help` and the binary agree on where data is looked for:
/// `--data`, else `$OPTARCH_DATA`, else `~/.cache/optarch/data` (`$XDG_CACHE_HOME` first).
#[test]
fn readme_help_and_binary_agree_on_where_data_is_looked_for() {
    let words = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let readme = words(&std::fs::read_to_string(root().join("README.md")).unwrap());
    assert!(
        readme.contains(
            "Data comes from `--data`, else `$OPTARCH_DATA`, else `~/.cache/optarch/data` \
             (`$XDG_CACHE_HOME/optarch/data` when that is set)"
        ),
        "the README's sentence on data changed: keep it and this test in step with the binary"
    );
    let help = words(&text(&optarch(&["train", "--help"]).stdout));
    assert!(
        help.contains("default $OPTARCH_DATA, else a download into ~/.cache/optarch/data"),
        "{help}"
    );
    // The binary, without --data and with downloads off: the error names the place it looked.
    let tmp = tempfile::tempdir().unwrap();
    let run = |env: &[(&str, &Path)]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_optarch"));
        c.args([
            "train",
            "--spec",
            "specs/gradient_descent.yaml",
            "--no-download",
            "--epochs",
            "1",
            "--out",
        ])
        .arg(tmp.path().join("run"))
        .current_dir(root())
        .env_remove("OPTARCH_DATA")
        .env_remove("XDG_CACHE_HOME")
        .env("HOME", tmp.path());
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
        text(&out.stderr)
    };
    let home_cache = tmp.path().join(".cache/optarch/data");
    assert!(
        run(&[]).contains(&home_cache.display().to_string()),
        "~/.cache/optarch/data"
    );
    let xdg = tmp.path().join("xdg");
    assert!(
        run(&[("XDG_CACHE_HOME", &xdg)]).contains(&xdg.join("optarch/data").display().to_string())
    );
    let env_dir = tmp.path().join("from-env");
    assert!(run(&[("OPTARCH_DATA", &env_dir)]).contains(&env_dir.display().to_string()));
}
