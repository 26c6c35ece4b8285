//! Trial processes forked from a warm server.
//!
//! Starting `optarch trial` costs about half a second before `main` runs: the static
//! initialisation of libtorch (operator registration), paid again by every trial process. On a
//! short search that is several per cent of the workers' time. A fork server pays it once per
//! search: `optarch trial-server` loads libtorch, stays single-threaded, and forks one child per
//! trial. Each trial is still its own process, in its own process group, with its own log, exit
//! status and crash isolation; only the loading is shared (copy-on-write).
//!
//! The protocol is lines on the server's stdin and stdout:
//!
//! * driver → server: `run TRIAL HEXPATH` (the run directory, hex-encoded bytes), `kill PID`
//!   (SIGKILL to one of its children: only the parent knows that a pid is still its child's);
//! * server → driver: `ready`, `started TRIAL PID`, `refused TRIAL REASON`,
//!   `ended PID exit CODE`, `ended PID signal NUMBER` (0: a child vanished without a status the
//!   server could read).
//!
//! The server exits when its stdin closes (the driver ended or was killed); its running
//! children then see their parent change and stop as orphans (exit 75), exactly as trial
//! processes of a killed driver do.

use super::process::{self, optarch_command};
use crate::data::hex;
use crate::search::ids::TrialId;
use crate::search::trial;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{setpgid, ForkResult, Pid};
use optarch_core::device::DeviceChoice;
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn path_bytes(p: &Path) -> &[u8] {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes()
}

fn path_from(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

/// Threads of this process (fork is only sound with one).
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, |d| d.count())
}

/// Writes one protocol line to stdout, unbuffered (a forked child inherits no pending output).
/// Why the trial server stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot write to the driver: {0}")]
    Write(#[source] nix::errno::Errno),
    #[error("cannot read from the driver: {0}")]
    Read(#[source] nix::errno::Errno),
    #[error("poll: {0}")]
    Poll(#[source] nix::errno::Errno),
    #[error("cannot fork trials: {0} threads are running after loading libtorch")]
    Threads(usize),
}

/// Why the trial server could not start a trial (the driver then spawns it itself).
#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    #[error("the trial server ended")]
    Gone,
    #[error("the trial server did not load libtorch in 120 s")]
    NotReady,
    #[error("cannot reach the trial server: {0}")]
    Unreachable(#[source] std::io::Error),
    #[error("the trial server is closed")]
    Closed,
    #[error("{0}")]
    Refused(String),
    #[error("the trial server did not answer in 30 s")]
    NoAnswer,
}

fn say(line: &str) -> Result<(), ServeError> {
    let out = std::io::stdout();
    let mut bytes = format!("{line}\n").into_bytes();
    while !bytes.is_empty() {
        match nix::unistd::write(out.as_fd(), &bytes) {
            Ok(n) => {
                bytes.drain(..n);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(ServeError::Write(e)),
        }
    }
    Ok(())
}

/// Reports every child that ended.
fn reap(children: &mut HashSet<i32>) -> Result<(), ServeError> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => {
                children.remove(&pid.as_raw());
                say(&format!("ended {pid} exit {code}"))?
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                children.remove(&pid.as_raw());
                say(&format!("ended {pid} signal {}", sig as i32))?
            }
            Ok(WaitStatus::StillAlive) | Err(_) => break,
            Ok(_) => {}
        }
    }
    // A child reaped without a status this library can decode (a real-time signal), or reaped
    // by the kernel (SIGCHLD ignored): it no longer exists, so it ended all the same.
    let vanished: Vec<i32> = children
        .iter()
        .copied()
        .filter(|&p| {
            nix::sys::signal::kill(Pid::from_raw(p), None) == Err(nix::errno::Errno::ESRCH)
        })
        .collect();
    for pid in vanished {
        children.remove(&pid);
        say(&format!("ended {pid} signal 0"))?;
    }
    Ok(())
}

