//! A three-node JetStream cluster on loopback for tests and benchmarks ([`TestCluster`]),
//! started and stopped with `scripts/nats-cluster.sh` (the same cluster an operator starts by
//! hand: routes, `sync_interval: always`, a user and password): the one place the JetStream
//! tests, the whole-binary tests and `mltrader-bench jetstream` get a cluster from. Also what
//! the storm test needs to hurt it: the pid of each server, SIGKILL of one, restarting the
//! stopped ones, and which server leads a stream ([`TestCluster::stream_leader`]).
//!
//! Behind the `testing` feature: never part of the product. Never installs nats-server (see
//! [`super::locate`]) and never touches a cluster it did not start.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{NatsConfig, Safety};

/// The servers of a test cluster.
pub const SERVERS: usize = 3;
/// Port offsets of the script: clients at BASE.., routes at BASE+100.., monitoring at BASE+200..
const PORT_OFFSETS: [u16; 3] = [0, 100, 200];
/// The lowest base port tried for a cluster on free ports.
const FIRST_BASE_PORT: u16 = 20_000;
/// How long a monitoring request may take, in milliseconds.
const MONITOR_TIMEOUT_MS: u64 = 2_000;

/// A cluster from scripts/nats-cluster.sh, stopped when dropped.
pub struct TestCluster {
    dir: PathBuf,
    /// Owns `dir` when the cluster made it.
    _temp: Option<tempfile::TempDir>,
    exe: Option<PathBuf>,
    script: PathBuf,
    urls: Vec<String>,
    monitors: Vec<String>,
}

