//! The three-node JetStream cluster of this crate's fault tests: `mltrader_nats::testing::
//! TestCluster` (the one cluster helper of every JetStream test), shared by the tests of one
//! binary, with what those tests ask of it by server name (`n1`..`n3`): the leader of a stream,
//! SIGKILL of one server, and its restart.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mltrader_nats::testing::TestCluster;
use mltrader_nats::Nats;

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub struct Cluster {
    pub inner: TestCluster,
    /// The servers killed by [`Cluster::kill`], restarted by [`Cluster::restart_dead`].
    killed: Mutex<Vec<usize>>,
}

impl Cluster {
    /// Starts a cluster of its own, or None (after a loud message) without a server.
    pub fn start_own() -> Option<Cluster> {
        let exe = mltrader_nats::locate::nats_server_for_test(
            &workspace_root(),
            "the JetStream backend",
        )?;
        Some(Cluster {
            inner: TestCluster::start(&workspace_root(), exe),
            killed: Mutex::new(Vec::new()),
        })
    }

    pub fn connect(&self, node: &str) -> Nats {
        self.inner.connect(node)
    }

    /// A raw async-nats client and JetStream context, for what the backend does not expose.
    pub async fn raw(&self) -> async_nats::jetstream::Context {
        let creds = mltrader_nats::Credentials::load(&self.inner.creds()).unwrap();
        let client = async_nats::ConnectOptions::with_user_and_password(creds.user, creds.password)
            .connect(self.inner.urls().to_vec())
            .await
            .unwrap();
        async_nats::jetstream::new(client)
    }

    /// The server name (`n1`..`n3`) of the leader of `stream`, once it has one.
    pub async fn leader_of(&self, stream: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(i) = self.inner.stream_leader(stream) {
                return TestCluster::server_name(i);
            }
            assert!(
                Instant::now() < deadline,
                "{stream} has no leader after 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILLs server `node` (`n1`..`n3`).
    pub fn kill(&self, node: &str) {
        let i = (1..=3)
            .find(|&i| TestCluster::server_name(i) == node)
            .unwrap_or_else(|| panic!("no server {node}"));
        self.inner.kill_server(i);
        self.killed.lock().unwrap().push(i);
    }

    /// Starts again the servers killed.
    pub fn restart_dead(&self) {
        for i in self.killed.lock().unwrap().drain(..) {
            self.inner.restart_server(i);
        }
    }
}

/// The cluster the running tests of one test binary share (started by the first, stopped
/// after the last).
pub fn shared() -> Option<Arc<Cluster>> {
    static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = shared.upgrade() {
        return Some(c);
    }
    let c = Arc::new(Cluster::start_own()?);
    *shared = Arc::downgrade(&c);
    Some(c)
}
