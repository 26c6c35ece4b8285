//! Devices and the libtorch environment.
//!
//! [`parse_device`] turns a `--device` argument into a [`tch::Device`]. Asking for CUDA where
//! libtorch sees none is an error, never a silent fall-back to the CPU: a run that was meant for
//! a GPU and quietly trains on the CPU wastes hours and yields numbers nobody asked for. Only
//! `auto` chooses for you.
//!
//! [`env_info`] gathers what a bug report or a results file needs to know about the machine:
//! the libtorch in use (version, where it was loaded from), CUDA and cuDNN, the GPUs and the CPU
//! thread pools. Its `Display` is the table `optarch env` prints; it is also `Serialize`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use schemars::JsonSchema;
use serde::Serialize;
use tch::Device;

/// The device forms [`parse_device`] accepts, for help texts and error messages.
pub const ACCEPTED_DEVICES: &str =
    "`auto` (CUDA if available, else CPU), `cpu`, `cuda` (= cuda:0) or `cuda:N`";

/// Why a `--device` argument cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    /// Not one of the accepted forms.
    #[error("unrecognised device `{input}`: expected {ACCEPTED_DEVICES}")]
    Unrecognised {
        /// The argument as given.
        input: String,
    },
    /// CUDA was asked for, but libtorch sees no CUDA device.
    #[error(
        "CUDA requested with --device {input} but this libtorch sees no CUDA device \
         (cuda available: {available}, device count {count}); use --device cpu or auto, \
         or check the driver / CUDA_VISIBLE_DEVICES{hint}"
    )]
    CudaUnavailable {
        /// The argument as given.
        input: String,
        /// `tch::Cuda::is_available()`.
        available: bool,
        /// `tch::Cuda::device_count()`.
        count: i64,
        /// Extra diagnosis (starts with "; " when not empty).
        hint: String,
    },
    /// A CUDA index at or past the number of devices libtorch sees.
    #[error(
        "CUDA device cuda:{index} requested with --device {input} but this libtorch sees only \
         {count} CUDA device(s) (cuda:0 to cuda:{last}); pick a smaller index, or check \
         CUDA_VISIBLE_DEVICES (currently {visible})",
        last = count - 1
    )]
    CudaIndexOutOfRange {
        /// The argument as given.
        input: String,
        /// The index asked for.
        index: usize,
        /// `tch::Cuda::device_count()`, at least 1.
        count: i64,
        /// `CUDA_VISIBLE_DEVICES`, or "unset".
        visible: String,
    },
}

/// A device as asked for (`--device`, a configuration): parsed, not yet checked against
/// what this libtorch sees. [`DeviceChoice::resolve`] makes it a [`tch::Device`]. It reads and
/// writes as its text form (`auto`, `cpu`, `cuda`, `cuda:N`) in JSON and YAML.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, serde::Deserialize, JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceChoice {
    /// CUDA device 0 when libtorch sees one, else the CPU.
    #[default]
    Auto,
    Cpu,
    /// A CUDA device (`None`: `cuda`, device 0).
    Cuda(Option<usize>),
}

impl std::str::FromStr for DeviceChoice {
    type Err = DeviceError;

    /// `auto`, `cpu`, `cuda` or `cuda:N`; case and surrounding space are ignored.
    fn from_str(s: &str) -> Result<Self, DeviceError> {
        let arg = s.trim().to_ascii_lowercase();
        match arg.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(None)),
            other => match other.strip_prefix("cuda:") {
                Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => n
                    .parse()
                    .map(|i| DeviceChoice::Cuda(Some(i)))
                    .map_err(|_| unrecognised(s)),
                _ => Err(unrecognised(s)),
            },
        }
    }
}

impl TryFrom<String> for DeviceChoice {
    type Error = DeviceError;
    fn try_from(s: String) -> Result<Self, DeviceError> {
        s.parse()
    }
}

impl From<DeviceChoice> for String {
    fn from(d: DeviceChoice) -> String {
        d.to_string()
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(None) => f.write_str("cuda"),
            DeviceChoice::Cuda(Some(i)) => write!(f, "cuda:{i}"),
        }
    }
}

