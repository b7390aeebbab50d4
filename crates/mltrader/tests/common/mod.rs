//! What the end-to-end tests share: a real `mltrader serve` on a free port and a temporary data
//! directory ([`Server`]), the real client commands run as a player with a config directory of
//! their own ([`Player`]), raw HTTP for the API tests ([`Http`]), and looking at a data
//! directory ([`file_sizes`], [`check`]).
//!
//! Each test file uses part of it.
#![allow(dead_code)]

pub mod nats_nodes;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Server flags the tests run with unless they pass their own: short jumps.
/// Quiet markets (no shocks) unless a test asks: the tests that check a refused request wrote
/// nothing watch the logs, and a shock writes records of its own.
pub const DEFAULT_SERVER_ARGS: &[(&str, &str)] = &[
    ("--ticks-per-ly", "1"),
    ("--tick-hz", "50"),
    ("--shocks-per-100k-ticks", "0"),
];

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `mltrader` binary under test.
pub fn mltrader() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mltrader"))
}

/// A running `mltrader serve`; killed (SIGKILL) when dropped.
pub struct Server {
    child: Option<Child>,
    url: String,
    data: PathBuf,
    /// Owns the data directory when the server made it.
    _dir: Option<tempfile::TempDir>,
    output: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// A server on a new temporary data directory, with `extra` flags (which replace the
    /// defaults of [`DEFAULT_SERVER_ARGS`] they name).
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with(None, &[], extra)
    }

    /// A server on `data` (a new temporary directory if `None`), with environment variables.
    pub fn start_with(data: Option<&Path>, env: &[(&str, &str)], extra: &[&str]) -> Server {
        Server::start_limited(data, env, extra, None)
    }

    /// [`Server::start_with`], with the process's open-file limit (soft and hard, so that the
    /// server cannot raise it) set to `fd_limit` when given: how a test makes the limit
    /// reachable.
    pub fn start_limited(
        data: Option<&Path>,
        env: &[(&str, &str)],
        extra: &[&str],
        fd_limit: Option<u64>,
    ) -> Server {
        let (dir, data) = match data {
            Some(d) => (None, d.to_path_buf()),
            None => {
                let dir = tempfile::tempdir().expect("temp dir");
                let data = dir.path().join("data");
                (Some(dir), data)
            }
        };
        let mut cmd = mltrader();
        cmd.arg("serve");
        // Any free port, unless the test names one (to restart a server where it was).
        if !extra.contains(&"--listen") {
            cmd.args(["--listen", "127.0.0.1:0"]);
        }
        cmd.arg("--data").arg(&data).args(extra);
        for (flag, value) in DEFAULT_SERVER_ARGS {
            if !extra.contains(flag) {
                cmd.args([flag, value]);
            }
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(limit) = fd_limit {
            set_fd_limit(&mut cmd, limit);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mltrader serve");
        let stdout = child.stdout.take().expect("stdout");
        let output = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = output.clone();
        // Reads everything the server prints (so it never blocks on a full pipe).
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split(" on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(format!("http://{addr}"));
                }
                lines.lock().unwrap().push(line);
            }
        });
        let url = match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "mltrader serve did not print its address ({status:?}); it said: {:?}",
                    output.lock().unwrap()
                );
            }
        };
        Server {
            child: Some(child),
            url,
            data,
            _dir: dir,
            output,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on, for tests that speak raw TCP to it.
    #[allow(dead_code)] // Not every test binary speaks raw TCP.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url
            .trim_start_matches("http://")
            .parse()
            .expect("the server's address")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Lines the server printed so far.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().unwrap().clone()
    }

    /// Kills the server (SIGKILL) and reaps it.
    pub fn kill(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// How the server exited, if it has (reaps it), without stopping it.
    #[allow(dead_code)] // Only the tests of a server that stops by itself ask.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().expect("wait for server")
    }

    /// Asks the server to stop (SIGTERM) and waits for it; returns how it exited.
    pub fn stop(mut self) -> ExitStatus {
        self.stop_in_place()
    }

    /// [`Server::stop`], keeping the data directory alive with `self`.
    pub fn stop_in_place(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server running");
        sigterm(child.id());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("wait for server") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the server did not stop within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Raises this test process's own open-file limit (soft, up to the hard one) so that it can
/// hold `needed` files at once; panics, saying what to do, if the hard limit is lower.
#[allow(dead_code)] // Not every test binary floods.
pub fn raise_own_fd_limit(needed: u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read a struct of our own.
    unsafe {
        assert_eq!(
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl),
            0,
            "getrlimit"
        );
        assert!(
            rl.rlim_max >= needed,
            "this test holds {needed} sockets but the hard open-file limit is {}: raise it \
             (ulimit -Hn) to run it",
            rl.rlim_max
        );
        if rl.rlim_cur < needed {
            rl.rlim_cur = rl.rlim_max;
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rl), 0, "setrlimit");
        }
    }
}

