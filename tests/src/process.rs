//! The `server` binary (or any other program) as a child process, its output collected line by
//! line, started on a free port with a retry when another process takes the port first.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::Instant;
use wait_timeout::ChildExt;

use relay_pattern::{free_port, ChildGuard};

use crate::TIMEOUT;

/// The `server` binary running as a child process, with its stderr collected line by line.
#[derive(Debug)]
pub struct ServerProcess {
    child: ChildGuard,
    /// How to start it again: see [`ServerProcess::restart_if_never_started`].
    command: (std::path::PathBuf, Vec<String>, Vec<(String, String)>),
    restarted: bool,
    lines: Receiver<String>,
    /// Every stderr line so far, in order.
    pub seen: Vec<String>,
    closed: bool,
}

impl ServerProcess {
    /// Runs `bin` with `args`, stdout and stderr piped.
    pub fn spawn(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> ServerProcess {
        let (child, lines) = Self::start(bin, args, envs);
        ServerProcess {
            child,
            lines,
            seen: Vec::new(),
            closed: false,
            command: (
                bin.to_path_buf(),
                args.iter().map(|a| a.to_string()).collect(),
                envs.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            restarted: false,
        }
    }

    fn start(bin: &Path, args: &[&str], envs: &[(&str, &str)]) -> (ChildGuard, Receiver<String>) {
        let mut command = Command::new(bin);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_LOG");
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = ChildGuard::new(
            command
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {}: {e}", bin.display())),
        );
        let (tx, lines) = mpsc::channel();
        for pipe in [
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let tx = tx.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        (child, lines)
    }

    /// Wine now and then fails to start a Windows program at all when many start at once: the
    /// loader exits with STATUS_DLL_INIT_FAILED (0xC0000142) before any of our code runs (seen
    /// once in CI, 2026-12-01). Our program never exits with that code, so when the output
    /// closed with nothing printed and that was the status, start it once more (and say so).
    /// Returns whether it did. Always `false` on other platforms.
    fn restart_if_never_started(&mut self) -> bool {
        const STATUS_DLL_INIT_FAILED: i32 = 0xC000_0142_u32 as i32;
        if !cfg!(windows) || self.restarted || !self.seen.is_empty() {
            return false;
        }
        let Ok(Some(status)) = self.child.wait_timeout(TIMEOUT) else {
            return false;
        };
        if status.code() != Some(STATUS_DLL_INIT_FAILED) {
            return false;
        }
        eprintln!("the process never started (STATUS_DLL_INIT_FAILED); starting it again");
        let (bin, args, envs) = &self.command;
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let (child, lines) = Self::start(bin, &args, &envs);
        self.child = child;
        self.lines = lines;
        self.closed = false;
        self.restarted = true;
        true
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for an output line containing `needle`; `None` if the output ends or [`TIMEOUT`]
    /// passes first.
    pub fn wait_for_line(&mut self, needle: &str) -> Option<String> {
        if let Some(line) = self.seen.iter().find(|l| l.contains(needle)) {
            return Some(line.clone());
        }
        let deadline = Instant::now() + TIMEOUT;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = !self.restart_if_never_started();
                }
            }
        }
        None
    }

    /// Waits until `n` output lines in all contain `needle`; returns how many did (fewer than
    /// `n` only if the output ended or [`TIMEOUT`] passed first).
    pub fn wait_for_count(&mut self, needle: &str, n: usize) -> usize {
        self.wait_for_any_count(&[needle], n)
    }

    /// Like [`ServerProcess::wait_for_count`], counting lines that contain any of `needles`.
    pub fn wait_for_any_count(&mut self, needles: &[&str], n: usize) -> usize {
        let matches = |line: &str| needles.iter().any(|needle| line.contains(needle));
        let mut count = self.seen.iter().filter(|l| matches(l)).count();
        let deadline = Instant::now() + TIMEOUT;
        while count < n && !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    count += usize::from(matches(&line));
                    self.seen.push(line);
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = !self.restart_if_never_started();
                }
            }
        }
        count
    }

    /// Waits for the process to exit (its output pipes close), killing it after [`TIMEOUT`].
    /// Returns the status and all output.
    #[track_caller]
    pub fn wait_exit(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + TIMEOUT;
        while !self.closed {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => {
                    self.closed = !self.restart_if_never_started();
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.child.kill_and_reap();
                    panic!(
                        "server did not exit within {TIMEOUT:?}; output so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
        // The pipes closed; a process that closed them early still has until the deadline.
        let left = deadline.saturating_duration_since(Instant::now());
        let status = match self.child.wait_timeout(left).expect("wait for the server") {
            Some(status) => status,
            None => {
                self.child.kill_and_reap();
                panic!(
                    "server closed its output but did not exit within {TIMEOUT:?}:\n{}",
                    self.seen.join("\n")
                );
            }
        };
        (status, self.seen.join("\n"))
    }

    /// Ends the process at once (SIGKILL on Unix, `TerminateProcess` on Windows) and reaps it:
    /// no graceful stop. Its output is still collected by [`ServerProcess::wait_exit`].
    pub fn kill(&mut self) {
        self.child.kill_and_reap();
    }

    /// Sends a POSIX signal by name: `TERM`, `INT`, `HUP` or `KILL`.
    #[cfg(unix)]
    #[track_caller]
    pub fn signal(&self, name: &str) {
        use rustix::process::{kill_process, Pid, Signal};
        let signal = match name {
            "TERM" => Signal::TERM,
            "INT" => Signal::INT,
            "HUP" => Signal::HUP,
            "KILL" => Signal::KILL,
            other => panic!("no signal {other:?} in this helper"),
        };
        let pid = i32::try_from(self.pid())
            .ok()
            .and_then(Pid::from_raw)
            .expect("a child's pid");
        kill_process(pid, signal).unwrap_or_else(|e| panic!("kill -{name} {pid:?}: {e}"));
    }

    /// POSIX signals do not exist here: tests that send one are ignored on this platform.
    #[cfg(not(unix))]
    #[track_caller]
    pub fn signal(&self, name: &str) {
        panic!("cannot send SIG{name}: no POSIX signals on this platform");
    }
}

/// Starts `bin args... PORT` on a free port and waits for its startup line (`listening on`),
/// trying another port (up to 5 in all) if another process took this one in between. Returns the
/// process, the port and the startup line; panics with the output if it fails otherwise.
#[track_caller]
pub fn start_on_free_port(bin: &Path, args: &[&str]) -> (ServerProcess, u16, String) {
    let (server, port, line) = start_with_retry(Ready::Line("listening on"), |port| {
        let mut all = args.to_vec();
        all.push(port);
        ServerProcess::spawn(bin, &all, &[])
    });
    (server, port, line.unwrap_or_default())
}

/// How [`start_with_retry`] knows the server is up.
#[derive(Debug, Clone, Copy)]
pub enum Ready {
    /// It prints a line containing this.
    Line(&'static str),
}

/// Starts the process `spawn` makes for a port (given as its argument text) on a free port, and
/// waits until it is `ready`. If it exits saying `cannot listen` (another process took the port
/// in between), tries another port, up to 5 in all. Returns the process, the port, and the
/// readiness line for [`Ready::Line`].
#[track_caller]
pub fn start_with_retry(
    ready: Ready,
    mut spawn: impl FnMut(&str) -> ServerProcess,
) -> (ServerProcess, u16, Option<String>) {
    for _ in 0..5 {
        let port = free_port().expect("pick a free port");
        let mut server = spawn(&port.to_string());
        let line = match ready {
            Ready::Line(needle) => server.wait_for_line(needle).map(Some),
        };
        if let Some(line) = line {
            return (server, port, line);
        }
        let (_, output) = server.wait_exit();
        assert!(
            output.contains("cannot listen"),
            "server failed to start:\n{output}"
        );
    }
    panic!("no free port after 5 tries");
}
