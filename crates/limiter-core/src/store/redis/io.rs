//! The thread a Redis store's calls run on: a current-thread Tokio runtime of its own.
//!
//! Why a thread of its own: the circuit breaker judges Redis by how long its calls take,
//! timed from when a call is written to when its reply is read. Timed on the
//! application's runtime, that includes the time the runtime takes to get round to the
//! connection's task and to the caller's: under a flood of requests, thousands of tasks
//! are ready before them, and a healthy Redis looks slow, trips the breaker and hands
//! every decision to the failure mode (fail open: no limit at all) at the moment the
//! limiter exists for. Here nothing else runs, so the clock measures Redis and the
//! network. The thread ends when the last handle to it is dropped.

use std::future::Future;
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::error::{Error, StoreError, Unavailable};

/// A handle to the store's I/O thread; clones share it.
#[derive(Clone)]
pub(crate) struct IoThread {
    inner: Arc<Running>,
}

struct Running {
    handle: Handle,
    /// Dropped with the last handle: the thread's `block_on` returns, and the runtime
    /// is dropped there, outside any async context.
    _stop: oneshot::Sender<()>,
}

impl IoThread {
    /// Starts the thread and its runtime.
    pub(crate) fn start() -> Result<IoThread, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("ratelimit-redis-io")
            .build()
            .map_err(|_| StoreError::Unavailable(Unavailable::IoStopped))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("ratelimit-redis-io".into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(|_| StoreError::Unavailable(Unavailable::IoStopped))?;
        Ok(IoThread {
            inner: Arc::new(Running {
                handle,
                _stop: stop,
            }),
        })
    }

    /// Spawns `task` on the I/O thread.
    pub(crate) fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.inner.handle.spawn(task));
    }

    /// Runs `task` on the I/O thread and waits for its result from any runtime.
    pub(crate) async fn run<T, F>(&self, task: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        self.inner
            .handle
            .spawn(task)
            .await
            .map_err(|_| Error::Store(StoreError::Unavailable(Unavailable::IoStopped)))?
    }
}
