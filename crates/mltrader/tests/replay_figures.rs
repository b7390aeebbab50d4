//! `mltrader replay` reports two figures, labelled: the rebuild of the game state (what a
//! restart from the first record costs) and, for comparison, the scan alone of the same files,
//! with their read timed apart. Both cover the same records and bytes of a real run's logs.

mod common;

use common::{mltrader, Http, Server};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_reports_the_rebuild_and_the_scan_of_the_same_files() {
    let mut server = Server::start(&[]);
    let http = Http::new(server.url());
    for i in 0..3 {
        let t = http.join(&format!("pilot {i}")).await;
        let go = http
            .post(
                "/v1/travel",
                Some(&t),
                json!({"to": "Alpha Centauri", "wait": true}),
            )
            .await;
        assert_eq!(go.status, 200, "{go:?}");
    }
    // The server owns the temporary data directory: keep it alive past the stop.
    let (status, server) = tokio::task::spawn_blocking(move || (server.stop_in_place(), server))
        .await
        .unwrap();
    let data = server.data_dir().to_path_buf();
    assert!(status.success(), "{status}");

    let out = mltrader()
        .args(["replay", "--json", "--data"])
        .arg(&data)
        .output()
        .expect("run mltrader replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).expect("replay --json");
    let (rebuild, scan) = (&r["rebuild"], &r["scan_only"]);
    let records = rebuild["records"].as_u64().expect("rebuild.records");
    assert!(records > 3 * 3, "joins, departures and arrivals: {r:#}");
    assert_eq!(
        scan["records"].as_u64(),
        Some(records),
        "the same records: {r:#}"
    );
    assert_eq!(scan["bytes"], rebuild["bytes"], "the same files: {r:#}");
    for figure in [
        &rebuild["records_per_s"],
        &scan["records_per_s_from_memory"],
        &scan["records_per_s_with_read"],
    ] {
        assert!(figure.as_f64() > Some(0.0), "{r:#}");
    }
    assert!(
        scan["read_seconds"].as_f64() > Some(0.0),
        "the read is timed: {r:#}"
    );

    let out = mltrader()
        .args(["replay", "--data"])
        .arg(&data)
        .output()
        .expect("run mltrader replay");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("rebuild (read the files"), "{said}");
    assert!(said.contains("the scan alone"), "{said}");
}
