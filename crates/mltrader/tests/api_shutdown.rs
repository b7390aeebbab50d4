//! Stopping a real server with SIGTERM while players are mid-jump, waiting for landings and
//! holding event streams: it ends their answers, exits 0, and leaves a data directory that
//! `mltrader check` finds sound.

mod common;

use std::time::{Duration, Instant};

use common::{check, Http, Server};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_cleanly_with_streams_open_and_check_passes() {
    // Sol to Alpha Centauri takes 4.4 s: the jump is still in flight at SIGTERM.
    let mut server = Server::start(&["--ticks-per-ly", "50"]);
    let http = Http::new(server.url());
    let mut tokens = Vec::new();
    for i in 0..5 {
        tokens.push(http.join(&format!("pilot {i}")).await);
    }
    for t in &tokens[..2] {
        let a = http
            .post("/v1/travel", Some(t), json!({"to": "Barnard's Star"}))
            .await;
        assert_eq!(a.status, 200, "{a:?}");
    }
    let refuel = http
        .post("/v1/refuel", Some(&tokens[2]), json!({"units": 1}))
        .await;
    assert_eq!(refuel.code(), "tank_full");

    // A stream and a landing wait stay open until the server stops.
    let stream = http
        .client
        .get(format!("{}/v1/events", http.url))
        .bearer_auth(&tokens[0])
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let waiter = {
        let http = http.clone();
        let t = tokens[1].clone();
        tokio::spawn(async move { http.get("/v1/landing", Some(&t)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;

    let asked = Instant::now();
    let status = tokio::task::spawn_blocking(move || {
        let status = server.stop_in_place();
        (status, server)
    });
    let (status, server) = status.await.unwrap();
    assert!(status.success(), "graceful stop exits 0, got {status}");
    assert!(
        asked.elapsed() < Duration::from_secs(15),
        "open streams and waits do not hold the shutdown: {:?}",
        asked.elapsed()
    );
    let waited = waiter.await.unwrap();
    assert_eq!(waited.status, 503, "{waited:?}");
    assert_eq!(waited.code(), "shutting_down");
    drop(stream);
    assert!(
        server
            .output()
            .iter()
            .any(|l| l.starts_with("stopped cleanly")),
        "{:?}",
        server.output()
    );

    let report = check(server.data_dir());
    assert!(
        report.status.success(),
        "check after SIGTERM: {}{}",
        String::from_utf8_lossy(&report.stdout),
        String::from_utf8_lossy(&report.stderr)
    );
}

/// An operator (or a script) may send SIGTERM the moment the server says where it serves. It
/// used to start listening for the signal only later, at the first poll of its shutdown; a
/// signal in between was lost and the server ran on (one start in four, in a release build).
#[test]
fn sigterm_right_after_serving_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for start in 0..8 {
        let mut server = Server::start_with(Some(&data), &[], &[]);
        // stop_in_place panics if the server has not exited 30 s after SIGTERM.
        let status = server.stop_in_place();
        assert!(
            status.success(),
            "start {start}: stop exits 0, got {status}"
        );
    }
}
