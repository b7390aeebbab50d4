//! The economy's page (`GET /economy`) and its JSON (`GET /v1/economy/report`) on a data
//! directory written by a real server and trading, fighting bots: the page is well-formed XML
//! with its charts as SVG, names every source and sink the report names, and its totals equal
//! `mltrader check`'s conservation figures on the same logs.
//!
//! The logs the page reads are a copy of the stopped server's directory, served by an API
//! built in-process (`NetConfig::economy_logs`): a running galaxy keeps writing economy steps
//! (subsidies, taxes), so a page of live logs and a check after it could never be compared
//! exactly. A live `mltrader serve` is asked too: it serves the page from its own logs.
//!
//! Small by default (4 bots for 4 s); `MLTRADER_ECONOMY_TEST_BOTS` and
//! `MLTRADER_ECONOMY_TEST_SECONDS` make it larger by hand.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{mltrader, run_swarm, Server};
use mesh::{Mesh, MeshConfig};
use net::{Api, NetConfig};
use serde_json::Value;
use sim::galaxy::Galaxy;
use store::datadir::DataDir;

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::get(url).await.expect("GET");
    (r.status().as_u16(), r.text().await.unwrap())
}

/// A page as XML (its `<!DOCTYPE html>` allowed).
fn parse(text: &str) -> Result<roxmltree::Document<'_>, roxmltree::Error> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: true,
        ..roxmltree::ParsingOptions::default()
    };
    roxmltree::Document::parse_with_options(text, options)
}

/// The text of the element of `id`.
fn text_of(doc: &roxmltree::Document, id: &str) -> String {
    let node = doc
        .descendants()
        .find(|n| n.attribute("id") == Some(id))
        .unwrap_or_else(|| panic!("no element #{id} on the page"));
    node.text().unwrap_or("").to_string()
}

/// The (name, amount) rows of table `id` (rows of class `rule`).
fn rows_of(doc: &roxmltree::Document, id: &str) -> Vec<(String, u128)> {
    let table = doc
        .descendants()
        .find(|n| n.attribute("id") == Some(id))
        .unwrap_or_else(|| panic!("no table #{id}"));
    table
        .descendants()
        .filter(|n| n.attribute("class") == Some("rule"))
        .map(|tr| {
            let cells: Vec<String> = tr
                .children()
                .filter(|c| c.has_tag_name("td"))
                .map(|c| c.text().unwrap_or("").to_string())
                .collect();
            (cells[0].clone(), cells[1].parse().expect("an amount"))
        })
        .collect()
}

