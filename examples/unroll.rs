//! Unroll a shipped spec and print its closed form: which earlier blocks feed each block, and
//! with which coefficients.
//!
//! ```text
//! cargo run -p optarch-examples --example unroll -- specs/heavy_ball.yaml 5
//! ```

use anyhow::{Context, Result};
use optarch_core::{analysis, spec, topology};

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/../specs/heavy_ball.yaml").to_string()
    });
    let steps: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()
        .context("the second argument is the number of steps")?
        .unwrap_or(5);
    let spec = spec::load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let topo =
        topology::unroll(&spec, steps, &Default::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let report = analysis::analyse(&topo).map_err(|e| anyhow::anyhow!("{e}"))?;
    print!("{report}");
    Ok(())
}
