//! How many clients at once: `--max-clients`, or by default what the descriptor limit and the
//! backend leave room for.

#[cfg(unix)]
use tracing::warn;

/// Descriptors kept back from `--max-clients`' default: stdio, the listener and its spare, the
/// backend's own (an epoll instance, a waker pair) and a margin for the log and the runtime.
#[cfg(unix)]
const FD_RESERVE: u64 = 16;

/// `requested` (`--max-clients`), or what the descriptor limit allows. The engine lowers it to
/// what the backend holds (`Config::client_limit`).
pub(crate) fn max_clients(requested: Option<u64>) -> usize {
    let max = requested.unwrap_or_else(descriptor_budget);
    usize::try_from(max).unwrap_or(usize::MAX)
}

/// Clients the descriptor limit leaves room for, after raising the soft limit to the hard one
/// (as Go's runtime does): each client costs one descriptor.
#[cfg(unix)]
fn descriptor_budget() -> u64 {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(e) => {
            warn!(error = %e, "cannot read or raise the descriptor limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    };
    limit.saturating_sub(FD_RESERVE).max(1)
}

/// Windows has no per-process socket limit to size against; the backend's capacity applies.
#[cfg(not(unix))]
fn descriptor_budget() -> u64 {
    u64::MAX
}
