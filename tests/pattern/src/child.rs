//! A child process that cannot outlive the test or benchmark run that started it.

use std::ops::{Deref, DerefMut};
use std::process::Child;

/// Owns a [`Child`]: dropping it kills the process if it still runs and reaps it, so a failed
/// test or an aborted benchmark run leaves neither a running server nor a zombie behind.
#[derive(Debug)]
pub struct ChildGuard(Child);

impl ChildGuard {
    /// Takes ownership of `child`.
    pub fn new(child: Child) -> ChildGuard {
        ChildGuard(child)
    }

    /// Kills the process (SIGKILL on Unix, `TerminateProcess` on Windows) unless it has already
    /// exited, and reaps it. Errors are ignored: the process is gone either way.
    pub fn kill_and_reap(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

impl Deref for ChildGuard {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.0
    }
}

impl DerefMut for ChildGuard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill_and_reap();
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::path::Path;
    use std::process::{Command, Stdio};

    #[test]
    fn a_dropped_guard_kills_and_reaps_its_process() {
        let child = Command::new("sleep")
            .arg("30")
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        let guard = ChildGuard::new(child);
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(guard);
        // Reaped: the pid no longer names our child (no zombie left behind).
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(!stat.contains("(sleep)"), "still there: {stat}");
    }
}
