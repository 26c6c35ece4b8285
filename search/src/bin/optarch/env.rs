//! `optarch env`: libtorch, CUDA, cuDNN and threads.

use crate::Failure;
use clap::Args;

#[derive(Debug, Args)]
pub struct EnvArgs {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: EnvArgs, device: tch::Device) -> Result<(), Failure> {
    let info = optarch_core::device::env_info();
    if a.json {
        let mut v = serde_json::to_value(&info).map_err(anyhow::Error::from)?;
        if let Some(obj) = v.as_object_mut() {
            obj.insert(
                "selected_device".into(),
                serde_json::Value::String(format!("{device:?}")),
            );
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&v).map_err(anyhow::Error::from)?
        );
    } else {
        println!("{info}");
        println!("selected device      {device:?}");
    }
    Ok(())
}
