//! The operator's map in a real browser: headless Chromium (Debian's `chromium`), driven over
//! the Chrome DevTools Protocol, against a real `mltrader serve` with a player moving.
//! Checks through the DOM that every system of the galaxy is drawn, that a jump made through
//! the API changes the populations on the page without a reload, that a system's panel shows
//! its market, and that the page survives a server restart (killed, restarted on the same port
//! and data directory: the page says it was away, then updates again). Saves a screenshot
//! (target/map.png, or MLTRADER_MAP_SCREENSHOT) and prints the first paint's time.
//!
//! Skips, saying so, when no chromium is found, unless MLTRADER_BROWSER_REQUIRED=1 (CI sets
//! it). MLTRADER_CHROMIUM names the browser's executable.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{free_port, Http, Server};
use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// How long the page may take to show a change.
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the browser may take to start.
const BROWSER_START_TIMEOUT: Duration = Duration::from_secs(30);

fn chromium() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("MLTRADER_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        })
}

/// A headless Chromium and one page of it, spoken to over the DevTools protocol.
struct Browser {
    child: Child,
    page: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(exe: &PathBuf) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut child = Command::new(exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1400,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        });
        let browser_url = rx
            .recv_timeout(BROWSER_START_TIMEOUT)
            .expect("chromium printed its DevTools address");
        // ws://127.0.0.1:PORT/devtools/browser/ID: the page's own socket is listed on /json.
        let port = browser_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host:port")
            .to_string();
        let deadline = Instant::now() + BROWSER_START_TIMEOUT;
        let page_url = loop {
            let list = http_get_json(&port, "/json/list");
            if let Some(url) = list.as_array().and_then(|targets| {
                targets
                    .iter()
                    .find(|t| t["type"] == "page")
                    .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_string))
            }) {
                break url;
            }
            assert!(Instant::now() < deadline, "chromium shows no page: {list}");
            std::thread::sleep(Duration::from_millis(100));
        };
        let (page, _) = tungstenite::connect(page_url.as_str()).expect("the page's socket");
        Browser {
            child,
            page,
            next_id: 1,
            _profile: profile,
        }
    }

    /// Sends one command and returns its result (events in between are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let msg = json!({"id": id, "method": method, "params": params});
        self.page
            .send(Message::text(msg.to_string()))
            .expect("send to chromium");
        loop {
            let reply = self.page.read().expect("read from chromium");
            let Message::Text(text) = reply else { continue };
            let v: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
            if v["id"] == id {
                if let Some(e) = v.get("error") {
                    panic!("{method}: {e}");
                }
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page (promises awaited).
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page; panics with `what` and the page's state.
    fn wait_for(&mut self, what: &str, expression: &str) {
        let deadline = Instant::now() + PAGE_TIMEOUT;
        while Instant::now() < deadline {
            if self.eval(expression) == Value::Bool(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let state = self.eval(
            "JSON.stringify({conn: document.getElementById('conn').textContent, \
             away: document.getElementById('away').textContent, \
             systems: document.querySelectorAll('#systems g.system').length})",
        );
        panic!("the page did not show {what} within {PAGE_TIMEOUT:?}: {state}");
    }

    fn screenshot(&mut self, path: &std::path::Path) {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("png data"))
            .expect("base64");
        std::fs::write(path, png).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// GET a JSON document from chromium's DevTools HTTP endpoint (HTTP/1.1 on loopback: it
/// answers HTTP/1.0 with nothing, and keeps the connection open, so the body is read by its
/// Content-Length).
fn http_get_json(host_port: &str, path: &str) -> Value {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect(host_port) else {
        return Value::Null;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n"
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(usize::MAX);
            if body.len() >= len {
                return serde_json::from_str(&body[..len]).unwrap_or(Value::Null);
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return Value::Null,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The population the page shows for a system.
fn shown_population(b: &mut Browser, slug: &str) -> Value {
    b.eval(&format!(
        "(() => {{ const g = document.querySelector('#systems g.system[data-slug=\"{slug}\"]'); \
         return g ? Number(g.getAttribute('data-population')) : null; }})()"
    ))
}

#[test]
fn the_map_draws_the_galaxy_follows_jumps_live_shows_a_market_and_survives_a_restart() {
    let Some(exe) = chromium() else {
        assert!(
            std::env::var("MLTRADER_BROWSER_REQUIRED").as_deref() != Ok("1"),
            "MLTRADER_BROWSER_REQUIRED=1 but no chromium was found (apt-get install chromium, \
             or set MLTRADER_CHROMIUM)"
        );
        eprintln!("SKIPPED: no chromium found (apt-get install chromium, or MLTRADER_CHROMIUM)");
        return;
    };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let listen = format!("127.0.0.1:{}", free_port());
    let server_args = ["--listen", listen.as_str(), "--tick-hz", "20"];
    let server = Server::start_with(Some(&data), &[], &server_args);
    let http = Http::new(server.url());

    let systems = rt.block_on(http.get("/v1/systems", None)).body;
    let systems = systems.as_array().expect("systems").clone();
    let home = systems.iter().find(|s| s["home"] == true).expect("home");
    let home_slug = home["slug"].as_str().unwrap().to_string();
    let home_name = home["name"].as_str().unwrap().to_string();
    let lanes = home["neighbours"].as_array().unwrap();
    assert!(lanes.len() >= 2, "the test needs two lanes out of home");
    let slug_of = |name: &str| {
        systems
            .iter()
            .find(|s| s["name"] == name)
            .map(|s| s["slug"].as_str().unwrap().to_string())
            .unwrap()
    };
    let target_name = lanes[1].as_str().unwrap().to_string();
    let target = slug_of(&target_name);
    let bot_to = lanes[0].as_str().unwrap().to_string();

    // Players moving all along: a bot jumps back and forth on another lane.
    let ann = rt.block_on(http.join("ann"));
    let bot = rt.block_on(http.join("bot"));
    let moving = Arc::new(AtomicBool::new(true));
    let bot_task = {
        let (moving, url, home_name) =
            (moving.clone(), server.url().to_string(), home_name.clone());
        rt.spawn(async move {
            let http = Http::new(&url);
            let mut there = false;
            while moving.load(Ordering::Relaxed) {
                let to = if there { &home_name } else { &bot_to };
                let go = http
                    .post("/v1/travel", Some(&bot), json!({"to": to, "wait": true}))
                    .await;
                if go.status == 200 {
                    there = !there;
                }
                let _ = http.post("/v1/refuel", Some(&bot), json!({})).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let mut b = Browser::start(&exe);
    b.call("Page.enable", json!({}));
    b.call(
        "Page.navigate",
        json!({"url": format!("{}/", server.url())}),
    );

    // Every system of the galaxy is drawn.
    b.wait_for(
        "every system",
        &format!(
            "document.querySelectorAll('#systems g.system').length === {}",
            systems.len()
        ),
    );
    for s in &systems {
        let slug = s["slug"].as_str().unwrap();
        let drawn = b.eval(&format!(
            "document.querySelector('#systems g.system[data-slug=\"{slug}\"]') !== null"
        ));
        assert_eq!(drawn, Value::Bool(true), "{slug} is drawn");
    }
    b.wait_for(
        "the stream",
        "document.getElementById('conn').textContent === 'live'",
    );
    let paint = b.eval(
        "JSON.stringify(performance.getEntriesByType('paint').map(p => [p.name, p.startTime]))",
    );
    eprintln!("first paint (ms since navigation): {paint}");
    // A reload would lose this mark.
    b.eval("window.__notReloaded = true");

    // A jump through the API changes the populations on the page, without a reload.
    let before = shown_population(&mut b, &target);
    let go = rt.block_on(http.post(
        "/v1/travel",
        Some(&ann),
        json!({"to": target_name, "wait": true}),
    ));
    assert_eq!(go.status, 200, "{go:?}");
    let expect = before.as_f64().expect("a population") + 1.0;
    b.wait_for(
        "ann's landing",
        &format!(
            "Number(document.querySelector('#systems g.system[data-slug=\"{target}\"]')\
             .getAttribute('data-population')) === {expect} && window.__notReloaded === true"
        ),
    );

    // The lanes that jumps crossed in the last minute are lit.
    b.wait_for(
        "a lit lane",
        "document.querySelectorAll('#lanes line.lit').length > 0",
    );

    // The system's panel shows its market and its players.
    b.eval(&format!(
        "document.querySelector('#systems g.system[data-slug=\"{target}\"]')\
         .dispatchEvent(new MouseEvent('click', {{bubbles: true}}))"
    ));
    b.wait_for(
        "the panel's market",
        &format!(
            "document.getElementById('panel').getAttribute('data-slug') === '{target}' && \
             document.querySelectorAll('#panel table.market tbody tr[data-good]').length > 0 && \
             [...document.querySelectorAll('#panel ul.players li')].some(li => li.textContent === 'ann')"
        ),
    );
    let screenshot = std::env::var("MLTRADER_MAP_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/map.png"));
    b.screenshot(&screenshot);
    eprintln!("screenshot: {}", screenshot.display());

    // The server dies; the page says it is away; the server comes back on the same port and
    // data directory; the page says it was away and follows the galaxy again.
    moving.store(false, Ordering::Relaxed);
    let _ = rt.block_on(bot_task);
    server.kill();
    b.wait_for(
        "that the server is away",
        "document.getElementById('conn').textContent === 'away'",
    );
    let server = Server::start_with(Some(&data), &[], &server_args);
    let http = Http::new(server.url());
    b.wait_for(
        "that it is back",
        "document.getElementById('conn').textContent === 'live' && \
         Number(document.body.getAttribute('data-reconnected')) >= 1 && \
         document.getElementById('away').textContent.includes('was away') && \
         window.__notReloaded === true",
    );
    let before = shown_population(&mut b, &home_slug)
        .as_f64()
        .expect("home's population");
    let back = rt.block_on(http.post(
        "/v1/travel",
        Some(&ann),
        json!({"to": home_name, "wait": true}),
    ));
    assert_eq!(back.status, 200, "{back:?}");
    b.wait_for(
        "ann back home after the restart",
        &format!(
            "Number(document.querySelector('#systems g.system[data-slug=\"{home_slug}\"]')\
             .getAttribute('data-population')) === {}",
            before + 1.0
        ),
    );
    drop(server);
}
