//! A three-node JetStream cluster for the tests of this crate, started from
//! `scripts/nats-cluster.sh` on free ports (the server as crates/nats/src/locate.rs finds it),
//! with what the fault tests need: the pid of each node, SIGKILL of one, its restart, and the
//! leader of a stream. (The same helper as in tests/jetstream.rs, plus the faults.)

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use mltrader_nats::{Nats, NatsConfig, Safety};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A base port whose cluster ports (base..+2, +100..+102, +200..+202) are free now.
fn free_base_port() -> u16 {
    let start = 20_000 + (std::process::id() % 300) as u16 * 100 + 37;
    (0..400u16)
        .map(|i| 20_000 + (start - 20_000 + i * 97) % 40_000)
        .find(|base| {
            [0u16, 100, 200]
                .iter()
                .all(|o| (0..3u16).all(|i| TcpListener::bind(("127.0.0.1", base + o + i)).is_ok()))
        })
        .expect("no free ports for a cluster")
}

pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub urls: Vec<String>,
    pub monitors: Vec<String>,
    exe: PathBuf,
}

impl Cluster {
    /// Starts a cluster of its own, or None (after a loud message) without a server.
    pub fn start_own() -> Option<Cluster> {
        let exe = mltrader_nats::locate::nats_server_for_test(
            &workspace_root(),
            "the JetStream backend",
        )?;
        Some(Cluster::start(exe))
    }

    fn start(exe: PathBuf) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let mut cluster = Cluster {
            dir,
            urls: Vec::new(),
            monitors: Vec::new(),
            exe,
        };
        let base = free_base_port();
        cluster.script("start", Some(base));
        let env = std::fs::read_to_string(cluster.dir.path().join("cluster.env")).unwrap();
        let value = |key: &str| -> Vec<String> {
            env.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap()
                .split(',')
                .map(String::from)
                .collect()
        };
        cluster.urls = value("NATS_URLS=");
        cluster.monitors = value("NATS_MONITOR_URLS=");
        cluster
    }

    fn script(&self, command: &str, base: Option<u16>) {
        let mut cmd = Command::new("bash");
        cmd.arg(workspace_root().join("scripts/nats-cluster.sh"))
            .arg(command)
            .arg(self.dir.path())
            .env("MLTRADER_NATS_SERVER", &self.exe);
        let base = base.or_else(|| {
            let port = self.urls.first()?.rsplit(':').next()?.parse().ok()?;
            Some(port)
        });
        if let Some(base) = base {
            cmd.env("NATS_BASE_PORT", base.to_string());
        }
        let status = cmd.status().unwrap();
        assert!(status.success(), "scripts/nats-cluster.sh {command} failed");
    }

    pub fn creds(&self) -> PathBuf {
        self.dir.path().join("creds")
    }

    pub fn config(&self, node: &str) -> NatsConfig {
        NatsConfig {
            urls: self.urls.clone(),
            creds_file: self.creds(),
            monitor_urls: self.monitors.clone(),
            node: node.into(),
            safety: Safety::Required,
        }
    }

    pub fn connect(&self, node: &str) -> Nats {
        Nats::connect(&self.config(node)).unwrap()
    }

    /// A raw async-nats client and JetStream context, for what the backend does not expose.
    pub async fn raw(&self) -> async_nats::jetstream::Context {
        let text = std::fs::read_to_string(self.creds()).unwrap();
        let field = |key: &str| -> String {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
                .unwrap()
                .trim_end_matches('"')
                .to_string()
        };
        let client =
            async_nats::ConnectOptions::with_user_and_password(field("user"), field("password"))
                .connect(self.urls.clone())
                .await
                .unwrap();
        async_nats::jetstream::new(client)
    }

    /// The server name (`n1`..`n3`) of the leader of `stream`, once it has one.
    pub async fn leader_of(&self, stream: &str) -> String {
        let js = self.raw().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = js.get_stream(stream).await {
                if let Ok(info) = s.info().await {
                    if let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone()) {
                        return leader;
                    }
                }
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
        let pid = std::fs::read_to_string(self.dir.path().join(node).join("pid")).unwrap();
        let status = Command::new("kill")
            .arg("-KILL")
            .arg(pid.trim())
            .status()
            .unwrap();
        assert!(status.success(), "kill -KILL {node}");
    }

    /// Starts again the servers that are not running.
    pub fn restart_dead(&self) {
        self.script("start", None);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(workspace_root().join("scripts/nats-cluster.sh"))
            .arg("stop")
            .arg(self.dir.path())
            .env("MLTRADER_NATS_SERVER", &self.exe)
            .status();
    }
}

/// The cluster the running tests of one test binary share (started by the first, stopped
/// after the last).
pub fn shared() -> Option<Arc<Cluster>> {
    static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    let exe =
        mltrader_nats::locate::nats_server_for_test(&workspace_root(), "the JetStream backend")?;
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = shared.upgrade() {
        return Some(c);
    }
    let c = Arc::new(Cluster::start(exe));
    *shared = Arc::downgrade(&c);
    Some(c)
}
