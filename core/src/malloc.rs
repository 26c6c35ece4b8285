//! glibc's allocator, tuned for training: keep freed memory instead of handing it back to the
//! kernel.
//!
//! libtorch allocates every CPU tensor through `posix_memalign`. By default glibc serves
//! requests above its mmap threshold (128 KiB, raised dynamically up to 32 MiB) with a mapping
//! of their own, returned to the kernel on `free`, and trims the heap's top above 128 KiB. A
//! training step frees and reallocates the same activations every step, so each step faults its
//! memory in again: about a fifth of a DenseNet-BC-22 bf16 step on the CPU (docs/BENCHMARKS.md,
//! "glibc's allocator"). [`tune_for_training`] fixes the mmap threshold at
//! [`MMAP_THRESHOLD`] and the trim threshold at [`TRIM_THRESHOLD`] with `mallopt`, so freed
//! tensors stay in the process for the next step. The price: the resident set keeps its high
//! water mark instead of shrinking between steps.
//!
//! The `optarch` and `optarch-bench` programs call it at start-up. Programs of your own (a
//! training loop over a derived model) can call it first thing in `main`.
//!
//! It changes nothing when the process already carries allocator settings of its own
//! (`GLIBC_TUNABLES` naming `glibc.malloc.*`, or any `MALLOC_*` variable): those win. And
//! `OPTARCH_MALLOC=glibc` leaves glibc's defaults.

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that chooses: `keep` (the default) or `glibc`.
pub const ENV: &str = "OPTARCH_MALLOC";

/// Requests of this size and above get a mapping of their own (glibc's maximum for its dynamic
/// threshold, 32 MiB on 64-bit systems; fixing it turns the dynamic adjustment off).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// The heap's top is returned to the kernel only when this much of it is free: the most
/// `mallopt` takes (an `int`), 2 GiB less one byte.
pub const TRIM_THRESHOLD: usize = i32::MAX as usize;

/// What [`tune_for_training`] did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum Malloc {
    /// Fixed at [`MMAP_THRESHOLD`] and [`TRIM_THRESHOLD`]: freed memory stays in the process.
    Keep,
    /// glibc's defaults, asked for with `OPTARCH_MALLOC=glibc`.
    Defaults,
    /// The process carries allocator settings of its own, left alone: the variable's name.
    User(String),
    /// Not glibc (another C library), or `mallopt` refused a setting: glibc's defaults.
    Unsupported,
}

impl fmt::Display for Malloc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Malloc::Keep => write!(
                f,
                "keeps freed memory (glibc mmap threshold {} MiB, trim threshold 2 GiB; \
                 {ENV}=glibc for glibc's defaults)",
                MMAP_THRESHOLD >> 20
            ),
            Malloc::Defaults => write!(f, "glibc's defaults ({ENV}=glibc)"),
            Malloc::User(var) => write!(f, "your settings ({var}), left as they are"),
            Malloc::Unsupported => write!(f, "the C library's defaults (not glibc)"),
        }
    }
}

static STATE: OnceLock<Malloc> = OnceLock::new();

/// What the allocator runs with: the outcome of the first [`tune_for_training`] of this process,
/// or `None` if it was never called.
pub fn state() -> Option<&'static Malloc> {
    STATE.get()
}

/// Tunes glibc's allocator for training (see the module's documentation), once per process;
/// later calls return the first outcome. An `OPTARCH_MALLOC` other than `keep` or `glibc` is an
/// error that says what to write, and changes nothing.
pub fn tune_for_training() -> Result<&'static Malloc, String> {
    if let Some(s) = STATE.get() {
        return Ok(s);
    }
    let choice = decide(
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned()))),
    )?;
    let outcome = match choice {
        Malloc::Keep => apply(),
        other => other,
    };
    Ok(STATE.get_or_init(|| outcome))
}