/// The server: `optarch trial-server --dir DIR` (with `--device` and `--threads`, which its
/// trials use). Returns when the driver closes its stdin.
pub fn serve(
    dir: &Path,
    device: DeviceChoice,
    threads_per_trial: Option<usize>,
) -> Result<(), ServeError> {
    let n = threads();
    if n != 1 {
        say(&format!(
            "refused 0 the server has {n} threads after loading libtorch"
        ))?;
        return Err(ServeError::Threads(n));
    }
    say("ready")?;
    let me = std::process::id();
    let stdin = std::io::stdin();
    let mut pending: Vec<u8> = Vec::new();
    let mut children: HashSet<i32> = HashSet::new();
    loop {
        reap(&mut children)?;
        let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(20u8)) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(ServeError::Poll(e)),
        }
        let mut chunk = [0u8; 4096];
        let got = match nix::unistd::read(stdin.as_fd(), &mut chunk) {
            Ok(0) => return Ok(()),
            Ok(k) => k,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(ServeError::Read(e)),
        };
        pending.extend_from_slice(chunk.get(..got).unwrap_or_default());
        while let Some(pos) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=pos).collect();
            let line = String::from_utf8_lossy(&line);
            let mut parts = line.split_whitespace();
            let first = parts.next();
            if first == Some("kill") {
                if let Some(pid) = parts.next().and_then(|p| p.parse::<i32>().ok()) {
                    if children.contains(&pid) {
                        let _ = nix::sys::signal::kill(
                            Pid::from_raw(pid),
                            nix::sys::signal::Signal::SIGKILL,
                        );
                    }
                }
                continue;
            }
            let (Some("run"), Some(id), Some(path)) = (first, parts.next(), parts.next()) else {
                say(&format!(
                    "refused 0 cannot read the request {:?}",
                    line.trim()
                ))?;
                continue;
            };
            let (Ok(id), Some(run_dir)) = (id.parse::<TrialId>(), unhex(path)) else {
                say(&format!(
                    "refused 0 cannot read the request {:?}",
                    line.trim()
                ))?;
                continue;
            };
            let run_dir = path_from(run_dir);
            let n = threads();
            if n != 1 {
                say(&format!("refused {id} the server has {n} threads"))?;
                continue;
            }
            match fork() {
                Ok(ForkResult::Parent { child }) => {
                    children.insert(child.as_raw());
                    say(&format!("started {id} {child}"))?
                }
                Ok(ForkResult::Child) => {
                    exit_now(child_main(dir, id, device, threads_per_trial, &run_dir, me))
                }
                Err(e) => say(&format!("refused {id} fork failed: {e}"))?,
            }
        }
    }
}

#[allow(unsafe_code)]
fn fork() -> nix::Result<ForkResult> {
    // SAFETY: the server checks just before that it runs a single thread (no lock can be held
    // by a thread that does not exist in the child), and it has touched neither CUDA nor the
    // intra-op thread pool: the child starts from a plain, freshly loaded libtorch.
    unsafe { nix::unistd::fork() }
}

/// Ends a trial process with `code` once its output is flushed, without running libtorch's
/// static destructors (a tenth of a second per process, undoing the operator registration
/// that the process never needs again). Everything a trial records is already on disk: the
/// checkpoints written and renamed, the store's transactions committed.
pub fn exit_now(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    exit_immediately(code)
}

#[allow(unsafe_code)]
fn exit_immediately(code: i32) -> ! {
    // SAFETY: `fflush(NULL)` flushes every C stdio stream (what libtorch or C++ wrote to
    // stdout, the log); `_exit` has no preconditions and ends the process without running
    // atexit handlers.
    unsafe {
        libc::fflush(std::ptr::null_mut());
        libc::_exit(code)
    }
}