impl DeviceChoice {
    /// The device to use: `auto` is CUDA device 0 when libtorch sees one, else the CPU; `cuda`
    /// and `cuda:N` fail with a message saying what to do when CUDA is unavailable or `N` is
    /// out of range (never a silent fall-back to the CPU).
    pub fn resolve(self) -> Result<Device, DeviceError> {
        match self {
            DeviceChoice::Auto => Ok(Device::cuda_if_available()),
            DeviceChoice::Cpu => Ok(Device::Cpu),
            DeviceChoice::Cuda(i) => cuda_device(&self.to_string(), i.unwrap_or(0)),
        }
    }
}

/// Parses a device argument: `auto`, `cpu`, `cuda` or `cuda:N` (case and surrounding space are
/// ignored), and resolves it ([`DeviceChoice::resolve`]).
///
/// ```
/// use optarch_core::device::{parse_device, DeviceError};
///
/// assert_eq!(parse_device("cpu")?, tch::Device::Cpu);
/// assert!(matches!(parse_device("gpu"), Err(DeviceError::Unrecognised { .. })));
/// if !tch::Cuda::is_available() {
///     assert!(parse_device("cuda:0").is_err()); // never a silent fall-back to the CPU
/// }
/// # Ok::<(), DeviceError>(())
/// ```
pub fn parse_device(s: &str) -> Result<Device, DeviceError> {
    s.parse::<DeviceChoice>()?.resolve()
}

/// The conventional name of a device: `cpu`, `cuda:0`, `mps`, `vulkan`.
pub fn device_name(device: Device) -> String {
    match device {
        Device::Cpu => "cpu".to_string(),
        Device::Cuda(i) => format!("cuda:{i}"),
        Device::Mps => "mps".to_string(),
        Device::Vulkan => "vulkan".to_string(),
    }
}

fn unrecognised(s: &str) -> DeviceError {
    DeviceError::Unrecognised {
        input: s.to_string(),
    }
}

fn cuda_device(input: &str, index: usize) -> Result<Device, DeviceError> {
    let available = tch::Cuda::is_available();
    let count = tch::Cuda::device_count();
    if !available || count < 1 {
        return Err(DeviceError::CudaUnavailable {
            input: input.to_string(),
            available,
            count,
            hint: cuda_hint(),
        });
    }
    if i64::try_from(index).map_or(true, |i| i >= count) {
        return Err(DeviceError::CudaIndexOutOfRange {
            input: input.to_string(),
            index,
            count,
            visible: std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_else(|_| "unset".into()),
        });
    }
    Ok(Device::Cuda(index))
}

/// Why CUDA may be missing, when we can tell.
fn cuda_hint() -> String {
    // `has_cudart` is true once libtorch_cuda.so has registered its CUDA hooks (`has_cuda` would
    // only repeat `is_available`).
    if tch::utils::has_cudart() {
        return String::new();
    }
    let lib = libtorch_lib_dir();
    let has_cuda_lib = lib
        .as_deref()
        .is_some_and(|dir| dir.join("libtorch_cuda.so").is_file());
    match (lib, has_cuda_lib) {
        (Some(dir), true) => format!(
            "; libtorch_cuda.so exists in {} but is not loaded: this program was linked without \
             it (see build/link_libtorch.rs)",
            dir.display()
        ),
        (Some(dir), false) => format!(
            "; the libtorch in {} is a CPU-only build: install a CUDA build of torch",
            dir.display()
        ),
        (None, _) => "; this libtorch has no CUDA support loaded".to_string(),
    }
}

/// A CUDA device as libtorch numbers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CudaDevice {
    /// The `N` of `cuda:N`.
    pub index: usize,
    /// The model name, when it can be told (see [`EnvInfo::cuda_devices`]).
    pub name: Option<String>,
}

/// A GPU as the NVIDIA driver lists it (`nvidia-smi`), in the driver's own numbering, which
/// ignores `CUDA_VISIBLE_DEVICES`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriverGpu {
    /// The driver's index.
    pub index: usize,
    /// The model name.
    pub name: String,
    /// Total memory in MiB.
    pub memory_mib: Option<u64>,
    /// The driver version.
    pub driver_version: String,
}

