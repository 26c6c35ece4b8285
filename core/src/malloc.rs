//! glibc's allocator, tuned for training: keep freed memory instead of handing it back to the
//! kernel.
//!
//! libtorch allocates every CPU tensor through `posix_memalign`. By default glibc serves
//! requests above its mmap threshold (128 KiB at first, raised dynamically up to 32 MiB as
//! mapped blocks are freed) with a mapping of their own, returned to the kernel on `free`, and
//! trims the heap's top once more than its trim threshold (128 KiB at first, then twice the mmap
//! threshold) is free there. A training step frees and reallocates the same activations every
//! step, so each step faults its memory in again: about a fifth of a DenseNet-BC-22 bf16 step on
//! the CPU (docs/BENCHMARKS.md, "glibc's allocator"). [`tune_for_training`] fixes the mmap
//! threshold at [`MMAP_THRESHOLD`] and the trim threshold at [`TRIM_THRESHOLD`] with `mallopt`
//! (which also turns the dynamic adjustment off), so freed tensors stay in the process for the
//! next step. The price: the resident set keeps its high-water mark instead of shrinking between
//! steps, in every process that trains (each slot of a search).
//!
//! What it cannot keep: blocks of 32 MiB and more are still mapped and unmapped each time (the
//! same cap as glibc's dynamic threshold), and glibc may still unmap whole heaps of its
//! per-thread arenas. It may be called at any time; blocks mapped before it are unmapped when
//! freed.
//!
//! The `optarch` and `optarch-bench` programs call it at start-up. Programs of your own (a
//! training loop over a derived model) can call it first thing in `main`.
//!
//! It changes nothing when the process carries settings of the same thresholds
//! (`MALLOC_MMAP_THRESHOLD_`, `MALLOC_TRIM_THRESHOLD_`, `MALLOC_TOP_PAD_`, `MALLOC_MMAP_MAX_`,
//! or those tunables in `GLIBC_TUNABLES`), or preloads another allocator (`LD_PRELOAD` naming a
//! `malloc` library: jemalloc, tcmalloc, mimalloc): those win unless `OPTARCH_MALLOC=keep` is
//! set explicitly. `OPTARCH_MALLOC=glibc` leaves glibc's defaults.

use std::fmt;
use std::sync::OnceLock;

/// The environment variable that chooses: `keep` (the default) or `glibc`.
pub const ENV: &str = "OPTARCH_MALLOC";

/// Requests of this size and above get a mapping of their own (glibc's maximum for its dynamic
/// threshold, 32 MiB on 64-bit systems; fixing it turns the dynamic adjustment off).
pub const MMAP_THRESHOLD: usize = 32 << 20;

/// The heap's top is returned to the kernel only when this much of it is free: 2 GiB less one
/// byte, the largest positive `int` `mallopt` takes (far above any step of the shipped
/// networks, while trimming still happens after a larger one).
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
    /// glibc refused a threshold (`mallopt` answered 0); a refused mmap threshold, the first
    /// set, leaves glibc's defaults unchanged.
    Refused,
    /// Not glibc (another C library): its defaults.
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
            Malloc::User(var) => write!(
                f,
                "your settings ({var}), left as they are ({ENV}=keep overrides them)"
            ),
            Malloc::Refused => write!(f, "not tuned: glibc refused a threshold"),
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

/// glibc's variables for the settings [`tune_for_training`] makes, and their tunables.
const SAME_SETTINGS: [(&str, &str); 4] = [
    ("MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
    ("MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"),
    ("MALLOC_TOP_PAD_", "glibc.malloc.top_pad"),
    ("MALLOC_MMAP_MAX_", "glibc.malloc.mmap_max"),
];

/// Whether an environment variable sets what [`tune_for_training`] would, or replaces glibc's
/// allocator.
fn conflicts(k: &str, v: &str) -> bool {
    match k {
        "GLIBC_TUNABLES" => SAME_SETTINGS.iter().any(|(_, t)| v.contains(t)),
        "LD_PRELOAD" => v.contains("malloc"),
        _ => SAME_SETTINGS.iter().any(|(var, _)| k == *var),
    }
}

/// The choice the environment makes, before anything is applied.
fn decide(env: impl Iterator<Item = (String, String)>) -> Result<Malloc, String> {
    let mut user = None;
    let mut asked = None;
    for (k, v) in env {
        if k == ENV {
            asked = Some(v);
        } else if user.is_none() && conflicts(&k, &v) {
            user = Some(k);
        }
    }
    match asked.as_deref().map(str::trim) {
        Some("keep") => Ok(Malloc::Keep),
        Some("glibc") => Ok(Malloc::Defaults),
        None | Some("") => Ok(user.map_or(Malloc::Keep, Malloc::User)),
        Some(other) => Err(format!(
            "{ENV}={other:?} is not a choice: write {ENV}=keep (the default: keep freed memory \
             for the next training step) or {ENV}=glibc (glibc's defaults)"
        )),
    }
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
    // The mmap threshold first: glibc refuses one above its heaps' half size, and a refusal
    // changes nothing, so nothing is then half set. Each setter turns glibc's dynamic
    // adjustment of both thresholds off; the trim threshold's is always taken.
    if !set(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) {
        return Malloc::Refused;
    }
    if set(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) {
        Malloc::Keep
    } else {
        Malloc::Refused
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
    fn an_explicit_choice_beats_user_settings() {
        assert_eq!(decide(env(&[(ENV, "glibc")])), Ok(Malloc::Defaults));
        let both = [("MALLOC_TRIM_THRESHOLD_", "0"), (ENV, "glibc")];
        assert_eq!(decide(env(&both)), Ok(Malloc::Defaults));
        let keep = [("MALLOC_TRIM_THRESHOLD_", "0"), (ENV, "keep")];
        assert_eq!(decide(env(&keep)), Ok(Malloc::Keep));
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
        let preload = [("LD_PRELOAD", "/usr/lib/libjemalloc.so.2")];
        assert_eq!(decide(env(&preload)), Ok(Malloc::User("LD_PRELOAD".into())));
        // Settings of something else do not conflict: other tunables, other malloc variables
        // (the arena count, checking), other preloads.
        for other in [
            (
                "GLIBC_TUNABLES",
                "glibc.cpu.hwcaps=-AVX512F:glibc.malloc.tcache_count=0",
            ),
            ("MALLOC_ARENA_MAX", "2"),
            ("MALLOC_CHECK_", "3"),
            ("LD_PRELOAD", "/usr/lib/libfaketime.so"),
        ] {
            assert_eq!(decide(env(&[other])), Ok(Malloc::Keep), "{other:?}");
        }
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
        // (nextest runs each test in a process of its own, so no other test frees memory
        // between the two readings.)
        let mut v: Vec<u8> = Vec::with_capacity(n);
        v.resize(n, std::hint::black_box(1));
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