/// A forked trial: its own process group, its log as stdout and stderr, then the trial.
fn child_main(
    dir: &Path,
    id: TrialId,
    device: DeviceChoice,
    threads_per_trial: Option<usize>,
    run_dir: &Path,
    server: u32,
) -> i32 {
    // Its own process group: a Ctrl-C reaches the driver only (as with spawned trials).
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(run_dir.join("log.txt"));
    let null = std::fs::File::open("/dev/null");
    let redirected = match (&log, &null) {
        (Ok(log), Ok(null)) => nix::unistd::dup2_stdout(log)
            .and_then(|_| nix::unistd::dup2_stderr(log))
            .and_then(|_| nix::unistd::dup2_stdin(null))
            .is_ok(),
        _ => false,
    };
    if !redirected {
        return trial::EXIT_FAILED;
    }
    drop((log, null));
    eprintln!(
        "trial {id}: forked by the trial server (pid {})",
        std::os::unix::process::parent_id()
    );
    if let Some(n) = threads_per_trial {
        tch::set_num_threads(i32::try_from(n).unwrap_or(i32::MAX));
    }
    // The server's pid, read before the fork: if the server ended in between, the child is
    // an orphan from its first batch on.
    trial::status(dir, id, device, server)
}

/// A message from the server.
#[derive(Debug, PartialEq)]
enum Reply {
    Ready,
    Started(TrialId, u32),
    Refused(TrialId, String),
    /// A child ended: its pid and exit code (`None`: a signal).
    Ended(u32, Option<i32>),
}

