#![forbid(unsafe_code)]
//! `--allow` / `--deny`: which peer addresses may connect at all.
//!
//! Rules are networks in CIDR notation, IPv4 or IPv6; a bare address is that one host. A peer
//! matching any deny rule is refused (deny wins). Otherwise, with no allow rule everyone is
//! admitted; with at least one, only peers matching an allow rule are. The engine hands over an
//! IPv4 client of a dual-stack listener as plain IPv4, so `127.0.0.1/32` matches it whichever
//! socket it came in on, and a rule written as an IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`)
//! is read as the IPv4 network it names.
//!
//! A refused connection is closed right after accept. Its log line is written at most once per
//! [`LOG_WINDOW`] per address, with the count of refusals not logged meanwhile, so a scanner cannot
//! flood the log; the table behind that is bounded ([`MAX_REMEMBERED`]).

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::str::FromStr;
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use server_core::{Acceptor, Admission};
use tracing::warn;

/// A network rule: `10.0.0.0/8`, `::1/128`, or a bare address (`192.0.2.7`, one host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rule(IpNet);

impl Rule {
    /// Whether `ip` is in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip)
    }
}

impl FromStr for Rule {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let t = text.trim();
        let net = match t.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => match t.parse::<IpAddr>() {
                Ok(ip) => IpNet::from(ip),
                Err(_) => {
                    return Err(format!(
                        "{text:?} is not an address or a network like 10.0.0.0/8 or ::1/128"
                    ))
                }
            },
        };
        // Host bits are ignored (`10.1.2.3/8` is `10.0.0.0/8`), and shown so in the log.
        let net = net.trunc();
        // Peers arrive as plain IPv4, so a mapped rule must be IPv4 to match them.
        let net = match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => IpNet::V4(
                    Ipv4Net::new(v4, v6.prefix_len() - 96).expect("a prefix of at most 32"),
                ),
                None => IpNet::V6(v6),
            },
            other => other,
        };
        Ok(Rule(net))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<IpAddr> for Rule {
    fn from(ip: IpAddr) -> Self {
        Rule(match ip {
            IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
            IpAddr::V6(v6) => IpNet::V6(Ipv6Net::from(v6)),
        })
    }
}

/// The rules of an access file (`--allow-file`, `--deny-file`): one address or network a line,
/// as [`Rule`] parses them; `#` starts a comment that runs to the end of the line; blank lines
/// are skipped.
///
/// # Errors
///
/// The first line that is not a rule, as `line N: why`.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, String> {
    let mut rules = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let rule = line.split_once('#').map_or(line, |(rule, _)| rule).trim();
        if !rule.is_empty() {
            rules.push(rule.parse().map_err(|e| format!("line {}: {e}", n + 1))?);
        }
    }
    Ok(rules)
}

/// Why a peer was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// It matches this deny rule.
    Denied(Rule),
    /// Allow rules exist and it matches none.
    NotAllowed,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Denied(rule) => write!(f, "matches --deny {rule}"),
            Refusal::NotAllowed => f.write_str("matches no --allow rule"),
        }
    }
}

/// The allow and deny rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    allow: Vec<Rule>,
    deny: Vec<Rule>,
}

impl AccessList {
    /// A list from the `--allow` and `--deny` rules, in any order (deny wins regardless).
    pub fn new(allow: Vec<Rule>, deny: Vec<Rule>) -> Self {
        AccessList { allow, deny }
    }

    /// Whether the list has no rule at all, i.e. admits everyone.
    pub fn is_open(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Admits `ip`, or says why not.
    ///
    /// # Errors
    ///
    /// The [`Refusal`]: a deny rule it matches, or no allow rule it matches.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = ip.to_canonical();
        if let Some(rule) = self.deny.iter().find(|r| r.contains(ip)) {
            return Err(Refusal::Denied(*rule));
        }
        if self.allow.is_empty() || self.allow.iter().any(|r| r.contains(ip)) {
            Ok(())
        } else {
            Err(Refusal::NotAllowed)
        }
    }
}

