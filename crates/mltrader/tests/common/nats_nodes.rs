//! What the tests of nodes on NATS share (the storm of issue 18, the spread galaxy of issue
//! 19): a `mltrader serve --nats` node as a child process on a fixed port, raw HTTP to it, the
//! ack log watched, the swarm started and stopped, and the export checked at the end.
//! Test code only.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nats::testing::TestCluster;
use serde_json::Value;

use super::{free_port, mltrader};

/// A request's timeout, in the tests' own HTTP.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the ack log is read for new lines.
pub const ACK_POLL: Duration = Duration::from_millis(20);

/// One `mltrader serve --nats` node on a fixed port (so that the bots' URL list stays right
/// across restarts), with a data directory of its own.
pub struct Node {
    pub name: String,
    pub port: u16,
    pub data: PathBuf,
    pub flags: Vec<String>,
    /// Environment variables of its process.
    pub env: Vec<(&'static str, &'static str)>,
    pub child: Option<Child>,
    /// When it was last started (the supervisor waits [`RESTART_PAUSE`] between starts).
    pub started: Instant,
    /// It exited by itself and the supervisor will start it again.
    pub restart_due: bool,
    /// Everything it printed, stdout and stderr, across its restarts.
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl Node {
    pub fn new(cluster: &TestCluster, name: &str, dir: &Path) -> Node {
        Node::with_flags(cluster.serve_flags(name), name, dir)
    }

    /// A node of region `region` of `regions`: `serve --nats --spread --region`.
    #[allow(dead_code)] // not every test binary has regions
    pub fn in_region(
        regions: &nats::testing::TestRegions,
        region: &str,
        name: &str,
        dir: &Path,
    ) -> Node {
        Node::with_flags(regions.serve_flags(region, name), name, dir)
    }

    fn with_flags(flags: Vec<String>, name: &str, dir: &Path) -> Node {
        Node {
            name: name.to_string(),
            port: free_port(),
            data: dir.join(name),
            flags,
            env: Vec::new(),
            child: None,
            started: Instant::now(),
            restart_due: false,
            lines: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} already runs", self.name);
        let mut child = mltrader()
            .args(["serve", "--listen", &format!("127.0.0.1:{}", self.port)])
            .arg("--data")
            .arg(&self.data)
            .args(["--tick-hz", "50", "--ticks-per-ly", "1"])
            .args(&self.flags)
            .envs(self.env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start mltrader serve");
        let out = child.stdout.take().expect("stdout");
        let err = child.stderr.take().expect("stderr");
        self.drain(BufReader::new(out));
        self.drain(BufReader::new(err));
        self.child = Some(child);
        self.started = Instant::now();
        self.restart_due = false;
        eprintln!("{} started on {}", self.name, self.url());
    }

    /// Keeps `from`'s lines (the node never blocks on a full pipe), echoing them.
    pub fn drain(&self, from: impl BufRead + Send + 'static) {
        let lines = self.lines.clone();
        let name = self.name.clone();
        std::thread::spawn(move || {
            for line in from.lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
                lines.lock().unwrap().push(line);
            }
        });
    }

    pub fn pid(&self) -> i32 {
        let child = self.child.as_ref().expect("the node runs");
        i32::try_from(child.id()).expect("a pid fits an i32")
    }

    pub fn signal(&self, sig: libc::c_int) {
        // SAFETY: kill(2) on a child of this test, with a valid signal number.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill {sig}");
    }

    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("the node runs");
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("{} SIGKILLed", self.name);
    }

