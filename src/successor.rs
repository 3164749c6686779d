//! `SIGUSR2`: replace the running process by a fresh start of the binary
//! it was started from (so a newly installed version) with the same
//! arguments, without refusing a connection — the binary upgrade of
//! `run --upgrade` + `SIGQUIT`, driven from inside, so that it works under
//! a service manager that follows one main process (systemd).
//!
//! 1. The running process starts `<its binary> --config <its file> run --upgrade`
//!    with the write end of a pipe (`PORTCULLIS_HANDOVER_FD`).
//! 2. The successor reads and checks the configuration and builds
//!    everything, then writes `H` ("ready for the sockets") and waits on
//!    `server.upgrade_socket`. If it exits before that (a bad file, a broken
//!    binary) the pipe closes without `H`: the running process logs why and
//!    keeps serving — nothing was handed over.
//! 3. On `H` the running process sends itself `SIGQUIT`: pingora hands the
//!    listening sockets over, then this process drains (`shutdown_grace`).
//! 4. The successor, holding the sockets, writes `R`.
//! 5. The old process, still the unit's main process, tells systemd
//!    `MAINPID=<the successor's pid>` (`Type=notify`; the default
//!    `NotifyAccess=main` suffices) and exits only after that (or after 10 s
//!    without `R`): systemd has its new main process before the old one is
//!    gone, so the unit never looks as if it had stopped.

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

/// The environment variable naming the successor's end of the pipe.
pub const HANDOVER_FD: &str = "PORTCULLIS_HANDOVER_FD";
/// "Ready for the sockets."
const READY_FOR_SOCKETS: u8 = b'H';
/// "Serving, and systemd knows."
const TAKEN_OVER: u8 = b'R';

#[derive(Default)]
struct State {
    /// A successor was started and has not failed.
    running: bool,
    /// It asked for the sockets: this process is handing over and stopping.
    handing_over: bool,
    /// It said it serves (or the pipe closed after the hand-over).
    taken_over: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    running: false,
    handing_over: false,
    taken_over: false,
});
static CHANGED: Condvar = Condvar::new();

fn update(f: impl FnOnce(&mut State)) {
    let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut state);
    CHANGED.notify_all();
}

/// Listens for `SIGUSR2` and starts a successor.
pub struct Successor {
    /// Resolved at start-up: once a new version is installed over it,
    /// `/proc/self/exe` names the old, deleted file.
    exe: PathBuf,
    /// The successor's arguments.
    args: Vec<OsString>,
}

impl Successor {
    /// `None` (with a warning) when the binary's path cannot be found. The
    /// successor runs `--config <config> run --upgrade` (the working
    /// directory and environment are inherited).
    pub fn new(config: &std::path::Path) -> Option<Successor> {
        let exe = match std::env::current_exe() {
            Ok(exe) => exe,
            Err(e) => {
                tracing::warn!(error = %e, "binary upgrade on SIGUSR2 unavailable: own path unknown");
                return None;
            }
        };
        let args = vec![
            "--config".into(),
            config.as_os_str().to_owned(),
            "run".into(),
            "--upgrade".into(),
        ];
        Some(Successor { exe, args })
    }

    fn start(&self) {
        {
            let mut state = STATE.lock().unwrap_or_else(|e| e.into_inner());
            if state.running {
                tracing::warn!("SIGUSR2 ignored: a binary upgrade is already under way");
                return;
            }
            state.running = true;
        }
        match self.spawn() {
            Ok((child, pipe)) => {
                tracing::info!(
                    binary = %self.exe.display(),
                    pid = child.id(),
                    "binary upgrade: new process started; it takes the sockets once its configuration is loaded"
                );
                std::thread::Builder::new()
                    .name("binary-upgrade".into())
                    .spawn(move || watch(child, pipe))
                    .map(drop)
                    .unwrap_or_else(|e| {
                        tracing::error!(error = %e, "binary upgrade: cannot watch the new process");
                    });
            }
            Err(e) => {
                tracing::error!(
                    binary = %self.exe.display(),
                    error = %e,
                    "binary upgrade failed: cannot start the new process; this one keeps serving"
                );
                update(|s| s.running = false);
            }
        }
    }