impl fmt::Display for AccessList {
    /// `allow 10.0.0.0/8, ::1/128; deny 10.9.0.0/16` (either part may be missing).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let join = |rules: &[Rule]| {
            rules
                .iter()
                .map(Rule::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut parts = Vec::new();
        if !self.allow.is_empty() {
            parts.push(format!("allow only {}", join(&self.allow)));
        }
        if !self.deny.is_empty() {
            parts.push(format!("deny {}", join(&self.deny)));
        }
        if parts.is_empty() {
            f.write_str("everyone admitted")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}

/// At most one refusal line per address per this long.
pub const LOG_WINDOW: Duration = Duration::from_secs(60);

/// Addresses whose last refusal line is remembered. When full, entries older than
/// [`LOG_WINDOW`] are forgotten; if it is still full, refusals of new addresses share one line
/// per window instead of one each.
pub const MAX_REMEMBERED: usize = 4096;

/// Decides which refusals are logged: a bounded table of when each address was last logged.
#[derive(Debug, Default)]
pub struct RefusalLog {
    /// Per address: when its last line was written, and refusals since then not logged.
    seen: HashMap<IpAddr, (Instant, u64)>,
    /// While the table is full: when the shared line was last written, and refusals since.
    overflow: Option<(Instant, u64)>,
    /// Not before this instant is a full table pruned again (pruning is O(table)).
    next_prune: Option<Instant>,
}

/// What to log for one refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogDecision {
    /// Log this address's refusal, saying how many earlier ones went unlogged.
    Log {
        /// Refusals of this address since its last line.
        unlogged: u64,
    },
    /// The table is full of recent addresses: log one line for many addresses.
    LogShared {
        /// Refusals of unremembered addresses since the last shared line.
        unlogged: u64,
    },
    /// Stay quiet: this address (or the overflow) was logged within the window.
    Quiet,
}

impl RefusalLog {
    /// Records a refusal of `ip` at `now` and says whether to log it.
    pub fn note(&mut self, ip: IpAddr, now: Instant) -> LogDecision {
        if let Some((last, unlogged)) = self.seen.get_mut(&ip) {
            if now.saturating_duration_since(*last) >= LOG_WINDOW {
                let decision = LogDecision::Log {
                    unlogged: *unlogged,
                };
                (*last, *unlogged) = (now, 0);
                return decision;
            }
            *unlogged += 1;
            return LogDecision::Quiet;
        }
        let prune_due = !matches!(self.next_prune, Some(at) if now < at);
        if self.seen.len() >= MAX_REMEMBERED && prune_due {
            self.seen
                .retain(|_, (last, _)| now.saturating_duration_since(*last) < LOG_WINDOW);
            self.next_prune = Some(now + Duration::from_secs(1));
        }
        if self.seen.len() < MAX_REMEMBERED {
            self.seen.insert(ip, (now, 0));
            return LogDecision::Log { unlogged: 0 };
        }
        match &mut self.overflow {
            Some((last, unlogged)) if now.saturating_duration_since(*last) < LOG_WINDOW => {
                *unlogged += 1;
                LogDecision::Quiet
            }
            slot => {
                let unlogged = slot.map_or(0, |(_, n)| n);
                *slot = Some((now, 0));
                LogDecision::LogShared { unlogged }
            }
        }
    }

    /// Addresses remembered now.
    pub fn remembered(&self) -> usize {
        self.seen.len()
    }
}

/// An [`Acceptor`] that applies an [`AccessList`] before handing the connection to `inner`
/// (plain TCP or TLS): a refused peer is closed at once, before any handshake.
#[derive(Debug)]
pub struct Gated<A> {
    inner: A,
    list: AccessList,
    log: RefusalLog,
}

impl<A: Acceptor> Gated<A> {
    /// `inner` behind `list`.
    pub fn new(inner: A, list: AccessList) -> Self {
        Gated {
            inner,
            list,
            log: RefusalLog::default(),
        }
    }
}

impl<A: Acceptor> Acceptor for Gated<A> {
    type Link = A::Link;

