//! A WAN on loopback for the region tests ([`WanProxy`]): TCP proxies between one region's
//! leafnode remotes and the other region's leafnode listeners, adding a delay each way, and
//! able to cut the link (a partition: every connection dropped, every new one refused until
//! [`WanProxy::heal`]).
//!
//! Owns its own tokio runtime (a thread pool of [`PROXY_THREADS`]), so a synchronous test can
//! hold one. Never interprets the bytes it carries and never reorders them: each direction of
//! a connection is one ordered queue, each chunk released `delay_ms` after it was read.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The proxy's runtime threads.
pub const PROXY_THREADS: usize = 2;
/// The largest chunk read at once, in bytes.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks in flight in one direction of one connection (read, not yet written): bounded, so a
/// stalled reader slows the writer (TCP back-pressure) instead of growing a queue.
const CHUNKS_IN_FLIGHT: usize = 1_024;

/// What every connection task of the proxy shares.
struct Shared {
    /// One-way delay in milliseconds, read for every chunk (so it can change while running).
    delay_ms: AtomicU64,
    /// While set, connections are refused (accepted and closed at once).
    cut: AtomicBool,
    /// The tasks of every live connection, aborted by a cut (dropping their sockets).
    /// A std mutex: held only to push or drain, never across an await.
    conns: Mutex<Vec<JoinHandle<()>>>,
    /// Connections accepted and forwarded since the start.
    accepted: AtomicU64,
}

/// TCP proxies, one listener per target, all cut and healed together (one WAN link).
pub struct WanProxy {
    /// Runs the listeners and connections; dropped last (with the proxy).
    _runtime: tokio::runtime::Runtime,
    shared: Arc<Shared>,
    /// (listening address, target) per proxied server.
    routes: Vec<(SocketAddr, SocketAddr)>,
    listeners: Vec<JoinHandle<()>>,
}

impl WanProxy {
    /// Proxies to each of `targets` on a free loopback port, `delay_ms` each way; panics if it
    /// cannot bind (for tests).
    pub fn start(targets: &[SocketAddr], delay_ms: u64) -> WanProxy {
        assert!(
            !targets.is_empty(),
            "a proxy forwards to at least one server"
        );
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(PROXY_THREADS)
            .thread_name("wan-proxy")
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let shared = Arc::new(Shared {
            delay_ms: AtomicU64::new(delay_ms),
            cut: AtomicBool::new(false),
            conns: Mutex::new(Vec::new()),
            accepted: AtomicU64::new(0),
        });
        let mut routes = Vec::new();
        let mut listeners = Vec::new();
        for &target in targets {
            let listener = runtime
                .block_on(TcpListener::bind("127.0.0.1:0"))
                .expect("bind the proxy's port");
            let addr = listener.local_addr().expect("the proxy's address");
            routes.push((addr, target));
            let shared = shared.clone();
            listeners.push(runtime.spawn(accept_loop(listener, target, shared)));
        }
        WanProxy {
            _runtime: runtime,
            shared,
            routes,
            listeners,
        }
    }

    /// The address to dial instead of `targets[i]`.
    pub fn addr(&self, i: usize) -> SocketAddr {
        self.routes[i].0
    }

    /// Every listening address, in the order of the targets.
    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.routes.iter().map(|(a, _)| *a).collect()
    }

    /// Sets the one-way delay for every chunk read from now on.
    pub fn set_delay_ms(&self, delay_ms: u64) {
        self.shared.delay_ms.store(delay_ms, Ordering::SeqCst);
    }

    pub fn delay_ms(&self) -> u64 {
        self.shared.delay_ms.load(Ordering::SeqCst)
    }

    /// Cuts the link: drops every connection (both ends see it closed) and refuses new ones
    /// until [`WanProxy::heal`].
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        let conns: Vec<_> = std::mem::take(&mut *self.shared.conns.lock().unwrap());
        for conn in conns {
            conn.abort();
        }
    }

    /// Accepts connections again.
    pub fn heal(&self) {
        self.shared.cut.store(false, Ordering::SeqCst);
    }

    pub fn is_cut(&self) -> bool {
        self.shared.cut.load(Ordering::SeqCst)
    }

    /// Connections accepted and forwarded since the start.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for WanProxy {
    fn drop(&mut self) {
        for l in &self.listeners {
            l.abort();
        }
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        if shared.cut.load(Ordering::SeqCst) {
            drop(inbound);
            continue;
        }
        let task_shared = shared.clone();
        let task = tokio::spawn(async move {
            let Ok(outbound) = TcpStream::connect(target).await else {
                return;
            };
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (in_read, in_write) = inbound.into_split();
            let (out_read, out_write) = outbound.into_split();
            let there = pipe(in_read, out_write, task_shared.clone());
            let back = pipe(out_read, in_write, task_shared);
            // Either direction ending (a close, an error) ends the connection.
            tokio::select! {
                _ = there => {}
                _ = back => {}
            }
        });
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let mut conns = shared.conns.lock().unwrap();
        conns.retain(|c| !c.is_finished());
        conns.push(task);
    }
}

/// Carries one direction: a reader stamps each chunk with its release time, a writer writes it
/// then, in order.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    shared: Arc<Shared>,
) {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNKS_IN_FLIGHT);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let due =
                Instant::now() + Duration::from_millis(shared.delay_ms.load(Ordering::SeqCst));
            if tx.send((due, buf[..n].to_vec())).await.is_err() {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
