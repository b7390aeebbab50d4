//! A raw access token never reaches the disk nor the server's output: players join, act
//! (travel, refuel, trade, attack, read their history), the server is stopped and started
//! again on the same data directory and the same tokens act again; then every file under the
//! data directory (logs, snapshots, archive, checkpoints) and everything the server printed on
//! stdout and stderr, at the most verbose log level, is searched for each token. Only the
//! token's SHA-256 (`key=`) may be stored.

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{mltrader, sigterm, Http};
use serde_json::json;

/// Players that join and act.
const PLAYERS: usize = 3;

/// A `mltrader serve` at the most verbose log level, its stdout and stderr appended to files.
struct Served {
    child: Child,
    url: String,
}

impl Served {
    fn start(data: &Path, out: &Path, err: &Path) -> Served {
        let append = |p: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(p)
                .expect("open an output file")
        };
        let addresses = |said: &str| said.matches(" on http://").count();
        let before = addresses(&std::fs::read_to_string(out).unwrap_or_default());
        let child = mltrader()
            .args(["serve", "--listen", "127.0.0.1:0", "--tick-hz", "50"])
            .args(["--ticks-per-ly", "1", "--data"])
            .arg(data)
            .env("MLTRADER_LOG", "trace")
            .stdout(Stdio::from(append(out)))
            .stderr(Stdio::from(append(err)))
            .spawn()
            .expect("start mltrader serve");
        // The file holds every start's output: wait for this start's address.
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = loop {
            let said = std::fs::read_to_string(out).unwrap_or_default();
            if addresses(&said) > before {
                let rest = said.rsplit(" on http://").next().unwrap_or_default();
                break format!(
                    "http://{}",
                    rest.split_whitespace().next().unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start: {said}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        Served { child, url }
    }

    fn stop(mut self) {
        sigterm(self.child.id());
        let status = self.child.wait().expect("wait for the server");
        assert!(status.success(), "the server stopped with {status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_tokens_never_reach_the_data_directory_nor_the_server_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (out, err) = (dir.path().join("serve.out"), dir.path().join("serve.err"));

    let server = Served::start(&data, &out, &err);
    let http = Http::new(&server.url);
    let mut tokens = Vec::new();
    for i in 0..PLAYERS {
        tokens.push(http.join(&format!("pilot {i}")).await);
    }
    play(&http, &tokens, 1).await;
    server.stop();

    let server = Served::start(&data, &out, &err);
    let http = Http::new(&server.url);
    play(&http, &tokens, 2).await;
    server.stop();

    let mut files = vec![out.clone(), err.clone()];
    files.extend(every_file(&data));
    assert!(
        files.len() > 2 + PLAYERS,
        "the data directory has its logs: {files:?}"
    );
    let stderr = std::fs::read_to_string(&err).unwrap();
    assert!(
        stderr.lines().count() > 10,
        "the server logged at trace level: {stderr}"
    );
    let mut keys_stored = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for token in &tokens {
            assert!(
                !text.contains(token.as_str()),
                "a raw token is in {}",
                file.display()
            );
            keys_stored += text.matches(&key_of(token)).count();
        }
    }
    assert!(
        keys_stored >= PLAYERS,
        "each token's SHA-256 is stored instead (found {keys_stored})"
    );
}

/// Each player acts once of each kind the API has, in round `round`.
async fn play(http: &Http, tokens: &[String], round: u32) {
    for (i, t) in tokens.iter().enumerate() {
        let me = http.get("/v1/me", Some(t)).await;
        assert_eq!(me.status, 200, "round {round}: {me:?}");
        let buy = http
            .post(
                "/v1/trade",
                Some(t),
                json!({"side": "buy", "good": "food", "qty": 1}),
            )
            .await;
        assert_eq!(buy.status, 200, "round {round}: {buy:?}");
        let target = format!("pilot {}", (i + 1) % tokens.len());
        let attack = http
            .post("/v1/attack", Some(t), json!({"target": target}))
            .await;
        assert_eq!(attack.status, 200, "round {round}: {attack:?}");
        let cease = http
            .post("/v1/attack", Some(t), json!({"target": null}))
            .await;
        assert_eq!(cease.status, 200, "round {round}: {cease:?}");
        let history = http.get("/v1/history", Some(t)).await;
        assert_eq!(history.status, 200, "round {round}: {history:?}");
    }
    // One player travels there and back, refuelling where it lands.
    let t = &tokens[0];
    for to in ["Alpha Centauri", "Sol"] {
        let go = http
            .post("/v1/travel", Some(t), json!({"to": to, "wait": true}))
            .await;
        assert_eq!(go.status, 200, "round {round}: {go:?}");
        let refuel = http.post("/v1/refuel", Some(t), json!({})).await;
        assert!(
            refuel.status == 200 || refuel.code() == "tank_full",
            "round {round}: {refuel:?}"
        );
    }
}

/// Every file under `dir`, at any depth.
fn every_file(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The key the server stores for a token: its SHA-256, in hex.
fn key_of(token: &str) -> String {
    net::auth::key_of(token)
}