/// The choice the environment makes, before anything is applied.
fn decide(env: impl Iterator<Item = (String, String)>) -> Result<Malloc, String> {
    let mut user = None;
    let mut asked = None;
    for (k, v) in env {
        if k == ENV {
            asked = Some(v);
        } else if user.is_none()
            && ((k == "GLIBC_TUNABLES" && v.contains("glibc.malloc.")) || k.starts_with("MALLOC_"))
        {
            user = Some(k);
        }
    }
    let keep = match asked.as_deref().map(str::trim) {
        None | Some("" | "keep") => true,
        Some("glibc") => false,
        Some(other) => {
            return Err(format!(
                "{ENV}={other:?} is not a choice: write {ENV}=keep (the default: keep freed \
                 memory for the next training step) or {ENV}=glibc (glibc's defaults)"
            ))
        }
    };
    Ok(match (keep, user) {
        (false, _) => Malloc::Defaults,
        (true, Some(var)) => Malloc::User(var),
        (true, None) => Malloc::Keep,
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn apply() -> Malloc {
    let set = |param: libc::c_int, value: usize| {
        let Ok(value) = libc::c_int::try_from(value) else {
            return false;
        };
        // SAFETY: mallopt only sets glibc's allocator parameters (held under its own lock); it
        // takes plain integers and touches no memory of ours.
        unsafe { libc::mallopt(param, value) == 1 }
    };
    // The trim threshold first: fixing the mmap threshold alone would leave trimming dynamic.
    let trim = set(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    let mmap = set(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    if trim && mmap {
        Malloc::Keep
    } else {
        Malloc::Unsupported
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn apply() -> Malloc {
    Malloc::Unsupported
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Vec<_>>()
            .into_iter()
    }

    #[test]
    fn keeps_by_default_and_on_request() {
        assert_eq!(decide(env(&[("PATH", "/bin")])), Ok(Malloc::Keep));
        assert_eq!(decide(env(&[(ENV, "keep")])), Ok(Malloc::Keep));
        assert_eq!(decide(env(&[(ENV, " ")])), Ok(Malloc::Keep));
    }

    #[test]
    fn glibc_leaves_the_defaults_even_beside_user_settings() {
        assert_eq!(decide(env(&[(ENV, "glibc")])), Ok(Malloc::Defaults));
        let both = [("MALLOC_ARENA_MAX", "2"), (ENV, "glibc")];
        assert_eq!(decide(env(&both)), Ok(Malloc::Defaults));
    }

    #[test]
    fn the_users_own_settings_win() {
        let bench = [("MALLOC_MMAP_THRESHOLD_", "131072")];
        assert_eq!(
            decide(env(&bench)),
            Ok(Malloc::User("MALLOC_MMAP_THRESHOLD_".into()))
        );
        let tunables = [("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0")];
        assert_eq!(
            decide(env(&tunables)),
            Ok(Malloc::User("GLIBC_TUNABLES".into()))
        );
        // Tunables of something else are not allocator settings.
        let other = [("GLIBC_TUNABLES", "glibc.cpu.hwcaps=-AVX512F")];
        assert_eq!(decide(env(&other)), Ok(Malloc::Keep));
    }

    #[test]
    fn an_unknown_choice_says_what_to_write() {
        let e = decide(env(&[(ENV, "jemalloc")])).unwrap_err();
        assert!(e.contains("\"jemalloc\""), "{e}");
        assert!(e.contains("OPTARCH_MALLOC=keep") && e.contains("OPTARCH_MALLOC=glibc"));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn resident_kb() -> i64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap_or("");
        line.split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(-1)
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn glibc_takes_the_settings_and_keeps_what_is_freed() {
        // mallopt answers 1 for parameters it accepts.
        assert_eq!(apply(), Malloc::Keep);
        // 16 MiB, touched page by page: under glibc's defaults it would get a mapping of its
        // own (above the 128 KiB starting threshold) and leave the resident set when freed.
        // Kept, it stays resident for the next allocation.
        let n = 16 << 20;
        let mut v: Vec<u8> = Vec::with_capacity(n);
        v.resize(n, 1);
        for i in (0..n).step_by(4096) {
            v[i] = std::hint::black_box(2);
        }
        let touched = resident_kb();
        drop(std::hint::black_box(v));
        let after = resident_kb();
        assert!(touched > 0 && after > 0, "no VmRSS");
        assert!(
            touched - after < 4 << 10,
            "freeing 16 MiB gave {} KiB back to the kernel",
            touched - after
        );
    }
}
