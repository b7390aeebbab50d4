//! One client holding thousands of half-sent requests open (the attack of issue 15): a real
//! `mltrader serve` whose open-file limit is low enough for the flood to reach it. Other
//! clients keep being answered promptly, and the server closes every half-request (at once over
//! the per-address cap, after the header or body timeout otherwise).
//!
//! Before the accept loop of `net::server` the flood took every descriptor: the server logged
//! `accept error: Too many open files` every second and `GET /v1/status` never answered.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Http, Server};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// The server's open-file limit: below the flood's size, so that without caps it runs out.
const FD_LIMIT: u64 = 2_048;
/// Half-sent request heads (`GET` without the blank line that ends the head).
const HALF_HEADERS: usize = 3_000;
/// Requests whose body is shorter than their `Content-Length`.
const HALF_BODIES: usize = 1_000;
/// The server's timeouts in this test, in seconds.
const HEADER_TIMEOUT_S: u64 = 2;
const BODY_TIMEOUT_S: u64 = 2;
/// How long a normal request may take while the flood is open.
const PROMPT: Duration = Duration::from_secs(2);
/// Connections opened at once while flooding (the listen backlog holds the rest).
const FLOOD_BATCH: usize = 100;

/// Long enough for a SYN sent again (after 1 s: a client port picked again while the server
/// still holds its last connection in TIME_WAIT gets one), short enough to end a flood that a
/// server no longer accepts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Connections of the flood that may fail to open although the server accepts (see above).
const MAY_NOT_CONNECT: usize = (HALF_HEADERS + HALF_BODIES) / 100;

/// The attacker's addresses: loopback, but not the 127.0.0.1 of the normal clients.
const HEADER_FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const BODY_FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

const HALF_HEAD: &[u8] = b"GET /v1/status HTTP/1.1\r\nHost: x\r\n";
const HALF_BODY: &[u8] = b"POST /v1/join HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\": \"sl";

/// Opens `n` connections from `from` to `to`, each sending `bytes` and then nothing. A
/// connection that cannot be opened within [`CONNECT_TIMEOUT`] is counted, not kept: it means
/// the server no longer accepts (and after a batch of which none opened, the rest are counted
/// without trying).
async fn flood(from: Ipv4Addr, to: SocketAddr, n: usize, bytes: &'static [u8]) -> Flood {
    let mut out = Flood::default();
    let mut left = n;
    while left > 0 {
        let batch = left.min(FLOOD_BATCH);
        left -= batch;
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..batch {
            opening.spawn(async move {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
                let mut tcp = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(to))
                    .await
                    .map_err(|_| std::io::Error::other("connect timed out"))??;
                // The server may have closed it at once (over a cap): then this write fails,
                // which is fine; the socket is read for its end later.
                let _ = tcp.write_all(bytes).await;
                std::io::Result::Ok(tcp)
            });
        }
        let mut connected = 0;
        for opened in opening.join_all().await {
            match opened {
                Ok(tcp) => {
                    out.open.push(tcp);
                    connected += 1;
                }
                Err(e) => {
                    out.not_connected += 1;
                    out.first_error.get_or_insert(e.to_string());
                }
            }
        }
        if connected == 0 {
            // The server accepts no more: the rest would wait for nothing.
            out.not_connected += left;
            break;
        }
    }
    out
}

#[derive(Default)]
struct Flood {
    open: Vec<TcpStream>,
    not_connected: usize,
    first_error: Option<String>,
}

/// Reads `tcp` until the server closes it (EOF or reset) or `deadline` passes; true if closed.
async fn closed_by(mut tcp: TcpStream, deadline: tokio::time::Instant) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // An answer (a 4xx for the body that never came) before the close.
            Ok(Ok(_)) => continue,
        }
    }
}

/// How many of `sockets` the server closes by `deadline`.
async fn count_closed(sockets: Vec<TcpStream>, deadline: tokio::time::Instant) -> usize {
    let mut reads = tokio::task::JoinSet::new();
    for tcp in sockets {
        reads.spawn(closed_by(tcp, deadline));
    }
    reads.join_all().await.into_iter().filter(|c| *c).count()
}