    fn accept(
        &mut self,
        stream: TcpStream,
        peer: SocketAddr,
    ) -> std::io::Result<Admission<A::Link>> {
        let Err(refusal) = self.list.check(peer.ip()) else {
            return self.inner.accept(stream, peer);
        };
        // Closed before the line is written, so whoever reads the line may rely on it.
        drop(stream);
        let ip = peer.ip().to_canonical();
        match self.log.note(ip, Instant::now()) {
            LogDecision::Log { unlogged: 0 } => {
                warn!(%peer, %refusal, "refused {peer}: it {refusal} (access list)");
            }
            LogDecision::Log { unlogged } => {
                warn!(
                    %peer, %refusal, unlogged,
                    "refused {peer}: it {refusal} (access list; {unlogged} more refusals of {ip} \
                     since its last line)"
                );
            }
            LogDecision::LogShared { unlogged } => {
                warn!(
                    %peer, %refusal, unlogged,
                    "refused {peer}: it {refusal} (access list; refusals from many addresses, \
                     {unlogged} unlogged since the last such line; one line a minute until they \
                     stop)"
                );
            }
            LogDecision::Quiet => {}
        }
        Ok(Admission::Refuse)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn access_files_take_one_rule_a_line_with_comments() {
        let text = "# office\n10.0.0.0/8  # whole range\n\n  ::1\n192.0.2.7\n";
        let rules = parse_rules(text).unwrap();
        let shown: Vec<String> = rules.iter().map(Rule::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "::1/128", "192.0.2.7/32"]);
        assert_eq!(parse_rules("# nothing\n\n").unwrap(), []);
        let err = parse_rules("10.0.0.0/8\n10.0.0.0/99\n").unwrap_err();
        assert!(err.starts_with("line 2: "), "{err}");
    }

