//! `optarch new NAME`: a crate of your own that derives a network from a spec, ready for
//! `cargo run` with no environment variables (docs/DERIVE.md).

use crate::Failure;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub struct NewArgs {
    /// The crate's name (a Rust package name: letters, digits, `_`, `-`).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// Where to make it (default ./NAME).
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,
    /// The optarch source checkout its dependencies point to (default: the one this optarch
    /// was built from).
    #[arg(long, value_name = "DIR", conflicts_with = "git")]
    pub optarch_src: Option<PathBuf>,
    /// Depend on optarch through git instead of a local checkout (e.g. the project's URL).
    #[arg(long, value_name = "URL")]
    pub git: Option<String>,
}

/// The checkout this binary was built from.
fn built_from() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The Python environment that holds the libtorch this binary was linked with (the venv
/// `scripts/env.sh` made): the folder above the libtorch lib directory with a `pyvenv.cfg`.
fn venv() -> Option<PathBuf> {
    let lib = PathBuf::from(option_env!("OPTARCH_LIBTORCH_LIB")?);
    lib.ancestors()
        .find(|d| d.join("pyvenv.cfg").is_file())
        .map(Path::to_path_buf)
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.starts_with(|c: char| c.is_ascii_alphabetic())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// TOML's basic string.
fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

pub fn run(a: NewArgs) -> Result<(), Failure> {
    if !valid_name(&a.name) {
        eprintln!(
            "error: `{}` is not a crate name: start with a letter, then letters, digits, `_` or \
             `-` (at most 64)",
            a.name
        );
        return Err(Failure::Exit(crate::EXIT_USAGE));
    }
    let dir = a.path.clone().unwrap_or_else(|| PathBuf::from(&a.name));
    if dir.exists() && std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        eprintln!(
            "error: {} exists and is not empty: pick another --path",
            dir.display()
        );
        return Err(Failure::Exit(crate::EXIT_USAGE));
    }
    // The checkout's lock file, so the crate builds with the versions optarch was tested with.
    let mut lock: Option<String> = None;
    let deps = match (&a.git, &a.optarch_src) {
        (Some(url), _) => format!(
            "optarch-core = {{ git = {u}, default-features = false, features = [\"torch\"] }}\n\
             optarch-macros = {{ git = {u} }}\n",
            u = toml_str(url)
        ),
        (None, src) => {
            let src = src.clone().unwrap_or_else(built_from);
            let src = std::fs::canonicalize(&src).unwrap_or(src);
            for c in ["core", "macros"] {
                if !src.join(c).join("Cargo.toml").is_file() {
                    eprintln!(
                        "error: {} is not an optarch checkout (no {c}/Cargo.toml): give one \
                         with --optarch-src DIR, or --git URL",
                        src.display()
                    );
                    return Err(Failure::Exit(crate::EXIT_USAGE));
                }
            }
            lock = std::fs::read_to_string(src.join("Cargo.lock")).ok();
            format!(
                "optarch-core = {{ path = {}, default-features = false, features = [\"torch\"] }}\n\
                 optarch-macros = {{ path = {} }}\n",
                toml_str(&src.join("core").display().to_string()),
                toml_str(&src.join("macros").display().to_string())
            )
        }
    };
    let Some(venv) = venv() else {
        eprintln!(
            "error: this optarch was not built against a Python environment's libtorch (see \
             docs/SETUP.md); build it with scripts/env.sh sourced"
        );
        return Err(Failure::Exit(crate::EXIT_FAILURE));
    };
    let spec = built_from().join("specs/heavy_ball.yaml");
    let spec_text = std::fs::read_to_string(&spec).unwrap_or_else(|_| HEAVY_BALL.to_string());
    let path_now = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let mut files: Vec<(&str, String)> = vec![
        (
            "Cargo.toml",
            format!(
                "[package]\nname = {name}\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = \
                 false\n\n[dependencies]\n{deps}# The libtorch bindings optarch uses (torch-sys \
                 directly, so that build.rs\n# sees where libtorch is); tch is \
                 `optarch_core::tch`.\ntorch-sys = \"=0.24.0\"\n\n# libtorch's bindings are \
                 slow unoptimised; your own code stays quick to build. Dependencies without \
                 debug\n# info: binaries of ~30 MB instead of ~275 MB (and the same settings as \
                 optarch's\n# own build, whose compiled tch a shared target directory reuses).\n\
                 [profile.dev.package.\"*\"]\nopt-level = 2\ndebug = false\n\n# torch-sys's C++ \
                 wrappers only forward calls into libtorch: quicker to build unoptimised.\n\
                 [profile.dev.package.torch-sys]\nopt-level = 0\n",
                name = toml_str(&a.name),
            ),
        ),
        ("build.rs", BUILD_RS.to_string()),
        (
            ".cargo/config.toml",
            format!(
                "# Where libtorch comes from: the Python environment optarch was built with\n\
                 # ({venv}), found by torch-sys through that environment's python.\n[env]\n\
                 LIBTORCH_USE_PYTORCH = \"1\"\nVIRTUAL_ENV = {{ value = {v}, force = true }}\n\
                 PATH = {{ value = {p}, force = true }}\n",
                venv = venv.display(),
                v = toml_str(&venv.display().to_string()),
                p = toml_str(&format!("{}:{path_now}", venv.join("bin").display())),
            ),
        ),
        ("specs/heavy_ball.yaml", spec_text),
        ("src/main.rs", MAIN_RS.to_string()),
        (".gitignore", "/target\n".to_string()),
    ];
    if let Some(l) = lock {
        files.push(("Cargo.lock", l));
    }
    for (rel, text) in &files {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| anyhow::anyhow!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?;
    }
    out!(
        "made {} in {}: a heavy-ball network derived from specs/heavy_ball.yaml, trained for a \
         few steps\nnext: cd {} && cargo run",
        a.name,
        dir.display(),
        dir.display()
    );
    Ok(())
}

/// The spec the crate starts from when the source checkout is not at hand.
const HEAVY_BALL: &str = include_str!("../../../../specs/heavy_ball.yaml");

const BUILD_RS: &str = r#"//! Links libtorch so that programs run with no LD_LIBRARY_PATH (an rpath to libtorch's lib
//! directory) and keep CUDA (libtorch_cuda.so stays NEEDED: nothing references it directly,
//! so the linker's default --as-needed would drop it and CUDA would silently vanish).
//! torch-sys tells crates that depend on it directly where libtorch is, as DEP_TCH_LIBTORCH_LIB.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") else {
        return;
    };
    let lib = std::path::PathBuf::from(lib);
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if os == "linux" || os == "macos" {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    if os == "linux" && lib.join("libtorch_cuda.so").is_file() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
"#;

const MAIN_RS: &str = r#"//! A heavy-ball network whose forward pass `#[derive(Unroll)]` generates from
//! specs/heavy_ball.yaml (z[k+1] = z[k] + B_k(z[k]) + β (z[k] − z[k−1])), with blocks of your
//! own, trained for a few steps on random data in the fastest precision the device has.

use optarch_core::exec::{Compute, Conv};
use optarch_core::tch::nn::{self, ModuleT, OptimizerConfig};
use optarch_core::tch::{self, Device, Kind, Tensor};
use optarch_macros::Unroll;

/// Your block: conv3×3-BN-ReLU-conv3×3-BN. `Conv` keeps an fp32 master weight and computes in
/// the precision and memory layout `compute` says.
#[derive(Debug)]
struct Block {
    conv1: Conv,
    bn1: nn::BatchNorm,
    conv2: Conv,
    bn2: nn::BatchNorm,
    compute: Compute,
}

impl Block {
    fn new(p: &nn::Path, width: i64, compute: Compute) -> Block {
        let conv = |name: &str| Conv::new(&(p / name), width, width, 3, 1, nn::init::DEFAULT_KAIMING_UNIFORM);
        Block {
            conv1: conv("conv1"),
            bn1: nn::batch_norm2d(p / "bn1", width, Default::default()),
            conv2: conv("conv2"),
            bn2: nn::batch_norm2d(p / "bn2", width, Default::default()),
            compute,
        }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let c = self.compute;
        let h = self.conv1.forward(xs, c).apply_t(&self.bn1, train).relu();
        self.conv2.forward(&h, c).apply_t(&self.bn2, train)
    }
}

/// Three heavy-ball steps with β = 0.9: the forward pass is generated at compile time.
#[derive(Debug, Unroll)]
#[optarch(spec = "specs/heavy_ball.yaml", steps = 3, set(beta = 0.9))]
struct HeavyBall {
    blocks: Vec<Block>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Keep freed tensors for the next step instead of handing them back to the kernel
    // (OPTARCH_MALLOC=glibc leaves glibc's defaults).
    optarch_core::malloc::tune_for_training()?;
    let device = Device::cuda_if_available();
    let compute = Compute::fastest(device, 32 * 32 * 32); // steps of 32 images of 32×32
    tch::manual_seed(0);
    let vs = nn::VarStore::new(device);
    let root = vs.root();
    let stem = Conv::new(&(&root / "stem"), 3, 16, 3, 1, nn::init::DEFAULT_KAIMING_UNIFORM);
    let stage = HeavyBall::new(&(&root / "stage"), |p, _step| Block::new(p, 16, compute));
    let head = nn::linear(&root / "head", 16, 10, Default::default());
    let mut opt = nn::Sgd { momentum: 0.9, ..Default::default() }.build(&vs, 0.05)?;
    let x = Tensor::randn([32, 3, 32, 32], (Kind::Float, device));
    let y = Tensor::randint(10, [32], (Kind::Int64, device));
    for step in 0..5 {
        let h = stage.forward_t(&stem.forward(&compute.input(&x), compute).relu(), true);
        let logits = compute.head(&h.adaptive_avg_pool2d([1, 1]).flatten(1, -1)).apply(&head);
        let loss = logits.cross_entropy_for_logits(&y);
        opt.backward_step(&loss);
        println!("step {step}: loss {:.4}", loss.double_value(&[]));
    }
    println!(
        "trained on {device:?} in {compute}; CUDA available: {}",
        tch::Cuda::is_available()
    );
    Ok(())
}
"#;
