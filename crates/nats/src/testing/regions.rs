//! Regions on loopback for tests and benchmarks ([`TestRegions`]): N regions of M servers
//! each, every region a JetStream domain of its own (`domain: <region>`), `sync_interval:
//! always`, the same user and password everywhere, joined by leafnodes through a
//! [`WanProxy`] per link (delay each way, cut, heal). docs/REGIONS.md describes the topology:
//! the first region listens for leafnodes, every other region's servers dial it through their
//! link's proxy (a star: with more than two regions, traffic between two spokes crosses the
//! hub; two leafnode paths between the same pair would be a loop, which the engine refuses).
//!
//! Behind the `testing` feature: never part of the product. Never installs nats-server and
//! never touches a server it did not start; every server is SIGKILLed when dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{http_get_json, WanProxy};
use crate::{NatsConfig, Safety};

/// The most servers a test region has (a NATS cluster of 1 or 3 in practice).
pub const MAX_SERVERS_PER_REGION: usize = 5;
/// How long the regions may take to start (meta leaders elected, leafnodes connected), in
/// milliseconds.
pub const START_WAIT_MS: u64 = 60_000;
/// How long a leafnode link may take to come back after a heal, in milliseconds (the remote
/// redials every `reconnect` seconds, set to [`LEAF_RECONNECT_S`]).
pub const RELINK_WAIT_MS: u64 = 30_000;
/// The leafnode remotes' redial interval, in seconds (the engine's default is 1 s).
pub const LEAF_RECONNECT_S: u64 = 1;

/// One region's servers.
pub struct TestRegion {
    pub name: String,
    dir: PathBuf,
    client_ports: Vec<u16>,
    monitor_ports: Vec<u16>,
    leaf_ports: Vec<u16>,
    /// The running servers; None for a server killed.
    children: Vec<Option<Child>>,
}

/// Regions started by this process, stopped (SIGKILL) when dropped.
pub struct TestRegions {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    exe: PathBuf,
    regions: Vec<TestRegion>,
    /// (dialing region's index, the link's proxy towards region 0): one per region but the
    /// first.
    links: Vec<(usize, WanProxy)>,
}

/// Ports free now, never handed out twice by this process.
fn free_ports(n: usize) -> Vec<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut ports = Vec::new();
    while ports.len() < n {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        if !given.contains(&port) {
            given.push(port);
            ports.push(port);
        }
    }
    ports
}

impl TestRegion {
    pub fn urls(&self) -> Vec<String> {
        self.client_ports
            .iter()
            .map(|p| format!("nats://127.0.0.1:{p}"))
            .collect()
    }

    pub fn monitors(&self) -> Vec<String> {
        self.monitor_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect()
    }

    /// The server's name: `<region>-n<i>` (1-based).
    pub fn server_name(&self, i: usize) -> String {
        format!("{}-n{i}", self.name)
    }

    /// The servers this region has (running or not).
    pub fn servers(&self) -> usize {
        self.children.len()
    }

    fn config_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}")).join("server.conf")
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("n{i}")).join("server.log")
    }
}

impl TestRegions {
    /// Regions `names` (the first is the hub the others dial), `servers` each, links delayed
    /// `delay_ms` each way, with the server `exe`; panics with the servers' logs when they do
    /// not start within [`START_WAIT_MS`] (for tests).
    pub fn start(exe: PathBuf, names: &[&str], servers: usize, delay_ms: u64) -> TestRegions {
        assert!(names.len() >= 2, "regions come at least in pairs");
        assert!(
            (1..=MAX_SERVERS_PER_REGION).contains(&servers),
            "a region has 1..={MAX_SERVERS_PER_REGION} servers"
        );
        let temp = tempfile::tempdir().expect("a temporary directory for the regions");
        let dir = temp.path().to_path_buf();
        let password = {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).expect("random bytes");
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        std::fs::write(
            dir.join("creds"),
            format!("user = \"mltrader\"\npassword = \"{password}\"\n"),
        )
        .expect("write the credentials");
        let mut regions: Vec<TestRegion> = names
            .iter()
            .map(|name| {
                assert!(
                    crate::region::is_region_name(name),
                    "{name:?} is not a region name"
                );
                TestRegion {
                    name: name.to_string(),
                    dir: dir.join(name),
                    client_ports: free_ports(servers),
                    monitor_ports: free_ports(servers),
                    leaf_ports: free_ports(servers),
                    children: Vec::new(),
                }
            })
            .collect();
        let hub_leafs: Vec<SocketAddr> = regions[0]
            .leaf_ports
            .iter()
            .map(|p| SocketAddr::from(([127, 0, 0, 1], *p)))
            .collect();
        let links: Vec<(usize, WanProxy)> = (1..regions.len())
            .map(|r| (r, WanProxy::start(&hub_leafs, delay_ms)))
            .collect();
        let route_ports: Vec<Vec<u16>> = regions.iter().map(|_| free_ports(servers)).collect();
        for (r, region) in regions.iter_mut().enumerate() {
            let remotes: Option<Vec<String>> = links.iter().find(|(d, _)| *d == r).map(|(_, p)| {
                p.addrs()
                    .iter()
                    .map(|a| format!("nats-leaf://mltrader:{password}@{a}"))
                    .collect()
            });
            for i in 1..=servers {
                let conf = server_conf(region, i, &route_ports[r], &password, remotes.as_deref());
                let path = region.config_path(i);
                std::fs::create_dir_all(path.parent().unwrap()).expect("the server's directory");
                std::fs::write(&path, conf).expect("write the server's config");
            }
        }
        let mut started = TestRegions {
            _temp: temp,
            dir,
            exe,
            regions,
            links,
        };
        for r in 0..started.regions.len() {
            for i in 1..=servers {
                let child = started.spawn(r, i);
                started.regions[r].children.push(Some(child));
            }
        }
        started.wait_ready(Duration::from_millis(START_WAIT_MS));
        started
    }