/// Runs `what` and asserts it took at most [`PROMPT`].
async fn promptly<T>(label: &str, what: impl std::future::Future<Output = T>) -> T {
    let started = Instant::now();
    let out = tokio::time::timeout(PROMPT, what)
        .await
        .unwrap_or_else(|_| panic!("{label} did not answer within {PROMPT:?} during the flood"));
    eprintln!("{label}: {:?}", started.elapsed());
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_requests_neither_starve_other_clients_nor_stay_open() {
    // Both tests of this file may run at once, each holding its flood open.
    common::raise_own_fd_limit(2 * (HALF_HEADERS + HALF_BODIES) as u64 + 1_000);
    let header_s = HEADER_TIMEOUT_S.to_string();
    let body_s = BODY_TIMEOUT_S.to_string();
    let server = Server::start_limited(
        None,
        &[],
        // One shard a system: the reserve of 16 instances a system would not fit 2,048 files.
        &[
            "--max-instances",
            "1",
            "--header-timeout-s",
            &header_s,
            "--body-timeout-s",
            &body_s,
        ],
        Some(FD_LIMIT),
    );
    let addr = server.addr();

    let started = Instant::now();
    let heads = flood(HEADER_FLOODER, addr, HALF_HEADERS, HALF_HEAD).await;
    let bodies = flood(BODY_FLOODER, addr, HALF_BODIES, HALF_BODY).await;
    let flooded_in = started.elapsed();
    eprintln!(
        "flood open in {flooded_in:?}: {} half-heads, {} half-bodies connected ({} and {} not: {:?} {:?})",
        heads.open.len(),
        bodies.open.len(),
        heads.not_connected,
        bodies.not_connected,
        heads.first_error,
        bodies.first_error,
    );

    // Other clients are answered promptly while every half-request is still open.
    let http = Http::new(server.url());
    let status = promptly("GET /v1/status", http.get("/v1/status", None)).await;
    assert_eq!(status.status, 200, "{status:?}");
    let token = promptly("POST /v1/join", http.join("steady")).await;
    let travel = promptly(
        "POST /v1/travel",
        http.post("/v1/travel", Some(&token), json!({"to": "Barnard's Star"})),
    )
    .await;
    assert_eq!(travel.status, 200, "{travel:?}");
    assert!(
        flooded_in < Duration::from_secs(30),
        "opening the flood took {flooded_in:?}: the server stopped accepting"
    );
    assert!(
        heads.not_connected + bodies.not_connected <= MAY_NOT_CONNECT,
        "{} connections the server never accepted",
        heads.not_connected + bodies.not_connected
    );

    // Every half-request is closed: over the per-address cap at once, the others after their
    // timeout (the slack covers a loaded machine).
    let deadline =
        tokio::time::Instant::now() + Duration::from_secs(HEADER_TIMEOUT_S.max(BODY_TIMEOUT_S) + 5);
    let (held_heads, held_bodies) = (heads.open.len(), bodies.open.len());
    let closed_heads = count_closed(heads.open, deadline).await;
    let closed_bodies = count_closed(bodies.open, deadline).await;
    assert_eq!(
        (closed_heads, closed_bodies),
        (held_heads, held_bodies),
        "half-heads and half-bodies the server closed, of those it accepted"
    );
    let again = promptly(
        "GET /v1/status after the flood",
        http.get("/v1/status", None),
    )
    .await;
    assert_eq!(again.status, 200, "{again:?}");

    // The refusals were counted (and said when the server stopped).
    let mut server = server;
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.stop_in_place();
        (status, server)
    });
    let (exit, server) = exit.await.unwrap();
    assert!(exit.success(), "graceful stop after the flood: {exit}");
    // Over the per-address cap the rest of each address's flood was refused; a flood slower
    // than the timeouts saw places freed as it went, each timeout's worth of time.
    let per_address = net::connections::DEFAULT_MAX_CONNECTIONS_PER_IP;
    let timeouts_during_flood =
        1 + flooded_in.as_secs() as usize / HEADER_TIMEOUT_S.min(BODY_TIMEOUT_S) as usize;
    let held_at_most = 2 * per_address * timeouts_during_flood;
    let refused_at_least = (HALF_HEADERS + HALF_BODIES).saturating_sub(held_at_most);
    let said = server
        .output()
        .into_iter()
        .find(|l| l.starts_with("refused "))
        .unwrap_or_else(|| panic!("no refusal count in {:?}", server.output()));
    let refused: usize = said
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count in {said:?}"));
    assert!(
        refused >= refused_at_least.max(1) && refused <= HALF_HEADERS + HALF_BODIES,
        "{said:?}: at least {refused_at_least} were over the per-address cap"
    );
}