/// What optarch runs on: versions, libtorch, CUDA and CPU threads. See [`env_info`].
#[derive(Debug, Clone, Serialize)]
pub struct EnvInfo {
    /// The optarch version.
    pub optarch_version: String,
    /// The libtorch (torch) version, such as `2.11.0+cu130`, read from the `version.py` (PyTorch
    /// package) or `build-version` (libtorch archive) beside the library directory.
    pub libtorch_version: Option<String>,
    /// The CUDA version libtorch was built for, from `version.py`.
    pub libtorch_cuda_version: Option<String>,
    /// The directory libtorch was loaded from in this process (from `/proc/self/maps`), or if
    /// that cannot be read, the directory it was linked against.
    pub libtorch_lib: Option<PathBuf>,
    /// The directory libtorch was linked against at build time (also the executable's rpath).
    pub libtorch_lib_at_build: Option<PathBuf>,
    /// Whether libtorch's CUDA support (`libtorch_cuda.so`) is loaded in this process. False for
    /// a CPU-only libtorch, or when the executable was linked without it.
    pub cuda_support_loaded: bool,
    /// `tch::Cuda::is_available()`.
    pub cuda_available: bool,
    /// `tch::Cuda::device_count()`.
    pub cuda_device_count: i64,
    /// The CUDA devices libtorch sees. libtorch's C API gives no names, so they come from
    /// `nvidia-smi`, and only where the mapping is certain: every GPU is the same model, or
    /// `CUDA_DEVICE_ORDER=PCI_BUS_ID` makes CUDA number devices as the driver does.
    pub cuda_devices: Vec<CudaDevice>,
    /// `CUDA_VISIBLE_DEVICES`, if set.
    pub cuda_visible_devices: Option<String>,
    /// The CUDA runtime version libtorch was built with, such as `13.0`.
    pub cuda_runtime_version: Option<String>,
    /// `tch::Cuda::cudnn_is_available()`: CUDA is available and libtorch has cuDNN.
    pub cudnn_available: bool,
    /// The cuDNN version libtorch was built with, such as `9.13.0`.
    pub cudnn_version: Option<String>,
    /// The GPUs the NVIDIA driver lists, whether or not libtorch can use them. Empty when
    /// `nvidia-smi` is missing or fails.
    pub driver_gpus: Vec<DriverGpu>,
    /// Threads for intra-op parallelism (`tch::get_num_threads()`).
    pub num_threads: i32,
    /// Threads for inter-op parallelism.
    pub num_interop_threads: i32,
    /// libtorch was built with MKL.
    pub mkl: bool,
    /// libtorch was built with oneDNN (MKL-DNN).
    pub mkldnn: bool,
    /// libtorch was built with OpenMP.
    pub openmp: bool,
    /// The CPU's bfloat16 arithmetic (`AMX-BF16`, `AVX-512-BF16`), when it has some: the
    /// default precision on the CPU is then bf16 with channels_last.
    pub cpu_bf16: Option<String>,
    /// Whether `cuda:0` computes in bfloat16 ([`supports_bf16`]); false without CUDA. Where it
    /// does, the default precision there is bf16 with channels_last for steps of at least
    /// [`CUDA_BF16_MIN_STEP_PIXELS`], fp32 below.
    pub cuda_bf16: bool,
    /// How glibc's allocator runs in this process ([`crate::malloc::tune_for_training`]);
    /// `None` if the program never tuned it.
    pub malloc: Option<crate::malloc::Malloc>,
}

/// The CPU's bfloat16 instructions, from `/proc/cpuinfo` (`amx_bf16`, `avx512_bf16`): those
/// make bf16 convolutions faster than fp32 ones. `None` elsewhere.
pub fn cpu_bf16() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    let flags = info.lines().find(|l| l.starts_with("flags"))?;
    let has = |f: &str| flags.split_whitespace().any(|x| x == f);
    let found: Vec<&str> = [("amx_bf16", "AMX-BF16"), ("avx512_bf16", "AVX-512-BF16")]
        .iter()
        .filter(|(flag, _)| has(flag))
        .map(|(_, name)| *name)
        .collect();
    (!found.is_empty()).then(|| found.join(", "))
}

/// Whether `device` computes in bfloat16: the CPU where [`cpu_bf16`] finds the instructions
/// that make it fast, a CUDA device where a bf16 product runs.
pub fn supports_bf16(device: Device) -> bool {
    match device {
        Device::Cpu => cpu_bf16().is_some(),
        Device::Cuda(_) => {
            let probe = tch::Tensor::f_ones([2, 2], (tch::Kind::BFloat16, device))
                .and_then(|a| a.f_matmul(&a));
            probe.is_ok()
        }
        _ => false,
    }
}