fn names(v: &Value) -> Vec<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_economy_page_names_every_rule_and_its_totals_are_checks() {
    let bots = env_or("MLTRADER_ECONOMY_TEST_BOTS", 4).to_string();
    let seconds = env_or("MLTRADER_ECONOMY_TEST_SECONDS", 4).to_string();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let shocks = sim::shock::SHOCKS_PER_100K_TICKS.to_string();
    let server = Server::start_with(Some(&data), &[], &["--shocks-per-100k-ticks", &shocks]);
    run_swarm(
        server.url(),
        &[
            "--bots",
            &bots,
            "--duration",
            &seconds,
            "--seed",
            "7",
            "--attack-percent",
            "50",
        ],
    );
    // The live server serves the page from its own logs.
    let (status, live) = get(&format!("{}/economy", server.url())).await;
    assert_eq!(status, 200, "{live}");
    assert!(!live.contains("id=\"unavailable\""), "{live}");
    parse(&live).expect("the live page is well-formed");
    let status = server.stop();
    assert!(status.success(), "the server stopped with {status}");

    let out = mltrader()
        .args(["check", "--json", "--data"])
        .arg(&data)
        .output()
        .expect("run check");
    let check: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert!(out.status.success(), "check failed: {check:#}");
    let frozen = dir.path().join("frozen");
    copy_dir(&data, &frozen);

    // An API over a fresh galaxy whose economy's page reads the frozen copy.
    let fresh = DataDir::at(dir.path().join("fresh"));
    fresh.create().unwrap();
    let (mesh, _) = Mesh::start(fresh, Galaxy::default_galaxy(), MeshConfig::default())
        .await
        .unwrap();
    let config = NetConfig {
        economy_logs: Some(DataDir::at(&frozen)),
        ..NetConfig::default()
    };
    let api = Api::build(mesh, config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = api
        .router
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (status, json) = get(&format!("{url}/v1/economy/report")).await;
    assert_eq!(status, 200, "{json}");
    let answer: Value = serde_json::from_str(&json).unwrap();
    let flows = &answer["report"]["flows"];
    assert_eq!(flows["credits_created"], check["credits_by_source"]);
    assert_eq!(flows["credits_destroyed"], check["credits_by_sink"]);
    assert_eq!(answer["check"]["credits_held"], check["credits_held"]);

    let (status, html) = get(&format!("{url}/economy")).await;
    assert_eq!(status, 200, "{html}");
    let doc = parse(&html).expect("the page is well-formed XML");
    // The charts: each an SVG, each with a line drawn, the credits' naming their rules.
    let svgs: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("svg"))
        .collect();
    assert_eq!(svgs.len(), 7, "seven charts");
    for svg in &svgs {
        let one = &html[svg.range()];
        roxmltree::Document::parse(one).expect("each SVG parses on its own");
    }
    let lines = |i: usize| {
        svgs[i]
            .descendants()
            .filter(|n| n.has_tag_name("polyline"))
            .count()
    };
    assert!(
        lines(0) > 0 && lines(1) > 0,
        "the credits' charts draw lines"
    );
    let labels: Vec<String> = svgs[0]
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect();
    for source in names(&check["credits_by_source"]) {
        assert!(labels.contains(&source), "{source} in {labels:?}");
    }

    // Every source and sink the report names, each with the report's amount.
    let as_rows = |v: &Value| -> Vec<(String, u128)> {
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, n)| (k.clone(), u128::from(n.as_u64().unwrap())))
            .collect()
    };
    assert_eq!(
        rows_of(&doc, "credits-created"),
        as_rows(&flows["credits_created"])
    );
    assert_eq!(
        rows_of(&doc, "credits-destroyed"),
        as_rows(&flows["credits_destroyed"])
    );
    for (table, key) in [
        ("goods-made", "goods_made"),
        ("goods-used", "goods_destroyed"),
    ] {
        let shown: Vec<String> = rows_of(&doc, table).into_iter().map(|r| r.0).collect();
        assert_eq!(shown, names(&flows[key]), "{table}");
    }
    assert!(
        !rows_of(&doc, "credits-destroyed").is_empty(),
        "the bots bought fuel"
    );

    // The totals shown are check's conservation figures.
    let n = |id: &str| -> i128 { text_of(&doc, id).parse().unwrap() };
    let c = |k: &str| check[k].as_u64().unwrap() as i128;
    assert_eq!(n("credits-created-total"), c("credits_granted"));
    assert_eq!(n("credits-destroyed-total"), c("credits_spent"));
    assert_eq!(n("credits-net"), c("credits_held"));
    assert_eq!(n("circulation-end"), c("credits_held"));
    assert_eq!(n("check-held"), c("credits_held"));
    assert_eq!(text_of(&doc, "check-ok"), "ok");

    // A window and a price picked by link: the page draws that price.
    let report = &answer["report"];
    let last = report["last_tick"].as_u64().unwrap();
    let series = &report["prices"][0];
    let (system, good) = (
        series["system"].as_str().unwrap(),
        series["good"].as_str().unwrap(),
    );
    let cut = last / 2;
    let (status, half) = get(&format!(
        "{url}/economy?to={cut}&bucket_ticks=50&system={system}&good={good}"
    ))
    .await;
    assert_eq!(status, 200, "{half}");
    let doc = parse(&half).expect("the windowed page parses");
    assert!(
        doc.descendants()
            .any(|n| n.text().map(str::trim) == Some(&format!("Mid price of {good} at {system}"))),
        "the price picked is drawn"
    );
    // A window that ends before it starts is empty: nothing flowed in it.
    let (status, empty) = get(&format!("{url}/v1/economy/report?from=10&to=5")).await;
    assert_eq!(status, 200, "{empty}");
    let empty: Value = serde_json::from_str(&empty).unwrap();
    assert_eq!(
        empty["report"]["flows"]["credits_created"],
        serde_json::json!({})
    );
    assert_eq!(
        empty["report"]["circulation_at_start_cr"],
        empty["report"]["circulation_at_end_cr"]
    );
    let (status, bad) = get(&format!("{url}/economy?bucket_ticks=0")).await;
    assert_eq!(status, 400, "{bad}");
    assert!(bad.contains("bad_query"), "{bad}");
}