    fn rule(text: &str) -> Rule {
        text.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn rules_parse_networks_and_bare_hosts_of_both_families() {
        assert_eq!(rule("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(rule("127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(rule("::1").to_string(), "::1/128");
        assert_eq!(rule("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(rule(" 10.1.2.3/8 ").to_string(), "10.0.0.0/8", "host bits");
        assert_eq!(rule("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
        assert_eq!(rule("::ffff:127.0.0.1").to_string(), "127.0.0.1/32");
        for bad in [
            "",
            "10.0.0.0/33",
            "::1/129",
            "10.0.0",
            "localhost",
            "10.0.0.0/",
            "1.2.3.4/8/9",
        ] {
            assert!(bad.parse::<Rule>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn no_rules_admit_everyone() {
        let list = AccessList::default();
        assert!(list.is_open());
        for peer in ["127.0.0.1", "::1", "203.0.113.9", "2001:db8::1"] {
            assert_eq!(list.check(ip(peer)), Ok(()), "{peer}");
        }
        assert_eq!(list.to_string(), "everyone admitted");
    }

    #[test]
    fn allow_rules_admit_only_matching_peers_of_either_family() {
        let list = AccessList::new(vec![rule("10.0.0.0/8"), rule("::1")], vec![]);
        assert_eq!(list.check(ip("10.200.3.4")), Ok(()));
        assert_eq!(list.check(ip("::1")), Ok(()));
        assert_eq!(list.check(ip("11.0.0.1")), Err(Refusal::NotAllowed));
        assert_eq!(list.check(ip("127.0.0.1")), Err(Refusal::NotAllowed));
        assert_eq!(list.check(ip("::2")), Err(Refusal::NotAllowed));
        assert_eq!(list.to_string(), "allow only 10.0.0.0/8, ::1/128");
    }

    #[test]
    fn deny_wins_over_allow() {
        let list = AccessList::new(
            vec![rule("10.0.0.0/8")],
            vec![rule("10.9.0.0/16"), rule("2001:db8::/32")],
        );
        assert_eq!(list.check(ip("10.8.1.1")), Ok(()));
        assert_eq!(
            list.check(ip("10.9.1.1")),
            Err(Refusal::Denied(rule("10.9.0.0/16")))
        );
        // Deny alone: everyone else is admitted.
        let deny_only = AccessList::new(vec![], vec![rule("2001:db8::/32")]);
        assert_eq!(deny_only.check(ip("2001:db9::1")), Ok(()));
        assert_eq!(
            deny_only.check(ip("2001:db8::1")),
            Err(Refusal::Denied(rule("2001:db8::/32")))
        );
        assert_eq!(
            list.to_string(),
            "allow only 10.0.0.0/8; deny 10.9.0.0/16, 2001:db8::/32"
        );
    }

    #[test]
    fn mapped_peers_are_checked_as_ipv4() {
        let list = AccessList::new(vec![rule("127.0.0.0/8")], vec![]);
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        assert_eq!(list.check(mapped), Ok(()));
        assert_eq!(
            list.check(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn each_address_is_logged_once_per_window_with_the_count_it_skipped() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        let (a, b) = (ip("192.0.2.1"), ip("2001:db8::1"));
        assert_eq!(log.note(a, t0), LogDecision::Log { unlogged: 0 });
        assert_eq!(log.note(b, t0), LogDecision::Log { unlogged: 0 });
        for s in 1..=5 {
            assert_eq!(log.note(a, t0 + Duration::from_secs(s)), LogDecision::Quiet);
        }
        assert_eq!(
            log.note(a, t0 + Duration::from_secs(59)),
            LogDecision::Quiet
        );
        assert_eq!(
            log.note(a, t0 + LOG_WINDOW),
            LogDecision::Log { unlogged: 6 }
        );
        assert_eq!(
            log.note(b, t0 + LOG_WINDOW),
            LogDecision::Log { unlogged: 0 }
        );
        assert_eq!(
            log.note(a, t0 + LOG_WINDOW + Duration::from_secs(1)),
            LogDecision::Quiet
        );
    }

    #[test]
    fn the_table_stays_bounded_and_a_flood_of_new_addresses_shares_one_line() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        let addr = |i: usize| IpAddr::V6(Ipv6Addr::from((0x2001_0db8_u128 << 96) | i as u128));
        let mut logged = 0;
        for i in 0..MAX_REMEMBERED * 3 {
            match log.note(addr(i), t0 + Duration::from_millis(i as u64 / 100)) {
                LogDecision::Quiet => {}
                _ => logged += 1,
            }
        }
        assert_eq!(log.remembered(), MAX_REMEMBERED);
        // One line per remembered address, then one shared line for all the rest.
        assert_eq!(logged, MAX_REMEMBERED + 1);
        // A minute later the old entries make room again.
        let later = t0 + LOG_WINDOW * 2;
        assert_eq!(
            log.note(ip("192.0.2.1"), later),
            LogDecision::Log { unlogged: 0 }
        );
        assert!(log.remembered() < MAX_REMEMBERED);
        // The shared line, when it comes again, counts what it skipped.
        let mut log = RefusalLog::default();
        let mut next = 0..;
        let mut fresh = || addr(next.next().unwrap());
        for _ in 0..MAX_REMEMBERED {
            log.note(fresh(), t0);
        }
        assert_eq!(
            log.note(fresh(), t0),
            LogDecision::LogShared { unlogged: 0 }
        );
        assert_eq!(log.note(fresh(), t0), LogDecision::Quiet);
        assert_eq!(log.note(fresh(), t0), LogDecision::Quiet);
        let later = t0 + LOG_WINDOW + Duration::from_secs(1);
        for _ in 0..MAX_REMEMBERED {
            assert!(matches!(log.note(fresh(), later), LogDecision::Log { .. }));
        }
        assert_eq!(
            log.note(fresh(), later),
            LogDecision::LogShared { unlogged: 2 }
        );
    }
}