/// Pixels a training step processes (batch × height × width) from which bf16 with
/// channels_last is faster than fp32 on a CUDA device. Measured on an H200 with
/// `optarch-bench --device cuda` (docs/BENCHMARKS.md, "GPU figures"): on 32×32 images at
/// batch 32 and 128 (32,768 and 131,072 pixels a step) ResNet-20 and DenseNet-BC steps are
/// bound by kernel launches, bf16 adds casts, and bf16 with channels_last is slower than fp32
/// for every network measured but DenseNet-BC-100 at batch 128 (4 % faster; gradient
/// descent's ResNet-20 1.52× slower); at batch 512 (524,288) it is 1.35–1.58× faster, and on a
/// ResNet-18 at 224×224, batch 128 (6.4 million), 2.09× faster. The threshold sits between the
/// measured points; where in between the two settings cross is not measured.
pub const CUDA_BF16_MIN_STEP_PIXELS: i64 = 1 << 18;

/// Whether bf16 with channels_last is the faster setting for a training step of `step_pixels`
/// (batch × height × width) on `device`: on the CPU wherever it has bfloat16 instructions
/// ([`cpu_bf16`]; 1.8–2.4× fp32 at batch 128 on the two such CPUs measured; the step's size
/// is not part of the CPU's rule), on a CUDA device that computes in bf16 ([`supports_bf16`])
/// from [`CUDA_BF16_MIN_STEP_PIXELS`] on.
pub fn prefers_bf16(device: Device, step_pixels: i64) -> bool {
    bf16_is_faster(device, step_pixels, || supports_bf16(device))
}

/// [`prefers_bf16`]'s rule, given whether the device computes in bf16 at all.
fn bf16_is_faster(device: Device, step_pixels: i64, computes_bf16: impl Fn() -> bool) -> bool {
    match device {
        Device::Cuda(_) => step_pixels >= CUDA_BF16_MIN_STEP_PIXELS && computes_bf16(),
        _ => computes_bf16(),
    }
}

/// Runs `f` under CUDA's fp16 autocast when `on`, else simply runs it. tch's `autocast` calls
/// libtorch 2.11's deprecated `at::autocast::is_enabled`/`set_enabled`, each of which prints a
/// deprecation warning on every call where CUDA is available (five lines a training step,
/// seen on an H200): calling it only when fp16 is on spares fp32 and bf16 runs those calls.
/// fp16 runs still print them; tch 0.24 binds no other way to turn autocast on.
pub fn autocast_fp16<T>(on: bool, f: impl FnOnce() -> T) -> T {
    match on {
        true => tch::autocast(true, f),
        false => f(),
    }
}

/// Collects [`EnvInfo`] for this process. Runs `nvidia-smi` once if it is on `PATH`.
pub fn env_info() -> EnvInfo {
    let libtorch_lib_at_build = option_env!("OPTARCH_LIBTORCH_LIB").map(PathBuf::from);
    let libtorch_lib = libtorch_lib_dir();
    let (libtorch_version, libtorch_cuda_version) = libtorch_lib
        .as_deref()
        .map(libtorch_versions)
        .unwrap_or_default();
    // True once libtorch_cuda.so has registered its CUDA hooks, GPU or not.
    let cuda_support_loaded = tch::utils::has_cudart();
    let cuda_available = tch::Cuda::is_available();
    let cuda_device_count = tch::Cuda::device_count();
    let cuda_visible_devices = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    let driver_gpus = nvidia_smi_gpus();
    let count = usize::try_from(cuda_device_count).unwrap_or(0);
    let cuda_devices = (0..count)
        .map(|index| CudaDevice {
            index,
            name: cuda_device_name(index, &driver_gpus, cuda_visible_devices.as_deref()),
        })
        .collect();
    // These report compile-time versions; ask only where the CUDA hooks are loaded.
    let (cuda_runtime_version, cudnn_version) = if cuda_support_loaded {
        (
            format_cudart(tch::utils::version_cudart()),
            format_cudnn(tch::utils::version_cudnn()),
        )
    } else {
        (None, None)
    };
    EnvInfo {
        optarch_version: env!("CARGO_PKG_VERSION").to_string(),
        libtorch_version,
        libtorch_cuda_version,
        libtorch_lib: libtorch_lib.or_else(|| libtorch_lib_at_build.clone()),
        libtorch_lib_at_build,
        cuda_support_loaded,
        cuda_available,
        cuda_device_count,
        cuda_devices,
        cuda_visible_devices,
        cuda_runtime_version,
        cudnn_available: tch::Cuda::cudnn_is_available(),
        cudnn_version,
        driver_gpus,
        num_threads: tch::get_num_threads(),
        num_interop_threads: tch::get_num_interop_threads(),
        mkl: tch::utils::has_mkl(),
        mkldnn: tch::utils::has_mkldnn(),
        openmp: tch::utils::has_openmp(),
        cpu_bf16: cpu_bf16(),
        cuda_bf16: cuda_available && supports_bf16(Device::Cuda(0)),
        malloc: crate::malloc::state().cloned(),
    }
}

