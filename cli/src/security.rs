//! `--tls-cert`, `--tls-key`, `--tls-client-ca`, `--handshake-timeout`, `--allow`, `--deny`,
//! `--allow-file`, `--deny-file`: how connections get in. [`Security::door`] reads the files each
//! time it is called: at start, and again on every reload (SIGHUP, [`crate::reload`]). Builds
//! without the `tls` feature know the TLS options and say so when they are used; access lists
//! work in every build.

use std::path::PathBuf;
use std::time::Duration;

use relay_access::{AccessList, Gated, Rule};
use relay_tls::Entry;
use server_core::PlainTcp;
use tracing::info;

use crate::args::parse_interval;
use crate::describe;

/// The options that decide who gets in and how.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Security {
    /// Serve TLS only, with this PEM certificate chain (the server's certificate first); needs
    /// --tls-key. Every client must then complete a TLS handshake (plaintext clients are
    /// dropped). Default: plain TCP.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,

    /// The PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,

    /// Mutual TLS: admit only clients that present a certificate issued by a CA in this PEM
    /// file. Default: clients are not asked for certificates.
    #[arg(long, value_name = "FILE")]
    tls_client_ca: Option<PathBuf>,

    /// Cut a TLS client whose handshake is not done within SECS seconds; it never joins the
    /// room meanwhile.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = parse_interval)]
    pub(crate) handshake_timeout: Duration,

    /// Admit only peers in this network: CIDR such as 10.0.0.0/8 or ::1/128; a bare address is
    /// one host. Repeatable. Default: every peer that no --deny matches.
    #[arg(long = "allow", value_name = "CIDR")]
    allow: Vec<Rule>,

    /// Refuse peers in this network (CIDR or a bare address); wins over --allow. Repeatable.
    /// Refused peers are closed right after accept, logged at most once a minute per address.
    #[arg(long = "deny", value_name = "CIDR")]
    deny: Vec<Rule>,

    /// Add the --allow rules in FILE: one CIDR or address a line, `#` comments. Re-read on
    /// SIGHUP (Unix), for new connections. Repeatable.
    #[arg(long, value_name = "FILE")]
    allow_file: Vec<PathBuf>,

    /// Add the --deny rules in FILE, written as for --allow-file. Re-read on SIGHUP (Unix).
    /// Repeatable.
    #[arg(long, value_name = "FILE")]
    deny_file: Vec<PathBuf>,
}

/// What the engine runs with: the access list around plain TCP or TLS.
pub(crate) type Door = Gated<Entry>;

impl Security {
    /// The acceptor: loads the TLS files (a missing, unreadable or mismatched one is an error
    /// naming it) and wraps it in the access list. `Err` is the message for the terminal.
    /// Also returns the access list it holds, for the log.
    pub(crate) fn door(&self) -> Result<(Door, AccessList), String> {
        let list = self.access_list()?;
        Ok((Gated::new(self.entry()?, list.clone()), list))
    }

    /// The --allow/--deny rules merged with those of the files, read now.
    fn access_list(&self) -> Result<AccessList, String> {
        let merged = |rules: &[Rule], files: &[PathBuf]| -> Result<Vec<Rule>, String> {
            let mut all = rules.to_vec();
            for file in files {
                let text = std::fs::read_to_string(file)
                    .map_err(|e| format!("cannot read {}: {}", file.display(), describe(&e)))?;
                all.extend(
                    relay_access::parse_rules(&text)
                        .map_err(|e| format!("{}: {e}", file.display()))?,
                );
            }
            Ok(all)
        };
        Ok(AccessList::new(
            merged(&self.allow, &self.allow_file)?,
            merged(&self.deny, &self.deny_file)?,
        ))
    }

    /// The acceptor of the HTTP port (`--http`): the same access list, and TLS with the chat
    /// port's certificate when `tls` (`--http-tls`), but never asking for client certificates:
    /// health probes and scrapers have none. Read again on every reload, like [`Security::door`].
    pub(crate) fn http_door(&self, tls: bool) -> Result<Door, String> {
        let entry = match tls {
            true => self.entry_with(None)?,
            false => Entry::Plain(PlainTcp),
        };
        Ok(Gated::new(entry, self.access_list()?))
    }

    fn entry(&self) -> Result<Entry, String> {
        self.entry_with(self.tls_client_ca.clone())
    }

    #[cfg(feature = "tls")]
    fn entry_with(&self, client_ca: Option<PathBuf>) -> Result<Entry, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            return Ok(Entry::Plain(PlainTcp));
        };
        let files = relay_tls::tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca,
        };
        relay_tls::tls::TlsAcceptor::from_files(&files)
            .map(Entry::Tls)
            .map_err(|e| e.to_string())
    }

    #[cfg(not(feature = "tls"))]
    fn entry_with(&self, _client_ca: Option<PathBuf>) -> Result<Entry, String> {
        if self.tls_cert.is_some() {
            return Err("this build has no TLS; rebuild with `--features tls`".into());
        }
        Ok(Entry::Plain(PlainTcp))
    }

    /// One line each for TLS and the access list, when they are on; plain `server <port>`
    /// logs neither.
    pub(crate) fn log_startup(&self, list: &AccessList) {
        if let Some(cert) = &self.tls_cert {
            let clients = match &self.tls_client_ca {
                Some(ca) => format!("client certificates required (CA {})", ca.display()),
                None => "no client certificates asked for".into(),
            };
            let timeout_s = self.handshake_timeout.as_secs_f64();
            info!(
                tls = true,
                mutual = self.tls_client_ca.is_some(),
                "TLS on: certificate {}; {clients}; handshake timeout {timeout_s} s",
                cert.display()
            );
        }
        if !list.is_open() {
            info!("access list: {list}; refused peers are closed at once");
        }
    }
}