fn parse(line: &str) -> Option<Reply> {
    let mut p = line.split_whitespace();
    match p.next()? {
        "ready" => Some(Reply::Ready),
        "started" => Some(Reply::Started(
            p.next()?.parse().ok()?,
            p.next()?.parse().ok()?,
        )),
        "refused" => {
            let id = p.next()?.parse().ok()?;
            Some(Reply::Refused(id, p.collect::<Vec<_>>().join(" ")))
        }
        "ended" => {
            let pid = p.next()?.parse().ok()?;
            match (p.next()?, p.next()?.parse::<i32>().ok()?) {
                ("exit", c) => Some(Reply::Ended(pid, Some(c))),
                ("signal", _) => Some(Reply::Ended(pid, None)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// The driver's side: one server, for the slots of one device and GPU set.
pub(crate) struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<Reply>,
    ready: bool,
    /// Children that ended, by pid, not yet collected.
    ended: HashMap<u32, Option<i32>>,
    /// Trials whose request went unanswered in time (the driver started them otherwise): a
    /// child the server forks for one of them later is killed at once.
    abandoned: HashSet<TrialId>,
}

impl Server {
    /// Starts `exe --threads T --device D trial-server --dir DIR` with `CUDA_VISIBLE_DEVICES`
    /// set to `visible`. It loads libtorch while the driver goes on.
    pub(crate) fn start(
        exe: &Path,
        search_dir: &Path,
        device: DeviceChoice,
        threads: usize,
        visible: &str,
    ) -> std::io::Result<Server> {
        let mut child = optarch_command(exe, threads, device, visible, "trial-server", search_dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("the trial server has no stdout"))?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(r) = parse(&line) {
                    if tx.send(r).is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Server {
            child,
            stdin,
            rx,
            ready: false,
            ended: HashMap::new(),
            abandoned: HashSet::new(),
        })
    }

    /// Keeps what the server reported; returns the answers to a request.
    fn absorb(&mut self, r: Reply) -> Option<Reply> {
        match r {
            Reply::Ended(pid, code) => {
                self.ended.insert(pid, code);
                None
            }
            Reply::Ready => {
                self.ready = true;
                None
            }
            Reply::Started(t, pid) if self.abandoned.remove(&t) => {
                self.kill(pid);
                None
            }
            r => Some(r),
        }
    }

    /// Takes what the server reported so far; `false` when the server is gone.
    fn drain(&mut self) -> bool {
        loop {
            match self.rx.try_recv() {
                Ok(r) => {
                    self.absorb(r);
                }
                Err(TryRecvError::Empty) => return true,
                Err(TryRecvError::Disconnected) => return false,
            }
        }
    }

    /// Takes one reply within `wait`; `Err` when the server is gone.
    fn recv(&mut self, wait: Duration) -> Result<Option<Reply>, LaunchError> {
        match self.rx.recv_timeout(wait) {
            Ok(r) => Ok(self.absorb(r)),
            Err(RecvTimeoutError::Timeout) => Ok(None),
            Err(RecvTimeoutError::Disconnected) => Err(LaunchError::Gone),
        }
    }

    /// Forks trial `trial` with its log in `run_dir`; returns the child's pid. An error means
    /// this server cannot start trials (the caller spawns them instead).
    pub(crate) fn launch(&mut self, trial: TrialId, run_dir: &Path) -> Result<u32, LaunchError> {
        // Loading libtorch comes first (about half a second, longer from a cold disk). A server
        // that never gets there is killed: it has no children yet.
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.ready {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(LaunchError::NotReady);
            }
            self.recv(Duration::from_millis(100))?;
        }
        let stdin = self.stdin.as_mut().ok_or(LaunchError::Closed)?;
        writeln!(stdin, "run {trial} {}", hex(path_bytes(run_dir)))
            .and_then(|_| stdin.flush())
            .map_err(LaunchError::Unreachable)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            match self.recv(Duration::from_millis(100))? {
                Some(Reply::Started(t, pid)) if t == trial => return Ok(pid),
                Some(Reply::Refused(t, why)) if t == trial || t == TrialId(0) => {
                    return Err(LaunchError::Refused(why))
                }
                _ => {}
            }
        }
        self.abandoned.insert(trial);
        Err(LaunchError::NoAnswer)
    }

    /// Kills child `pid` through the server (which knows whether it is still its child), or
    /// directly when the server cannot be reached.
    pub(crate) fn kill(&mut self, pid: u32) {
        let sent = self.stdin.as_mut().is_some_and(|stdin| {
            writeln!(stdin, "kill {pid}")
                .and_then(|_| stdin.flush())
                .is_ok()
        });
        if !sent {
            process::kill(pid);
        }
    }

    /// The exit status of child `pid` if it has ended: `Some(code)`, where `code` is `None`
    /// for a signal. When the server itself is gone, its children stop as orphans (their
    /// parent changed): one that no longer exists counts as such, not as a crash.
    pub(crate) fn ended(&mut self, pid: u32) -> Option<Option<i32>> {
        let alive = self.drain();
        if let Some(code) = self.ended.remove(&pid) {
            return Some(code);
        }
        (!alive && !process::exists(pid)).then_some(Some(trial::EXIT_ORPHANED))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Closing its stdin ends the server.
        drop(self.stdin.take());
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_survive_the_protocol() {
        let p = Path::new("/tmp/a dir/with\nnewline/ü");
        let h = hex(path_bytes(p));
        assert!(!h.contains(' ') && !h.contains('\n'));
        assert_eq!(unhex(&h).map(path_from), Some(p.to_path_buf()));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn replies_parse() {
        assert_eq!(parse("ready"), Some(Reply::Ready));
        assert_eq!(
            parse("started 7 1234"),
            Some(Reply::Started(TrialId(7), 1234))
        );
        assert_eq!(
            parse("refused 7 fork failed: EAGAIN"),
            Some(Reply::Refused(TrialId(7), "fork failed: EAGAIN".into()))
        );
        assert_eq!(
            parse("ended 1234 exit 75"),
            Some(Reply::Ended(1234, Some(75)))
        );
        assert_eq!(parse("ended 1234 signal 9"), Some(Reply::Ended(1234, None)));
        assert_eq!(parse("ended 1234 later 9"), None);
        assert_eq!(parse("garbage"), None);
    }
}