/// The directory libtorch was loaded from in this process; else the one linked at build time.
fn libtorch_lib_dir() -> Option<PathBuf> {
    loaded_libtorch_dir().or_else(|| option_env!("OPTARCH_LIBTORCH_LIB").map(PathBuf::from))
}

/// Finds `libtorch_cpu.so` among this process's mappings (Linux).
fn loaded_libtorch_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| path.ends_with("/libtorch_cpu.so"))
        .and_then(|path| Path::new(path).parent().map(Path::to_path_buf))
}

/// (torch version, CUDA version it was built for), from the files beside the lib directory:
/// `version.py` in a PyTorch package (`torch/lib` → `torch/version.py`), `build-version` in a
/// libtorch archive.
fn libtorch_versions(lib: &Path) -> (Option<String>, Option<String>) {
    let Some(root) = lib.parent() else {
        return (None, None);
    };
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        return (
            python_assignment(&text, "__version__"),
            python_assignment(&text, "cuda"),
        );
    }
    let version = std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty());
    (version, None)
}

/// The string value of `name = '...'` or `name: Optional[str] = '...'` in a Python file; `None`
/// for a non-string value such as `None`.
fn python_assignment(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        if !rest.starts_with([' ', ':', '=']) {
            return None;
        }
        let value = rest.split_once('=')?.1.trim();
        let unquoted = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .or_else(|| value.strip_prefix('"').and_then(|v| v.strip_suffix('"')))?;
        Some(unquoted.to_string())
    })
}

/// `CUDART_VERSION` (major * 1000 + minor * 10) as `major.minor`.
fn format_cudart(v: i64) -> Option<String> {
    (v > 0).then(|| format!("{}.{}", v / 1000, (v % 1000) / 10))
}

/// `CUDNN_VERSION` as `major.minor.patch` (cuDNN 9 encodes major * 10000 + minor * 100 + patch,
/// earlier releases major * 1000 + minor * 100 + patch).
fn format_cudnn(v: i64) -> Option<String> {
    if v <= 0 {
        None
    } else if v >= 90000 {
        Some(format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100))
    } else {
        Some(format!("{}.{}.{}", v / 1000, (v % 1000) / 100, v % 100))
    }
}

/// The GPUs `nvidia-smi` lists; empty if it is missing or fails.
fn nvidia_smi_gpus() -> Vec<DriverGpu> {
    let output = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,memory.total,driver_version",
            "--format=csv,noheader,nounits",
        ])
        .output();
    match output {
        Ok(out) if out.status.success() => parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout)),
        _ => Vec::new(),
    }
}

fn parse_nvidia_smi(text: &str) -> Vec<DriverGpu> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [index, name, memory, driver] = fields.as_slice() else {
                return None;
            };
            Some(DriverGpu {
                index: index.parse().ok()?,
                name: (*name).to_string(),
                memory_mib: memory.parse().ok(),
                driver_version: (*driver).to_string(),
            })
        })
        .collect()
}

