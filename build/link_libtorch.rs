// Shared build-script logic for every crate that links libtorch (optarch-core, optarch-search,
// optarch-examples). Each of their `build.rs` files pulls this in with
// `include!("../build/link_libtorch.rs");` and calls `link_libtorch()` from `main`.
//
// Why it exists:
// * torch-sys links `torch_cuda` like every other library, so under the linker's default
//   `--as-needed` the `libtorch_cuda.so` entry is dropped from executables that reference no
//   CUDA symbol directly (ours never do: CUDA kernels register themselves from static
//   initialisers). The program then runs, but `tch::Cuda::is_available()` is false on a GPU
//   machine. We re-add it between `--no-as-needed` / `--as-needed`, so it is always NEEDED.
// * torch-sys sets no rpath on the final executable, so without `LD_LIBRARY_PATH` the dynamic
//   loader would not find libtorch. We record the libtorch lib directory as an rpath.
//
// torch-sys declares `links = "tch"` and prints `cargo:libtorch_lib=<dir>`, which cargo hands to
// the build scripts of crates that depend on torch-sys *directly* as `DEP_TCH_LIBTORCH_LIB`.
// When it is absent (optarch-core built with `default-features = false`, as the proc-macro crate
// does) nothing is emitted. `cargo:rustc-link-arg` applies to the binaries, tests, examples and
// benches of the crate whose build script prints it, never to its dependents: hence one build
// script per crate that produces executables.
//
// It also bakes the directory into the crate as the compile-time variable
// `OPTARCH_LIBTORCH_LIB` (read with `option_env!`), for `optarch env` and error messages.

fn link_libtorch() {
    const LIB_VAR: &str = "DEP_TCH_LIBTORCH_LIB";
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../build/link_libtorch.rs");
    println!("cargo:rerun-if-env-changed={LIB_VAR}");

    let Some(lib) = std::env::var_os(LIB_VAR) else {
        return;
    };
    let lib = std::path::PathBuf::from(lib);
    // Re-run when the libtorch installation changes (for example a new libtorch_cuda.so).
    println!("cargo:rerun-if-changed={}", lib.display());
    println!("cargo:rustc-env=OPTARCH_LIBTORCH_LIB={}", lib.display());

    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" || target_os == "macos" {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    }
    // A CPU-only libtorch has no libtorch_cuda.so: then there is nothing to keep.
    if target_os == "linux" && lib.join("libtorch_cuda.so").is_file() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}