    fn spawn(&self, r: usize, i: usize) -> Child {
        let region = &self.regions[r];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(region.log_path(i))
            .expect("the server's log");
        Command::new(&self.exe)
            .arg("-c")
            .arg(region.config_path(i))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the server's log"))
            .stderr(log)
            .spawn()
            .expect("start nats-server")
    }

    /// Waits until every running server is healthy (JetStream current), every region has a
    /// meta leader, and every link's leafnodes are connected; panics with the logs' tails.
    fn wait_ready(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.ready() {
            if Instant::now() > deadline {
                panic!(
                    "the regions are not ready after {} ms:\n{}",
                    within.as_millis(),
                    self.log_tails()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ready(&self) -> bool {
        let healthy = self.regions.iter().all(|region| {
            region
                .monitors()
                .iter()
                .zip(&region.children)
                .filter(|(_, c)| c.is_some())
                .all(|(m, _)| http_get_json(m, "/healthz").is_some())
        });
        healthy && self.links.iter().all(|(r, _)| self.leafnodes_of(*r) > 0)
    }

    /// Leafnode connections the running servers of region `r` hold.
    fn leafnodes_of(&self, r: usize) -> usize {
        let region = &self.regions[r];
        region
            .monitors()
            .iter()
            .zip(&region.children)
            .filter(|(_, c)| c.is_some())
            .filter_map(|(m, _)| http_get_json(m, "/leafz"))
            .map(|v| v["leafnodes"].as_u64().unwrap_or(0) as usize)
            .sum()
    }

    /// The last lines of every server's log.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for region in &self.regions {
            for i in 1..=region.servers() {
                let log = std::fs::read_to_string(region.log_path(i)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                out.push_str(&format!("--- {} ---\n", region.server_name(i)));
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The credentials file (every region takes it).
    pub fn creds(&self) -> PathBuf {
        self.dir.join("creds")
    }

    pub fn names(&self) -> Vec<String> {
        self.regions.iter().map(|r| r.name.clone()).collect()
    }

    fn index(&self, name: &str) -> usize {
        self.regions
            .iter()
            .position(|r| r.name == name)
            .unwrap_or_else(|| panic!("no region {name:?}"))
    }

    pub fn region(&self, name: &str) -> &TestRegion {
        &self.regions[self.index(name)]
    }

    /// How node `node` of region `region` connects (to its own region's servers).
    pub fn config(&self, region: &str, node: &str) -> NatsConfig {
        let r = self.region(region);
        NatsConfig {
            urls: r.urls(),
            creds_file: self.creds(),
            monitor_urls: r.monitors(),
            node: node.into(),
            safety: Safety::Required,
        }
    }

    /// `mltrader serve`'s flags for node `node` of region `region`: its region's servers, one
    /// copy of each stream per server of the region, spread over the region's nodes.
    pub fn serve_flags(&self, region: &str, node: &str) -> Vec<String> {
        let mut flags = self.region_args(region);
        flags.extend([
            "--node".into(),
            node.into(),
            "--nats-replicas".into(),
            self.region(region).servers().to_string(),
            "--spread".into(),
        ]);
        flags
    }

    /// The flags that point `mltrader region` (or `serve`) at region `region`'s servers.
    pub fn region_args(&self, region: &str) -> Vec<String> {
        let r = self.region(region);
        vec![
            "--nats".into(),
            r.urls().join(","),
            "--creds".into(),
            self.creds().display().to_string(),
            "--nats-monitor".into(),
            r.monitors().join(","),
            "--region".into(),
            region.into(),
        ]
    }

    /// Connects as node `node` of `region`; panics on failure (for tests).
    pub fn connect(&self, region: &str, node: &str) -> crate::Nats {
        crate::Nats::connect_in_region(&self.config(region, node), Some(region))
            .unwrap_or_else(|e| panic!("connect to region {region} as {node}: {e}"))
    }

    /// The proxy of the link between regions `a` and `b` (one of them the hub).
    pub fn link(&self, a: &str, b: &str) -> &WanProxy {
        let (a, b) = (self.index(a), self.index(b));
        assert!(a != b, "a link joins two regions");
        let spoke = if a == 0 { b } else { a };
        assert!(
            a == 0 || b == 0,
            "regions {a} and {b} are joined through the hub, not directly"
        );
        &self
            .links
            .iter()
            .find(|(r, _)| *r == spoke)
            .expect("every spoke has a link")
            .1
    }

    /// Sets every link's one-way delay.
    pub fn set_delay_ms(&self, delay_ms: u64) {
        for (_, proxy) in &self.links {
            proxy.set_delay_ms(delay_ms);
        }
    }

    /// Cuts every link (a partition between every pair of regions).
    pub fn cut(&self) {
        for (_, proxy) in &self.links {
            proxy.cut();
        }
    }

    /// Heals every link, and waits until the leafnodes are connected again; panics if they
    /// are not within [`RELINK_WAIT_MS`].
    pub fn heal(&self) {
        for (_, proxy) in &self.links {
            proxy.heal();
        }
        self.wait_ready(Duration::from_millis(RELINK_WAIT_MS));
    }

    /// SIGKILLs every server of `region` (a region lost).
    pub fn kill_region(&mut self, region: &str) {
        let r = self.index(region);
        for child in self.regions[r].children.iter_mut() {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Starts every killed server of `region` again, on its store, and waits for the regions
    /// to be ready.
    pub fn restart_region(&mut self, region: &str) {
        let r = self.index(region);
        for i in 1..=self.regions[r].servers() {
            if self.regions[r].children[i - 1].is_none() {
                let child = self.spawn(r, i);
                self.regions[r].children[i - 1] = Some(child);
            }
        }
        self.wait_ready(Duration::from_millis(START_WAIT_MS));
    }
}

impl Drop for TestRegions {
    fn drop(&mut self) {
        for region in &mut self.regions {
            for child in region.children.iter_mut().flatten() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Server `i`'s configuration: its region's domain, routes to its region's other servers, a
/// leafnode listener, and the leafnode remotes (through the link's proxy) if its region dials.
/// `no_advertise`: else the listening side tells a remote its leafnode URLs, and the remote's
/// next redial goes straight to them, around the proxy (seen: a cut healed itself in 1 s).
fn server_conf(
    region: &TestRegion,
    i: usize,
    route_ports: &[u16],
    password: &str,
    remotes: Option<&[String]>,
) -> String {
    let store = region.dir.join(format!("n{i}")).join("store");
    let mut conf = format!(
        "server_name: {name}\nlisten: 127.0.0.1:{client}\nhttp: 127.0.0.1:{monitor}\n\
         jetstream {{\n    store_dir: \"{store}\"\n    sync_interval: always\n    domain: {domain}\n}}\n\
         authorization {{\n    user: \"mltrader\"\n    password: \"{password}\"\n}}\n",
        name = region.server_name(i),
        client = region.client_ports[i - 1],
        monitor = region.monitor_ports[i - 1],
        store = store.display(),
        domain = region.name,
    );
    if route_ports.len() > 1 {
        let routes: Vec<String> = route_ports
            .iter()
            .enumerate()
            .filter(|(j, _)| j + 1 != i)
            .map(|(_, p)| format!("nats-route://127.0.0.1:{p}"))
            .collect();
        conf.push_str(&format!(
            "cluster {{\n    name: {name}\n    listen: 127.0.0.1:{port}\n    routes: [ {routes} ]\n}}\n",
            name = region.name,
            port = route_ports[i - 1],
            routes = routes.join(", ")
        ));
    }
    conf.push_str(&format!(
        "leafnodes {{\n    listen: 127.0.0.1:{port}\n    no_advertise: true\n    authorization {{\n        user: \"mltrader\"\n        password: \"{password}\"\n    }}\n",
        port = region.leaf_ports[i - 1],
    ));
    if let Some(urls) = remotes {
        let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
        let denied: Vec<String> = crate::region::LEAF_DENIED_SUBJECTS
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect();
        let denied = denied.join(", ");
        conf.push_str(&format!(
            "    reconnect: {LEAF_RECONNECT_S}\n    remotes [ {{ urls: [ {} ], deny_imports: [ {denied} ], deny_exports: [ {denied} ] }} ]\n",
            urls.join(", ")
        ));
    }
    conf.push_str("}\n");
    conf
}