/// Addresses of a flood spread so that no one of them reaches the per-address cap.
const SPREAD_ADDRESSES: u8 = 20;
/// Half-heads from each of them: together well past the open-file limit.
const SPREAD_HALF_HEADS: usize = 200;
/// Players who join (each a new player log file) while the flood holds every connection.
const JOINS_DURING_FLOOD: usize = 30;

/// A flood from many addresses fills the total connection cap; the mesh still has the
/// descriptors it needs to write: players who join over a connection opened before the flood
/// (each join opens a new player log and appends to the system's log) and travel are answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_that_fills_the_connection_cap_leaves_the_mesh_its_files() {
    // Both tests of this file may run at once, each holding its flood open.
    common::raise_own_fd_limit(2 * (HALF_HEADERS + HALF_BODIES) as u64 + 1_000);
    // The kept connection must outlive the flood's opening, idle.
    let server = Server::start_limited(
        None,
        &[],
        &["--max-instances", "1", "--header-timeout-s", "60"],
        Some(FD_LIMIT),
    );
    let addr = server.addr();
    // One kept-alive connection, opened before the flood and used for everything after it
    // (by hand: a pooling client may open a new connection for the next request before the
    // last one is back in its pool, and a new connection is refused while the cap is full).
    let mut kept = KeptConnection(TcpStream::connect(addr).await.expect("connect"));
    assert_eq!(kept.request("GET", "/v1/status", None, None).await.0, 200);

    let mut held = Vec::new();
    for i in 0..SPREAD_ADDRESSES {
        let from = Ipv4Addr::new(127, 0, 1, 10 + i);
        let f = flood(from, addr, SPREAD_HALF_HEADS, HALF_HEAD).await;
        held.extend(f.open);
    }
    for i in 0..JOINS_DURING_FLOOD {
        let name = format!("late {i}");
        let (status, joined) = promptly(
            "POST /v1/join",
            kept.request("POST", "/v1/join", None, Some(json!({ "name": name }))),
        )
        .await;
        assert_eq!(status, 201, "join of {name}: {joined}");
        let token = joined["token"].as_str().expect("token").to_string();
        let (status, travel) = promptly(
            "POST /v1/travel",
            kept.request(
                "POST",
                "/v1/travel",
                Some(&token),
                Some(json!({"to": "Barnard's Star"})),
            ),
        )
        .await;
        assert_eq!(status, 200, "travel of {name}: {travel}");
    }
    drop(held);

    let mut server = server;
    let exit = tokio::task::spawn_blocking(move || {
        let status = server.stop_in_place();
        (status, server)
    });
    let (exit, server) = exit.await.unwrap();
    assert!(exit.success(), "graceful stop after the flood: {exit}");
    let said = server
        .output()
        .into_iter()
        .find(|l| l.starts_with("refused "))
        .unwrap_or_else(|| panic!("no refusal count in {:?}", server.output()));
    assert!(
        !said.contains("(0 over the total"),
        "the flood was meant to reach the total cap: {said:?}"
    );
    let report = common::check(server.data_dir());
    assert!(
        report.status.success(),
        "check after the flood: {}{}",
        String::from_utf8_lossy(&report.stdout),
        String::from_utf8_lossy(&report.stderr)
    );
}

/// One HTTP/1.1 connection, used for one request after another.
struct KeptConnection(TcpStream);

impl KeptConnection {
    /// Sends a request and reads its answer (status and JSON body; the server sends every
    /// answer of these routes with a `content-length`).
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.0.write_all(head.as_bytes()).await.expect("send head");
        self.0.write_all(body.as_bytes()).await.expect("send body");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let n = self.0.read(&mut buf).await.expect("read answer");
            assert!(n > 0, "the server closed the kept connection");
            got.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
        let status: u16 = head[9..12].parse().expect("status code");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        while got.len() < head_end + length {
            let n = self.0.read(&mut buf).await.expect("read body");
            assert!(n > 0, "the server closed the kept connection mid-answer");
            got.extend_from_slice(&buf[..n]);
        }
        let answer = serde_json::from_slice(&got[head_end..head_end + length]).unwrap_or_default();
        (status, answer)
    }
}