/// Why a cluster did not start.
#[derive(Debug, thiserror::Error)]
pub enum TestClusterError {
    #[error("cannot run {script}: {source}")]
    Run {
        script: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{script} start {dir} failed ({status})")]
    Start {
        script: PathBuf,
        dir: PathBuf,
        status: std::process::ExitStatus,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TestCluster {
    /// A cluster in a new temporary directory, on ports free now, with the server `exe`; panics
    /// with the reason when it cannot start (for tests).
    pub fn start(workspace_root: &Path, exe: PathBuf) -> TestCluster {
        let temp = tempfile::tempdir().expect("a temporary directory for the cluster");
        let dir = temp.path().to_path_buf();
        let mut cluster = TestCluster::start_in(workspace_root, &dir, free_base_port(), Some(exe))
            .unwrap_or_else(|e| panic!("{e}"));
        cluster._temp = Some(temp);
        cluster
    }

    /// A cluster in `dir` on `base_port` (the script's ports), with the server `exe` (None: as
    /// the script finds it).
    pub fn start_in(
        workspace_root: &Path,
        dir: &Path,
        base_port: u16,
        exe: Option<PathBuf>,
    ) -> Result<TestCluster, TestClusterError> {
        let script = workspace_root.join("scripts/nats-cluster.sh");
        let mut cluster = TestCluster {
            dir: dir.to_path_buf(),
            _temp: None,
            exe,
            script,
            urls: Vec::new(),
            monitors: Vec::new(),
        };
        let mut cmd = cluster.script_command("start");
        cmd.env("NATS_BASE_PORT", base_port.to_string());
        cluster.run(cmd)?;
        let env_file = dir.join("cluster.env");
        let env = std::fs::read_to_string(&env_file).map_err(|source| TestClusterError::Read {
            path: env_file,
            source,
        })?;
        let list = |key: &str| -> Vec<String> {
            env.lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_default()
                .split(',')
                .map(String::from)
                .collect()
        };
        cluster.urls = list("NATS_URLS=");
        cluster.monitors = list("NATS_MONITOR_URLS=");
        assert_eq!(
            cluster.urls.len(),
            SERVERS,
            "cluster.env names every server"
        );
        assert_eq!(
            cluster.monitors.len(),
            SERVERS,
            "cluster.env names every monitor"
        );
        Ok(cluster)
    }

    fn script_command(&self, what: &str) -> Command {
        let mut cmd = Command::new("bash");
        cmd.arg(&self.script).arg(what).arg(&self.dir);
        if let Some(exe) = &self.exe {
            cmd.env("MLTRADER_NATS_SERVER", exe);
        }
        cmd
    }

    fn run(&self, mut cmd: Command) -> Result<(), TestClusterError> {
        let status = cmd.status().map_err(|source| TestClusterError::Run {
            script: self.script.clone(),
            source,
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(TestClusterError::Start {
                script: self.script.clone(),
                dir: self.dir.clone(),
                status,
            })
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The credentials file the script wrote.
    pub fn creds(&self) -> PathBuf {
        self.dir.join("creds")
    }

    /// Client URLs, one a server.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// Monitoring URLs, one a server.
    pub fn monitors(&self) -> &[String] {
        &self.monitors
    }

    /// How node `node` connects (every server checked safe).
    pub fn config(&self, node: &str) -> NatsConfig {
        NatsConfig {
            urls: self.urls.clone(),
            creds_file: self.creds(),
            monitor_urls: self.monitors.clone(),
            node: node.into(),
            safety: Safety::Required,
        }
    }

    /// Connects as node `node`; panics on failure (for tests).
    pub fn connect(&self, node: &str) -> super::Nats {
        super::Nats::connect(&self.config(node))
            .unwrap_or_else(|e| panic!("connect to the test cluster as {node}: {e}"))
    }

    /// `mltrader serve`'s flags for node `node` on this cluster.
    pub fn serve_flags(&self, node: &str) -> Vec<String> {
        vec![
            "--nats".into(),
            self.urls.join(","),
            "--creds".into(),
            self.creds().display().to_string(),
            "--node".into(),
            node.into(),
            "--nats-monitor".into(),
            self.monitors.join(","),
        ]
    }

    /// The name the script gives server `i` (1-based): `n1`, `n2`, `n3`.
    pub fn server_name(i: usize) -> String {
        assert!((1..=SERVERS).contains(&i), "servers are n1..n{SERVERS}");
        format!("n{i}")
    }

    /// The pid of server `i` (1-based) as the script recorded it, if it runs.
    pub fn server_pid(&self, i: usize) -> Option<u32> {
        let path = self.dir.join(Self::server_name(i)).join("pid");
        let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        alive.then_some(pid)
    }

    /// SIGKILLs server `i` (1-based) and waits until it is gone; panics if it was not running.
    pub fn kill_server(&self, i: usize) {
        let pid = self
            .server_pid(i)
            .unwrap_or_else(|| panic!("server n{i} is not running"));
        let killed = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(killed, "kill -KILL {pid} (n{i})");
        for _ in 0..100 {
            if self.server_pid(i).is_none() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("n{i} (pid {pid}) still runs 5 s after SIGKILL");
    }

    /// Starts again every server that is not running (the script's `start` skips the others)
    /// and waits for a meta leader; panics if it cannot.
    pub fn restart_stopped(&self) {
        let cmd = self.script_command("start");
        self.run(cmd).unwrap_or_else(|e| panic!("{e}"));
    }

    /// The server (1-based) that leads stream `stream`, as the first monitor that answers
    /// says (`/jsz?streams=true`: the stream's `cluster.leader`); None if none knows one.
    pub fn stream_leader(&self, stream: &str) -> Option<usize> {
        self.monitors.iter().find_map(|m| {
            let jsz = http_get_json(m, "/jsz?streams=true")?;
            let leader = jsz["account_details"]
                .as_array()?
                .iter()
                .flat_map(|a| a["stream_detail"].as_array().into_iter().flatten())
                .find(|s| s["name"] == stream)?["cluster"]["leader"]
                .as_str()?
                .to_string();
            (1..=SERVERS).find(|&i| Self::server_name(i) == leader)
        })
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        let _ = self.script_command("stop").status();
    }
}

/// A base port whose cluster ports (base..+2, +100..+102, +200..+202) are free now.
pub fn free_base_port() -> u16 {
    let span = 40_000u16;
    let start = (std::process::id() % 300) as u16 * 100;
    (0..400u16)
        .map(|i| FIRST_BASE_PORT + (start + i * 97) % span)
        .find(|base| {
            PORT_OFFSETS.iter().all(|o| {
                (0..SERVERS as u16).all(|i| TcpListener::bind(("127.0.0.1", base + o + i)).is_ok())
            })
        })
        .expect("no free ports for a cluster")
}

/// `GET path` on a monitoring URL (`http://127.0.0.1:PORT`), read as JSON; None on any
/// failure (a server that is down or electing). HTTP/1.0 over a socket: a test helper needs no
/// client library.
pub fn http_get_json(monitor: &str, path: &str) -> Option<serde_json::Value> {
    let addr = monitor.strip_prefix("http://")?.trim_end_matches('/');
    let timeout = Duration::from_millis(MONITOR_TIMEOUT_MS);
    let mut conn = TcpStream::connect_timeout(&addr.parse().ok()?, timeout).ok()?;
    conn.set_read_timeout(Some(timeout)).ok()?;
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status_line = head.lines().next()?;
    if status_line.split_whitespace().nth(1) != Some("200") {
        return None;
    }
    serde_json::from_str(body).ok()
}
