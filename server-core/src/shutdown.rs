//! Stopping a running relay from another thread (a signal handler, a test).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::backend::Wake;
#[cfg(doc)]
use crate::Backend;

/// Asks a running [`run`](crate::run) to stop, from any thread. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown {
    inner: Arc<ShutdownInner>,
}

struct ShutdownInner {
    requested: AtomicBool,
    waker: Box<dyn Wake>,
}

impl Shutdown {
    /// A handle that wakes the loop through `waker` (from [`Backend::waker`]).
    pub fn new(waker: impl Wake) -> Self {
        Shutdown {
            inner: Arc::new(ShutdownInner {
                requested: AtomicBool::new(false),
                waker: Box::new(waker),
            }),
        }
    }

    /// Requests the stop and wakes the loop. A flag alone would not do: `wait` retries `EINTR`,
    /// so only the waker makes it return.
    ///
    /// # Errors
    ///
    /// The waker's error; the flag is set regardless and the loop sees it on its next turn.
    pub fn request(&self) -> io::Result<()> {
        self.inner.requested.store(true, Ordering::SeqCst);
        self.inner.waker.wake()
    }

    /// Whether a stop was requested.
    pub fn is_requested(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.is_requested())
            .finish_non_exhaustive()
    }
}
