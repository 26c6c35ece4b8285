//! Starting and signalling `optarch` processes: trial processes and trial servers.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use nix::unistd::Pid;
use optarch_core::device::DeviceChoice;

/// `exe --threads T --device D COMMAND --dir DIR` with `CUDA_VISIBLE_DEVICES=visible`, in its
/// own process group: a Ctrl-C at the terminal reaches the driver only, which stops the trials
/// itself and records them as resumable. (A trial process, or the trial server.)
pub(crate) fn optarch_command(
    exe: &Path,
    threads: usize,
    device: DeviceChoice,
    visible: &str,
    command: &str,
    search_dir: &Path,
) -> Command {
    let mut cmd = Command::new(exe);
    cmd.args(["--threads", &threads.to_string()])
        .args(["--device", &device.to_string()])
        .arg(command)
        .arg("--dir")
        .arg(search_dir)
        .env("CUDA_VISIBLE_DEVICES", visible)
        .process_group(0);
    cmd
}

/// Whether process `pid` exists.
pub(crate) fn exists(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::kill(Pid::from_raw(p), None).is_ok()
}

/// Sends SIGKILL to process `pid`.
pub(crate) fn kill(pid: u32) {
    if let Ok(p) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
    }
}
