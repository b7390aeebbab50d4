//! Ending the long answers when the server stops: event streams and landing waits would
//! otherwise keep their connections open, and a graceful shutdown waits for every connection.
//!
//! Owns the "stopping" flag; never stops the mesh or the listener itself (the serve command
//! does, once the connections are done).

use tokio::sync::watch;

/// Set once, when the server starts stopping.
pub struct Stopping {
    tx: watch::Sender<bool>,
}

impl Default for Stopping {
    fn default() -> Stopping {
        Stopping {
            tx: watch::channel(false).0,
        }
    }
}

impl Stopping {
    /// Ends every stream and wait: they answer `shutting_down`.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_set(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the server stops (at once if it already does).
    pub fn wait(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.tx.subscribe();
        async move {
            // An error means the sender is gone: the server is gone too.
            let _ = rx.wait_for(|stopping| *stopping).await;
        }
    }

    /// Triggers on Ctrl-C or SIGTERM (the signals `mltrader serve` stops on), from the moment
    /// of this call on. Must be called inside a tokio runtime.
    pub fn on_signals(self: &std::sync::Arc<Stopping>) {
        let me = self.clone();
        let signalled = stop_signal();
        tokio::spawn(async move {
            signalled.await;
            me.trigger();
        });
    }
}

/// Listens for Ctrl-C and SIGTERM from the moment of this call, and resolves on the first.
///
/// The listeners are registered here, not when the answer is first polled: a signal that
/// arrives in between would otherwise go to nobody, and `mltrader serve`, SIGTERMed right after
/// it printed its address, ran on (it did, before this was so). Must be called inside a tokio
/// runtime.
pub fn stop_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        // A signal that cannot be listened to (the runtime refused) is not waited for.
        async fn first(signal: Option<Signal>) {
            match signal {
                Some(mut s) => drop(s.recv().await),
                None => std::future::pending().await,
            }
        }
        let interrupt = first(signal(SignalKind::interrupt()).ok());
        let terminate = first(signal(SignalKind::terminate()).ok());
        async move {
            tokio::select! {
                () = interrupt => {},
                () = terminate => {},
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