    /// Waits for the node to exit by itself.
    pub fn exited_within(&mut self, wait: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + wait;
        loop {
            let child = self.child.as_mut().expect("the node runs");
            if let Some(status) = child.try_wait().expect("wait for the node") {
                self.child = None;
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        self.child.as_ref()?;
        self.signal(libc::SIGTERM);
        self.exited_within(Duration::from_secs(30))
    }

    pub fn tail(&self, n: usize) -> String {
        let lines = self.lines.lock().unwrap();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // A paused node must be resumed to die promptly.
            // SAFETY: kill(2) on our child.
            unsafe { libc::kill(c.id() as i32, libc::SIGCONT) };
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// One HTTP/1.0 request (the connection closes after the answer): the status and the body as
/// JSON (Null if it is not), or None if there was no answer.
pub fn http(base: &str, method: &str, path: &str, body: Option<&Value>) -> Option<(u16, Value)> {
    http_as(base, method, path, None, body)
}

/// [`http`] as the player whose token is `token` (none: anonymous).
pub fn http_as(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let addr = base.strip_prefix("http://")?;
    let mut conn = TcpStream::connect_timeout(&addr.parse().ok()?, HTTP_TIMEOUT).ok()?;
    conn.set_read_timeout(Some(HTTP_TIMEOUT)).ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "{method} {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}Content-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer).ok()?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// Watches the ack log grow: when each new acknowledgement was seen.
pub struct AckWatch {
    seen: Arc<Mutex<Vec<Instant>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AckWatch {
    pub fn start(path: PathBuf) -> AckWatch {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (seen, stop) = (seen.clone(), stop.clone());
            move || {
                let mut offset = 0u64;
                let mut buf = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(ACK_POLL);
                    let Ok(mut f) = std::fs::File::open(&path) else {
                        continue;
                    };
                    buf.clear();
                    if f.seek(SeekFrom::Start(offset)).is_err() || f.read_to_end(&mut buf).is_err()
                    {
                        continue;
                    }
                    let Some(last) = buf.iter().rposition(|&b| b == b'\n') else {
                        continue;
                    };
                    let new = buf[..=last].iter().filter(|&&b| b == b'\n').count();
                    offset += last as u64 + 1;
                    let now = Instant::now();
                    seen.lock().unwrap().extend(std::iter::repeat_n(now, new));
                }
            }
        });
        AckWatch {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// The longest time without an acknowledgement in `[from, to]` (from and to count as
    /// edges), and when it ended.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> (Duration, Instant) {
        let seen = self.seen.lock().unwrap();
        let mut edges: Vec<Instant> = vec![from];
        edges.extend(seen.iter().copied().filter(|&t| t > from && t < to));
        edges.push(to);
        edges
            .windows(2)
            .map(|w| (w[1] - w[0], w[1]))
            .max()
            .unwrap_or((Duration::ZERO, to))
    }
}

impl Drop for AckWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A running `mltrader swarm`, killed if the test ends before stopping it.
pub struct Swarm(pub Option<Child>);

impl Drop for Swarm {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `mltrader swarm` through both nodes' URLs, with an ack log; stopped with SIGTERM.
pub fn start_swarm(urls: &str, bots: u64, seed: u64, acks: &Path) -> Swarm {
    Swarm(Some(
        mltrader()
            .args(["swarm", "--server", urls, "--bots", &bots.to_string()])
            .args(["--seed", &seed.to_string(), "--json", "--ack-log"])
            .arg(acks)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mltrader swarm"),
    ))
}

pub fn stop_swarm(mut swarm: Swarm) -> Value {
    let swarm = swarm.0.take().expect("the swarm runs");
    let pid = i32::try_from(swarm.id()).unwrap();
    // SAFETY: kill(2) on our child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = swarm.wait_with_output().expect("the swarm's summary");
    assert!(out.status.success(), "the swarm failed: {:?}", out.status);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("the swarm's summary is not JSON ({e}): {:?}", out.stdout))
}

/// Join records in a data directory's system logs (each player joins once).
pub fn join_records(data: &Path) -> u64 {
    let mut joins = 0;
    let mut stack = vec![data.join("systems")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(text) = std::fs::read_to_string(&path) {
                joins += text
                    .lines()
                    .filter(|l| l.split_whitespace().nth(1) == Some("join"))
                    .count() as u64;
            }
        }
    }
    joins
}

/// Logs of the stream in which a message of an older owner was accepted after a takeover
/// (`nats::writers::check_fencing`); each breach is printed.
pub fn zombie_messages_accepted(cluster: &TestCluster) -> usize {
    use store::backend::LogStore;
    let logs = nats::NatsLogs::open(&cluster.connect("storm-reader"), 3).unwrap();
    let mut names = logs.list(store::backend::SYSTEMS_PREFIX).unwrap();
    names.push(store::backend::TRANSITIONS_LOG.into());
    let mut breaches = 0;
    for name in &names {
        let writers = logs.writers_of(name).unwrap();
        if let Err(breach) = nats::writers::check_fencing(name, &writers) {
            eprintln!("storm: {breach}");
            breaches += 1;
        }
    }
    breaches
}

/// `mltrader export` into `dir/export`, then `mltrader check --json --acks`: check's report
/// (asserted sound), the export's directory, and its count of zombie messages accepted.
pub fn export_and_check(cluster: &TestCluster, dir: &Path, acks: &Path) -> (Value, PathBuf, u64) {
    let export = dir.join("export");
    let exported = mltrader()
        .args(["export", "--nats", &cluster.urls().join(",")])
        .arg("--creds")
        .arg(cluster.creds())
        .args(["--nats-monitor", &cluster.monitors().join(",")])
        .arg("--data")
        .arg(&export)
        .output()
        .expect("run mltrader export");
    let said = String::from_utf8_lossy(&exported.stdout).into_owned();
    assert!(
        exported.status.success(),
        "mltrader export failed: {said}{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let zombies = said
        .lines()
        .find_map(|l| {
            l.strip_prefix("zombie messages accepted: ")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("the export did not count zombie messages: {said}"));
    let checked = mltrader()
        .args(["check", "--json", "--data"])
        .arg(&export)
        .arg("--acks")
        .arg(acks)
        .output()
        .expect("run mltrader check");
    let report: Value = serde_json::from_slice(&checked.stdout).unwrap_or_else(|e| {
        panic!(
            "check's report is not JSON ({e}): {}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        )
    });
    assert!(checked.status.success(), "check failed: {report:#}");
    assert_eq!(report["problems"], Value::Array(vec![]), "{report:#}");
    (report, export, zombies)
}

/// Runs `mltrader region ARGS` against region `region`'s servers of `regions`, with the
/// built-in galaxy's file; its JSON output (Null if it printed none). Panics if it fails.
pub fn region_cmd(regions: &nats::testing::TestRegions, region: &str, args: &[&str]) -> Value {
    let galaxy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sim/src/galaxy/stars.toml");
    let out = mltrader()
        .arg("region")
        .args(args)
        .args(regions.region_args(region))
        .arg("--galaxy")
        .arg(&galaxy)
        .output()
        .expect("run mltrader region");
    assert!(
        out.status.success(),
        "mltrader region {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}
