//! Links libtorch so that CUDA stays available and no `LD_LIBRARY_PATH` is needed:
//! see `build/link_libtorch.rs` at the workspace root.

include!("../build/link_libtorch.rs");

fn main() {
    link_libtorch();
}
