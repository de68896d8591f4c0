//! Memory and CPU time of a process or thread, from Linux's `/proc`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Something whose resource use is measured: a server process, or the in-tool relay's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Meter {
    /// A whole process.
    Process(u32),
    /// One thread of this process (its task id).
    Thread(u32),
    /// Several processes measured together (a cluster's nodes and its NATS server): the first
    /// `len` of `pids`. CPU times and memory are summed.
    Group {
        /// Process ids.
        pids: [u32; MAX_GROUP],
        /// How many of them are used.
        len: usize,
    },
}

/// Most processes in a [`Meter::Group`].
pub(crate) const MAX_GROUP: usize = 8;

impl Meter {
    /// A group of up to [`MAX_GROUP`] processes; `None` for more.
    pub(crate) fn group(list: &[u32]) -> Option<Meter> {
        let mut pids = [0; MAX_GROUP];
        pids.get_mut(..list.len())?.copy_from_slice(list);
        Some(Meter::Group {
            pids,
            len: list.len(),
        })
    }

    /// The members of a group, or the one process or thread.
    fn parts(self) -> Vec<Meter> {
        match self {
            Meter::Group { pids, len } => pids[..len].iter().map(|&p| Meter::Process(p)).collect(),
            one => vec![one],
        }
    }

    fn dir(self) -> PathBuf {
        match self {
            Meter::Process(pid) => PathBuf::from(format!("/proc/{pid}")),
            Meter::Thread(tid) => PathBuf::from(format!("/proc/self/task/{tid}")),
            Meter::Group { .. } => unreachable!("a group has no /proc directory of its own"),
        }
    }

    /// User plus system CPU time so far, in seconds.
    pub(crate) fn cpu_secs(self) -> Option<f64> {
        if let Meter::Group { .. } = self {
            return self.parts().into_iter().map(Meter::cpu_secs).sum();
        }
        let text = std::fs::read_to_string(self.dir().join("stat")).ok()?;
        Some(parse_stat_ticks(&text)? as f64 / clock_ticks() as f64)
    }

    /// Resident memory now (`VmRSS`) and at its peak (`VmHWM`), in KiB. `None` for a thread,
    /// which shares the tool's memory. A group sums its members' (peaks need not coincide, so
    /// its peak is an upper bound).
    pub(crate) fn memory_kib(self) -> Option<(u64, u64)> {
        match self {
            Meter::Thread(_) => return None,
            Meter::Group { .. } => {
                return self
                    .parts()
                    .into_iter()
                    .map(Meter::memory_kib)
                    .try_fold((0, 0), |(r, h), m| m.map(|(rss, hwm)| (r + rss, h + hwm)))
            }
            Meter::Process(_) => {}
        }
        let text = std::fs::read_to_string(self.dir().join("status")).ok()?;
        Some((
            parse_status_kib(&text, "VmRSS:")?,
            parse_status_kib(&text, "VmHWM:")?,
        ))
    }
}

/// This process's user plus system CPU time so far, in seconds (every thread).
pub(crate) fn own_cpu_secs() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(parse_stat_ticks(&text)? as f64 / clock_ticks() as f64)
}

/// The calling thread's task id, for [`Meter::Thread`].
pub(crate) fn current_tid() -> Option<u32> {
    // `/proc/thread-self` links to `<pid>/task/<tid>`.
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// `utime + stime` in clock ticks from the text of a `/proc/<pid>/stat` file. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted from its last `)`.
pub(crate) fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt, utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `kB` field such as `VmRSS:` from the text of a `/proc/<pid>/status` file.
pub(crate) fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails, Linux's value everywhere).
fn clock_ticks() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let stat = "4092 (my (odd) name) S 1 4092 4092 0 -1 4194560 180 0 0 0 17 4 0 0 20 0 1 0 \
                    123 4321 56 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(21));
        assert_eq!(parse_stat_ticks("garbage"), None);
    }

    #[test]
    #[cfg_attr(not(target_os = "linux"), ignore = "reads Linux's /proc")]
    fn a_group_sums_its_members() {
        let me = std::process::id();
        let one = Meter::Process(me);
        let two = Meter::group(&[me, me]).expect("two fit");
        let (rss1, _) = one.memory_kib().unwrap();
        let (rss2, _) = two.memory_kib().unwrap();
        // The same process twice, read twice: about double (it may grow in between).
        assert!(rss2 >= 2 * rss1 - rss1 / 4, "{rss1} {rss2}");
        assert!(two.cpu_secs().unwrap() >= one.cpu_secs().unwrap());
        assert!(Meter::group(&[me; MAX_GROUP + 1]).is_none());
    }

    #[test]
    fn status_fields_in_kib() {
        let status =
            "Name:\tserver\nVmPeak:\t   9000 kB\nVmHWM:\t    3900 kB\nVmRSS:\t    3812 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(3812));
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(3900));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
    }

    #[test]
    #[cfg_attr(not(target_os = "linux"), ignore = "reads Linux's /proc")]
    fn reads_this_process_and_thread() {
        let me = Meter::Process(std::process::id());
        assert!(me.cpu_secs().is_some());
        let (rss, hwm) = me.memory_kib().expect("own status");
        assert!(rss > 0 && hwm >= rss);
        let tid = current_tid().expect("own tid");
        assert!(Meter::Thread(tid).cpu_secs().is_some());
        assert!(own_cpu_secs().is_some());
    }
}