/// Sets RLIMIT_NOFILE (soft and hard) of the process `cmd` starts.
fn set_fd_limit(cmd: &mut Command, limit: u64) {
    use std::os::unix::process::CommandExt as _;
    let limit = libc::rlim_t::try_from(limit).expect("an rlim_t");
    // SAFETY: the closure runs in the child between fork and exec; it calls setrlimit(2), which
    // is async-signal-safe, on a struct of its own, and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// What a client command did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Stdout as JSON (for `--json` runs).
    pub fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.stdout))
    }

    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }
}

/// A player at a terminal: the real client commands, with a config directory of their own
/// (where `join` saves the token) and `--server` set to one server.
pub struct Player {
    pub name: String,
    config: tempfile::TempDir,
    url: String,
    env: Vec<(String, String)>,
}

impl Player {
    /// A player who has not joined yet.
    pub fn new(url: &str, name: &str) -> Player {
        Player {
            name: name.to_string(),
            config: tempfile::tempdir().expect("temp dir"),
            url: url.to_string(),
            env: Vec::new(),
        }
    }

    /// A player who joined (asserts it worked).
    pub fn join(server: &Server, name: &str) -> Player {
        let p = Player::new(server.url(), name);
        p.run(&["join", name]).ok();
        p
    }

    /// Sets an environment variable for this player's commands.
    pub fn env(mut self, key: &str, value: &str) -> Player {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn config_dir(&self) -> &Path {
        self.config.path()
    }

    pub fn token_file(&self) -> PathBuf {
        self.config.path().join("mltrader").join("token")
    }

    /// The saved token.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.token_file())
            .expect("token saved")
            .trim()
            .to_string()
    }

    /// Runs `mltrader ARGS --server URL` as this player.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_at(&self.url, args)
    }

    /// Runs `mltrader ARGS --server URL` against another server.
    pub fn run_at(&self, url: &str, args: &[&str]) -> Run {
        let mut cmd = mltrader();
        cmd.args(args)
            .args(["--server", url])
            .env("XDG_CONFIG_HOME", self.config.path())
            .env_remove("MLTRADER_TOKEN")
            .env_remove("MLTRADER_SERVER");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let out = cmd.output().expect("run mltrader");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// Raw HTTP to a server, for the API tests.
#[derive(Clone)]
pub struct Http {
    pub client: reqwest::Client,
    pub url: String,
}

/// An answer: status, headers and the body as JSON (Null when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Http {
    pub fn new(url: &str) -> Http {
        Http {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            url: url.to_string(),
        }
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let resp = req.send().await.expect("server answers");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.expect("body");
        Answer {
            status,
            headers,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut req = self.client.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        let mut req = self.client.post(format!("{}{path}", self.url)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    /// `POST path` with a raw body and content type.
    pub async fn post_raw(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self
            .client
            .post(format!("{}{path}", self.url))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.send(req).await
    }

    /// Joins a player; returns their token.
    pub async fn join(&self, name: &str) -> String {
        let a = self
            .post("/v1/join", None, serde_json::json!({"name": name}))
            .await;
        assert_eq!(a.status, 201, "join {name}: {a:?}");
        a.body["token"].as_str().expect("token").to_string()
    }
}

/// Every file of a data directory and its size (to see that nothing was written).
pub fn file_sizes(dir: &Path) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(m) = e.metadata() {
                out.insert(p, m.len());
            }
        }
    }
    out
}

/// [`file_sizes`] once they stop changing (the projector writes player logs a moment after
/// each record is durable, every 100 ms, later on a loaded machine): the same for 500 ms,
/// sampled every 100 ms. (Twice in a row 100 ms apart was seen to miss a player-log write
/// under load.)
pub fn settled_file_sizes(dir: &Path) -> BTreeMap<PathBuf, u64> {
    const SAME_SAMPLES: u32 = 5;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = file_sizes(dir);
    let mut same = 0;
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = file_sizes(dir);
        if now == last {
            same += 1;
        } else {
            same = 0;
        }
        if same >= SAME_SAMPLES || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

/// Runs `mltrader swarm --json --server URL ARGS` to its end; panics with its stderr if it
/// fails.
#[allow(dead_code)] // not every test binary runs a swarm
pub fn run_swarm(url: &str, args: &[&str]) {
    let swarm = mltrader()
        .args(["swarm", "--json", "--server", url])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run the swarm");
    assert!(
        swarm.status.success(),
        "{}",
        String::from_utf8_lossy(&swarm.stderr)
    );
}

/// `mltrader check --data DIR`.
pub fn check(data: &Path) -> Output {
    mltrader()
        .args(["check", "--data"])
        .arg(data)
        .output()
        .expect("run mltrader check")
}

/// A local port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Sends SIGTERM to a process (what Ctrl-C's sibling, a service manager's stop, sends).
pub fn sigterm(pid: u32) {
    let pid = i32::try_from(pid).expect("a pid fits an i32");
    // SAFETY: kill(2) with a pid we spawned and a standard signal; it touches no memory.
    let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(
        rc,
        0,
        "kill -TERM {pid}: {}",
        std::io::Error::last_os_error()
    );
}