    fn spawn(&self) -> std::io::Result<(std::process::Child, File)> {
        let mut fds: [RawFd; 2] = [0; 2];
        // SAFETY: pipe2 fills two descriptors, both close-on-exec.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: both were just opened and are owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let inherited = write.as_raw_fd();
        let mut command = std::process::Command::new(&self.exe);
        command
            .args(&self.args)
            .env(HANDOVER_FD, inherited.to_string());
        // SAFETY: only fcntl(2), async-signal-safe, between fork and exec:
        // the write end alone loses close-on-exec, in the child only.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(inherited, libc::F_SETFD, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        drop(write);
        Ok((child, File::from(read)))
    }
}

/// Follows the successor through the pipe (a thread of its own: blocking
/// reads, a handful of bytes per upgrade).
fn watch(mut child: std::process::Child, mut pipe: File) {
    let mut byte = [0u8; 1];
    let mut asked = false;
    loop {
        match pipe.read(&mut byte) {
            Ok(1) if byte[0] == READY_FOR_SOCKETS && !asked => {
                asked = true;
                update(|s| s.handing_over = true);
                tracing::info!(
                    pid = child.id(),
                    "binary upgrade: handing the listening sockets over (SIGQUIT to this process)"
                );
                // SAFETY: kill(2) to our own pid with a plain signal number;
                // pingora's handler does the hand-over.
                unsafe {
                    libc::kill(libc::getpid(), libc::SIGQUIT);
                }
            }
            Ok(1) if byte[0] == TAKEN_OVER && asked => {
                tracing::info!(pid = child.id(), "binary upgrade: the new process serves");
                crate::sd_notify::notify_or_log(&format!("MAINPID={}", child.id()));
                update(|s| s.taken_over = true);
                return;
            }
            Ok(1) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(_) | Err(_) if asked => {
                tracing::warn!(
                    pid = child.id(),
                    "binary upgrade: the new process closed the hand-over pipe before it said it serves"
                );
                update(|s| s.taken_over = true);
                return;
            }
            Ok(_) | Err(_) => {
                let status = child.wait().map(|s| s.to_string());
                tracing::error!(
                    status = %status.unwrap_or_else(|e| e.to_string()),
                    "binary upgrade failed: the new process exited before taking the sockets (see its lines above); this one keeps serving"
                );
                update(|s| s.running = false);
                return;
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Successor {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let usr2 = tokio::signal::unix::SignalKind::user_defined2();
        crate::reload::on_signal(usr2, "SIGUSR2", &mut shutdown, |_| async {
            Successor::start(self)
        })
        .await;
    }
}

/// The old process, before it exits: when it handed its sockets to a
/// successor it started, waits (at most `limit`) until the successor says it
/// serves and systemd has been told the new main pid.
pub fn wait_for_successor(limit: Duration) {
    let state = STATE.lock().unwrap_or_else(|e| e.into_inner());
    if !state.handing_over {
        return;
    }
    let (state, timeout) = CHANGED
        .wait_timeout_while(state, limit, |s| !s.taken_over)
        .unwrap_or_else(|e| e.into_inner());
    if timeout.timed_out() && !state.taken_over {
        tracing::warn!(
            "binary upgrade: the new process did not say it serves within {limit:?}; exiting anyway"
        );
    }
}

/// The successor's side of the pipe, from `PORTCULLIS_HANDOVER_FD` (only
/// in `run --upgrade`, and only when it names a pipe).
pub struct Handover(File);

impl Handover {
    pub fn from_env() -> Option<Handover> {
        let fd: RawFd = std::env::var(HANDOVER_FD).ok()?.parse().ok()?;
        // SAFETY: fstat(2) on a descriptor number only reads its status.
        let mut stat: libc::stat = unsafe { std::mem::zeroed() };
        if fd < 3 || unsafe { libc::fstat(fd, &mut stat) } != 0 {
            return None;
        }
        if stat.st_mode & libc::S_IFMT != libc::S_IFIFO {
            return None;
        }
        // Close-on-exec again, so that it is not passed further down.
        // SAFETY: fcntl(2) on the descriptor just checked.
        unsafe {
            libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
        }
        // SAFETY: the parent left this pipe open for us alone; nothing else
        // in this process owns it.
        Some(Handover(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
    }

    /// Configuration loaded: the running process may hand over.
    pub fn ready_for_sockets(&mut self) {
        let _ = self.0.write_all(&[READY_FOR_SOCKETS]);
    }

    /// Serving with the sockets: the old process may name us to systemd and end.
    pub fn taken_over(mut self) {
        let _ = self.0.write_all(&[TAKEN_OVER]);
    }
}
