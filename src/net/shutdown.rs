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

    /// Triggers on Ctrl-C or SIGTERM (the signals `mltrader serve` stops on). Must be called
    /// inside a tokio runtime.
    pub fn on_signals(self: &std::sync::Arc<Stopping>) {
        let me = self.clone();
        tokio::spawn(async move {
            stop_signal().await;
            me.trigger();
        });
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