/// The model name of `cuda:index`, where the driver's list determines it.
fn cuda_device_name(index: usize, gpus: &[DriverGpu], visible: Option<&str>) -> Option<String> {
    let first = gpus.first()?;
    if gpus.iter().all(|g| g.name == first.name) {
        return Some(first.name.clone());
    }
    // Mixed models: CUDA orders fastest first unless told to follow the PCI bus like the driver.
    if std::env::var("CUDA_DEVICE_ORDER").ok().as_deref() != Some("PCI_BUS_ID") {
        return None;
    }
    let driver_index = match visible {
        None => index,
        Some(list) => list.split(',').nth(index)?.trim().parse().ok()?,
    };
    gpus.iter()
        .find(|g| g.index == driver_index)
        .map(|g| g.name.clone())
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

impl fmt::Display for EnvInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const W: usize = 22;
        let or_unknown = |v: &Option<String>| v.clone().unwrap_or_else(|| "unknown".into());
        writeln!(f, "{:W$}{}", "optarch", self.optarch_version)?;
        let built_for = match &self.libtorch_cuda_version {
            Some(cuda) => format!(" (built for CUDA {cuda})"),
            None => String::new(),
        };
        writeln!(
            f,
            "{:W$}{}{built_for}",
            "libtorch",
            or_unknown(&self.libtorch_version)
        )?;
        let lib = |p: &Option<PathBuf>| {
            p.as_ref()
                .map_or_else(|| "unknown".to_string(), |p| p.display().to_string())
        };
        writeln!(f, "{:W$}{}", "libtorch library", lib(&self.libtorch_lib))?;
        if self.libtorch_lib_at_build.is_some() && self.libtorch_lib_at_build != self.libtorch_lib {
            writeln!(
                f,
                "{:W$}{} (differs: LD_LIBRARY_PATH?)",
                "  linked at build",
                lib(&self.libtorch_lib_at_build)
            )?;
        }
        writeln!(
            f,
            "{:W$}{}",
            "CUDA support loaded",
            yes_no(self.cuda_support_loaded)
        )?;
        writeln!(f, "{:W$}{}", "CUDA available", yes_no(self.cuda_available))?;
        writeln!(f, "{:W$}{}", "CUDA devices", self.cuda_device_count)?;
        for d in &self.cuda_devices {
            let name = d.name.as_deref().unwrap_or("unknown (mixed GPU models)");
            writeln!(f, "{:W$}{name}", format!("  cuda:{}", d.index))?;
        }
        writeln!(
            f,
            "{:W$}{}",
            "CUDA_VISIBLE_DEVICES",
            self.cuda_visible_devices.as_deref().unwrap_or("unset")
        )?;
        writeln!(
            f,
            "{:W$}{}",
            "CUDA runtime (build)",
            self.cuda_runtime_version.as_deref().unwrap_or("none")
        )?;
        writeln!(
            f,
            "{:W$}{} (version {})",
            "cuDNN available",
            yes_no(self.cudnn_available),
            self.cudnn_version.as_deref().unwrap_or("none")
        )?;
        if self.driver_gpus.is_empty() {
            writeln!(
                f,
                "{:W$}none listed (nvidia-smi missing or failed)",
                "driver GPUs"
            )?;
        } else {
            let driver = &self.driver_gpus[0].driver_version;
            writeln!(f, "{:W$}driver {driver}", "driver GPUs")?;
            for g in &self.driver_gpus {
                let memory = g
                    .memory_mib
                    .map_or_else(String::new, |m| format!(", {m} MiB"));
                writeln!(f, "{:W$}{}{memory}", format!("  {}", g.index), g.name)?;
            }
        }
        writeln!(
            f,
            "{:W$}{} intra-op, {} inter-op",
            "CPU threads", self.num_threads, self.num_interop_threads
        )?;
        writeln!(
            f,
            "{:W$}MKL {}, oneDNN {}, OpenMP {}",
            "CPU libraries",
            yes_no(self.mkl),
            yes_no(self.mkldnn),
            yes_no(self.openmp)
        )?;
        if self.cuda_available {
            match self.cuda_bf16 {
                true => writeln!(
                    f,
                    "{:W$}yes: default precision bf16 with channels_last for steps of at least \
                     {CUDA_BF16_MIN_STEP_PIXELS} pixels (batch × height × width), fp32 below",
                    "CUDA bfloat16"
                )?,
                false => writeln!(f, "{:W$}no: default precision fp32", "CUDA bfloat16")?,
            }
        }
        if let Some(m) = &self.malloc {
            writeln!(f, "{:W$}{m}", "allocator")?;
        }
        match &self.cpu_bf16 {
            Some(isa) => write!(
                f,
                "{:W$}{isa}: default precision bf16 with channels_last",
                "CPU bfloat16"
            ),
            None => write!(
                f,
                "{:W$}none (no AMX or AVX-512-BF16): default precision fp32",
                "CPU bfloat16"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_and_auto_parse() {
        assert_eq!(parse_device("cpu"), Ok(Device::Cpu));
        assert_eq!(parse_device(" CPU "), Ok(Device::Cpu));
        let auto = parse_device("auto").unwrap();
        assert_eq!(auto.is_cuda(), tch::Cuda::is_available());
    }

    #[test]
    fn choices_read_and_write_their_text_form() {
        for (text, want) in [
            ("auto", DeviceChoice::Auto),
            ("cpu", DeviceChoice::Cpu),
            ("cuda", DeviceChoice::Cuda(None)),
            ("cuda:3", DeviceChoice::Cuda(Some(3))),
        ] {
            let d: DeviceChoice = text.parse().unwrap();
            assert_eq!(d, want);
            assert_eq!(d.to_string(), text);
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<DeviceChoice>(&json).unwrap(), d);
        }
        assert!(serde_json::from_str::<DeviceChoice>("\"gpu\"").is_err());
        assert_eq!(DeviceChoice::Cpu.resolve(), Ok(Device::Cpu));
    }

    #[test]
    fn bf16_is_preferred_by_the_cpu_always_and_by_a_gpu_for_large_steps() {
        // The CPU's choice is its bfloat16 instructions', whatever the step's size.
        let cpu = cpu_bf16().is_some();
        for pixels in [0, 128 * 32 * 32, CUDA_BF16_MIN_STEP_PIXELS, i64::MAX] {
            assert_eq!(prefers_bf16(Device::Cpu, pixels), cpu, "{pixels}");
        }
        let gpu = Device::Cuda(0);
        // The measured points on an H200: 32×32 images at batch 32 and 128 (fp32 faster), at
        // batch 512 and 224×224 at batch 128 (bf16 + channels_last faster).
        let (small, large) = (
            [32 * 32 * 32, 128 * 32 * 32],
            [512 * 32 * 32, 128 * 224 * 224],
        );
        for pixels in small.into_iter().chain([CUDA_BF16_MIN_STEP_PIXELS - 1]) {
            assert!(!bf16_is_faster(gpu, pixels, || true), "{pixels}");
            assert!(!prefers_bf16(gpu, pixels), "{pixels}");
        }
        for pixels in large.into_iter().chain([CUDA_BF16_MIN_STEP_PIXELS]) {
            assert!(bf16_is_faster(gpu, pixels, || true), "{pixels}");
            assert!(!bf16_is_faster(gpu, pixels, || false), "{pixels}");
            let bf16_gpu = tch::Cuda::is_available() && supports_bf16(gpu);
            assert_eq!(prefers_bf16(gpu, pixels), bf16_gpu, "{pixels}");
        }
        for pixels in small.into_iter().chain(large) {
            assert!(bf16_is_faster(Device::Cpu, pixels, || true), "{pixels}");
            assert!(!bf16_is_faster(Device::Cpu, pixels, || false), "{pixels}");
        }
    }

    #[test]
    fn env_says_the_default_precision_on_a_gpu_only_where_there_is_one() {
        let mut info = env_info();
        info.cuda_available = false;
        assert!(!info.to_string().contains("CUDA bfloat16"), "{info}");
        info.cuda_available = true;
        info.cuda_bf16 = true;
        let text = info.to_string();
        let line = text.lines().find(|l| l.starts_with("CUDA bfloat16"));
        let line = line.unwrap_or_else(|| panic!("no CUDA bfloat16 line in\n{text}"));
        assert!(line.contains("bf16 with channels_last"), "{line}");
        assert!(
            line.contains(&CUDA_BF16_MIN_STEP_PIXELS.to_string()),
            "{line}"
        );
        info.cuda_bf16 = false;
        let text = info.to_string();
        assert!(
            text.contains("CUDA bfloat16         no: default precision fp32"),
            "{text}"
        );
    }

    #[test]
    fn bogus_is_rejected_with_the_accepted_forms() {
        for bad in ["bogus", "", "cuda:", "cuda:x", "cuda:-1", "gpu", "cuda0"] {
            let err = parse_device(bad).unwrap_err();
            assert!(matches!(err, DeviceError::Unrecognised { .. }), "{bad}");
            let msg = err.to_string();
            assert!(msg.contains("`cpu`") && msg.contains("`cuda:N`"), "{msg}");
        }
    }

    #[test]
    fn cuda_fails_loudly_without_cuda() {
        if tch::Cuda::is_available() {
            eprintln!("CUDA is available: skipping the no-CUDA assertions");
            return;
        }
        for arg in ["cuda", "cuda:0", "cuda:3"] {
            let err = parse_device(arg).unwrap_err();
            assert!(matches!(err, DeviceError::CudaUnavailable { .. }), "{arg}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("--device {arg}")), "{msg}");
            assert!(msg.contains("use --device cpu or auto"), "{msg}");
            assert!(msg.contains("CUDA_VISIBLE_DEVICES"), "{msg}");
        }
    }

    #[test]
    fn cuda_index_out_of_range_fails() {
        let count = tch::Cuda::device_count();
        if !tch::Cuda::is_available() || count < 1 {
            return;
        }
        assert_eq!(parse_device("cuda"), Ok(Device::Cuda(0)));
        let arg = format!("cuda:{count}");
        let err = parse_device(&arg).unwrap_err();
        assert!(matches!(err, DeviceError::CudaIndexOutOfRange { .. }));
        assert!(err.to_string().contains("pick a smaller index"));
    }

    #[test]
    fn device_names() {
        assert_eq!(device_name(Device::Cpu), "cpu");
        assert_eq!(device_name(Device::Cuda(2)), "cuda:2");
    }

    #[test]
    fn env_info_is_sane() {
        let info = env_info();
        assert_eq!(info.optarch_version, env!("CARGO_PKG_VERSION"));
        assert!(info.num_threads >= 1);
        assert!(info.num_interop_threads >= 1);
        assert_eq!(info.cuda_available, tch::Cuda::is_available());
        assert!(info.cuda_device_count >= 0);
        assert_eq!(info.cuda_devices.len() as i64, info.cuda_device_count);
        if !info.cuda_available {
            assert!(!info.cudnn_available);
        }
        // The build must keep libtorch_cuda.so linked (build/link_libtorch.rs): without it CUDA
        // support is silently missing even on a GPU machine.
        let at_build = info
            .libtorch_lib_at_build
            .as_ref()
            .expect("OPTARCH_LIBTORCH_LIB");
        if at_build.join("libtorch_cuda.so").is_file() {
            assert!(
                info.cuda_support_loaded,
                "libtorch_cuda.so was dropped at link time"
            );
            assert!(info.cuda_runtime_version.is_some());
        }
        let lib = info.libtorch_lib.as_ref().expect("libtorch lib dir");
        assert!(lib.is_dir(), "{}", lib.display());
        let version = info.libtorch_version.as_ref().expect("libtorch version");
        assert!(version.starts_with("2."), "{version}");
        let table = info.to_string();
        assert!(table.contains("libtorch") && table.contains("CUDA available"));
        let json = serde_json::to_value(&info).unwrap();
        assert!(json["cuda_device_count"].is_i64());
    }

    #[test]
    fn version_py_is_parsed() {
        let text = "__version__ = '2.11.0+cu130'\ncuda: Optional[str] = '13.0'\nhip: Optional[str] = None\n";
        assert_eq!(
            python_assignment(text, "__version__").as_deref(),
            Some("2.11.0+cu130")
        );
        assert_eq!(python_assignment(text, "cuda").as_deref(), Some("13.0"));
        assert_eq!(python_assignment(text, "hip"), None);
        assert_eq!(python_assignment(text, "cu"), None);
    }

    #[test]
    fn versions_are_formatted() {
        assert_eq!(format_cudart(13000).as_deref(), Some("13.0"));
        assert_eq!(format_cudart(12080).as_deref(), Some("12.8"));
        assert_eq!(format_cudnn(91300).as_deref(), Some("9.13.0"));
        assert_eq!(format_cudnn(8902).as_deref(), Some("8.9.2"));
        assert_eq!(format_cudnn(0), None);
    }

    #[test]
    fn nvidia_smi_names_map_to_cuda_devices() {
        let gpus = parse_nvidia_smi(
            "0, NVIDIA H100 80GB HBM3, 81559, 580.82\n1, NVIDIA H100 80GB HBM3, 81559, 580.82\n",
        );
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].memory_mib, Some(81559));
        assert_eq!(
            cuda_device_name(1, &gpus, Some("1")).as_deref(),
            Some("NVIDIA H100 80GB HBM3")
        );
        assert_eq!(cuda_device_name(0, &[], None), None);
    }
}
