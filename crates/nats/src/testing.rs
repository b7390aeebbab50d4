//! A three-node JetStream cluster on loopback for tests and benchmarks ([`TestCluster`]),
//! started and stopped with `scripts/nats-cluster.sh` (the same cluster an operator starts by
//! hand: routes, `sync_interval: always`, a user and password): the one place the JetStream
//! tests, the whole-binary tests and `mltrader-bench jetstream` get a cluster from. Also what
//! the storm test needs to hurt it: the pid of each server, SIGKILL of one, restarting it,
//! and which server leads a stream ([`TestCluster::stream_leader`]).
//!
//! Behind the `testing` feature: never part of the product. Never installs nats-server (see
//! [`super::locate`]) and never touches a cluster it did not start.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::{NatsConfig, Safety};

mod regions;
mod wan;
pub use regions::{TestRegion, TestRegions};
pub use wan::WanProxy;

/// The servers of a test cluster.
pub const SERVERS: usize = 3;
/// Port offsets of the script: clients at BASE.., routes at BASE+100.., monitoring at BASE+200..
const PORT_OFFSETS: [u16; 3] = [0, 100, 200];
/// The lowest base port tried for a cluster on free ports.
const FIRST_BASE_PORT: u16 = 20_000;
/// How long a restarted server may take to be current with JetStream, in milliseconds.
pub const RESTART_WAIT_MS: u64 = 60_000;
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
    /// Servers this process restarted ([`TestCluster::restart_server`]): its children, which it
    /// must reap (a dead child not reaped still answers `kill -0`). A std mutex: held for a
    /// `try_wait` or a `kill`, never across a wait for the cluster.
    restarted: std::sync::Mutex<Vec<(usize, std::process::Child)>>,
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
    #[error("{script} start {dir} failed ({status}); it said:\n{said}")]
    Start {
        script: PathBuf,
        dir: PathBuf,
        status: std::process::ExitStatus,
        said: String,
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
            restarted: std::sync::Mutex::new(Vec::new()),
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
        let out = cmd.output().map_err(|source| TestClusterError::Run {
            script: self.script.clone(),
            source,
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(TestClusterError::Start {
                script: self.script.clone(),
                dir: self.dir.clone(),
                status: out.status,
                said: format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ),
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
        let mut restarted = self.restarted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, child)) = restarted.iter_mut().find(|(n, _)| *n == i) {
            return match child.try_wait() {
                Ok(None) => Some(child.id()),
                _ => None,
            };
        }
        drop(restarted);
        let path = self.dir.join(Self::server_name(i)).join("pid");
        let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
        let alive = Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        alive.then_some(pid)
    }

    /// SIGKILLs server `i` (1-based) and waits until it is gone; panics if it was not running.
    pub fn kill_server(&self, i: usize) {
        let pid = self
            .server_pid(i)
            .unwrap_or_else(|| panic!("server n{i} is not running"));
        let mut restarted = self.restarted.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = restarted.iter().position(|(n, _)| *n == i) {
            let (_, mut child) = restarted.remove(at);
            child.kill().expect("SIGKILL a restarted server");
            child.wait().expect("reap a restarted server");
            return;
        }
        drop(restarted);
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

    /// Starts server `i` (1-based) again, on its config and store, and waits until its
    /// `/healthz` says it is current with JetStream; panics with its log's tail if it is not
    /// within [`RESTART_WAIT_MS`].
    pub fn restart_server(&self, i: usize) {
        assert!(self.server_pid(i).is_none(), "n{i} still runs");
        let node_dir = self.dir.join(Self::server_name(i));
        let exe = self
            .exe
            .clone()
            .or_else(|| super::locate::nats_server(&self.script.join("../..")))
            .expect("nats-server (scripts/nats-install.sh)");
        let log_path = node_dir.join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("the server's log");
        let child = Command::new(exe)
            .arg("-c")
            .arg(node_dir.join("server.conf"))
            .stdout(log.try_clone().expect("the server's log"))
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        std::fs::write(node_dir.join("pid"), format!("{}\n", child.id())).expect("write pid");
        self.restarted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((i, child));
        let monitor = &self.monitors[i - 1];
        let deadline = std::time::Instant::now() + Duration::from_millis(RESTART_WAIT_MS);
        while http_get_json(monitor, "/healthz").is_none() {
            if std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                panic!(
                    "n{i} is not healthy {RESTART_WAIT_MS} ms after its restart; its log ends:\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
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
        // Restarted servers first: the script's wait for them would see unreaped children
        // as running.
        let restarted = self.restarted.get_mut().unwrap_or_else(|e| e.into_inner());
        for (_, child) in restarted.iter_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.script_command("stop").status();
    }
}

/// A base port whose cluster ports (base..+2, +100..+102, +200..+202) are free now, and that
/// no other cluster of this process was given (tests run at once: a port still free because a
/// cluster's servers have not bound it yet must not be handed out twice).
pub fn free_base_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let span = 40_000u16;
    let start = (std::process::id() % 300) as u16 * 100;
    let base = (0..400u16)
        .map(|i| FIRST_BASE_PORT + (start + i * 97) % span)
        .filter(|base| given.iter().all(|g| g.abs_diff(*base) >= 300))
        .find(|base| {
            PORT_OFFSETS.iter().all(|o| {
                (0..SERVERS as u16).all(|i| TcpListener::bind(("127.0.0.1", base + o + i)).is_ok())
            })
        })
        .expect("no free ports for a cluster");
    given.push(base);
    base
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
