//! The runtime the NATS client runs on, and the bridge from the store's blocking traits to it.
//!
//! The storage traits are blocking (a log's committer is a plain thread), and async-nats needs
//! a tokio runtime. This module owns a small runtime of its own, so that the blocking calls
//! work from any thread: a committer thread, a test, or a thread of the caller's runtime
//! (which a `block_on` on the caller's runtime would refuse). It never holds a lock while it
//! waits.

use std::future::Future;

use crate::NatsError;

/// A runtime of its own for the NATS client; dropping it stops its tasks in the background
/// (a drop inside another runtime must not block).
pub struct Bridge {
    runtime: Option<tokio::runtime::Runtime>,
}

/// The runtime's worker threads: the client's I/O and the publishes in flight are light.
const WORKER_THREADS: usize = 2;

impl Bridge {
    pub fn new() -> Result<Bridge, NatsError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("nats")
            .enable_all()
            .build()
            .map_err(|e| NatsError::Runtime(e.to_string()))?;
        Ok(Bridge {
            runtime: Some(runtime),
        })
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.runtime
            .as_ref()
            .expect("the runtime lives until the bridge is dropped")
            .handle()
    }

    /// Starts `future` on the bridge's runtime and returns at once: for work that outlives a
    /// call (a reader of pair subjects) or that a caller's own runtime awaits through the
    /// handle (a publish), so that it never runs on, nor blocks, the caller's workers.
    pub fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.handle().spawn(future)
    }

    /// Runs `future` on the bridge's runtime and blocks the calling thread until it is done.
    pub fn run<F>(&self, future: F) -> Result<F::Output, NatsError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let (done, result) = std::sync::mpsc::sync_channel(1);
        self.handle().spawn(async move {
            let _ = done.send(future.await);
        });
        result
            .recv()
            .map_err(|_| NatsError::Runtime("the NATS runtime stopped".into()))
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
