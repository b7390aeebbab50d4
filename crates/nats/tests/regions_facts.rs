//! Facts about two JetStream domains joined by a leafnode (issue 20, docs/REGIONS.md "Facts
//! checked"), on the pinned nats-server, through `testing::TestRegions` and its `WanProxy`:
//! a publish in `eu` captured by a stream of `us` (stored once, acknowledged across the link,
//! its latency against the link's delay), what a publisher sees with the link cut while `eu`'s
//! own writes go on, a mirror in `eu` of a `us` stream (catch-up, lag while cut, resume after
//! heal), and a KV bucket of `us` read from `eu`. Each fact is asserted; the figures are
//! printed (`cargo test -p mltrader-nats --test regions_facts -- --nocapture`).
//!
//! Size: `MLT_REGIONS_FACTS_PUBLISHES` (default 20) publishes per delay measured.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use mltrader_nats::testing::TestRegions;

fn workspace_root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

async fn raw_client(regions: &TestRegions, region: &str) -> async_nats::Client {
    let creds = mltrader_nats::Credentials::load(&regions.creds()).unwrap();
    async_nats::ConnectOptions::with_user_and_password(creds.user, creds.password)
        .connect(regions.region(region).urls())
        .await
        .unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Publishes until the first ack (the stream's subject interest crosses the leafnode some time
/// after the stream is made); returns how long that took.
async fn first_ack(js: &jetstream::Context, subject: &str) -> Duration {
    let start = Instant::now();
    loop {
        match js.publish(subject.to_string(), "hello".into()).await {
            Ok(ack) => {
                if ack.await.is_ok() {
                    return start.elapsed();
                }
            }
            Err(e) => eprintln!("first publish: {e}"),
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no ack in 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn mirror_info(js: &jetstream::Context, name: &str) -> stream::Info {
    js.get_stream(name)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone()
}

async fn wait_mirror(js: &jetstream::Context, name: &str, messages: u64) -> Duration {
    let start = Instant::now();
    loop {
        let info = mirror_info(js, name).await;
        if info.state.messages >= messages {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "mirror {name} has {} of {messages} after 60 s: {:?}",
            info.state.messages,
            info.mirror
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn two_domains_joined_by_a_leafnode() {
    let Some(exe) =
        mltrader_nats::locate::nats_server_for_test(&workspace_root(), "regions (issue 20)")
    else {
        return;
    };
    let publishes: usize = std::env::var("MLT_REGIONS_FACTS_PUBLISHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let regions = TestRegions::start(exe, &["eu", "us"], 1, 0);
    let link = regions.link("eu", "us");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let eu = raw_client(&regions, "eu").await;
        let us = raw_client(&regions, "us").await;
        let js_us = jetstream::with_domain(us.clone(), "us");
        let js_eu = jetstream::with_domain(eu.clone(), "eu");
        // From eu, us's domain is reached through the leafnode: create us's stream from eu.
        let js_us_from_eu = jetstream::with_domain(eu.clone(), "us");
        js_us_from_eu
            .create_stream(stream::Config {
                name: "MLT_JUMPS".into(),
                subjects: vec!["mlt.us.jump.>".into()],
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(300),
                ..Default::default()
            })
            .await
            .expect("eu creates a stream in us's domain over the leafnode");
        js_eu
            .create_stream(stream::Config {
                name: "MLT_LOGS".into(),
                subjects: vec!["mlt.eu.log.>".into()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .unwrap();
        // The plain API prefix stays in one's own domain.
        let plain_eu = jetstream::new(eu.clone());
        assert!(
            plain_eu.get_stream("MLT_JUMPS").await.is_err(),
            "$JS.API from eu does not reach us's streams"
        );
        assert!(plain_eu.get_stream("MLT_LOGS").await.is_ok());

        // 1. A publish in eu captured by us's stream: acked across the link, stored once.
        let took = first_ack(&js_eu, "mlt.us.jump.warmup.x").await;
        println!("FACT first ack of a publish in eu to a us stream: {took:?} after the stream was made");
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", "transfer-1");
        let ack1 = js_eu
            .publish_with_headers("mlt.us.jump.sol.alpha", headers.clone(), "jump".into())
            .await
            .unwrap()
            .await
            .unwrap();
        let ack2 = js_eu
            .publish_with_headers("mlt.us.jump.sol.alpha", headers, "jump".into())
            .await
            .unwrap()
            .await
            .unwrap();
        println!(
            "FACT ack in eu: stream {} domain {:?} seq {} duplicate {}; retry: seq {} duplicate {}",
            ack1.stream, ack1.domain, ack1.sequence, ack1.duplicate, ack2.sequence, ack2.duplicate
        );
        assert_eq!(ack1.stream, "MLT_JUMPS");
        assert_eq!(ack1.domain, "us", "the ack names the domain that stored it");
        assert!(!ack1.duplicate && ack2.duplicate && ack2.sequence == ack1.sequence);
        let stored = js_us.get_stream("MLT_JUMPS").await.unwrap().info().await.unwrap().state.messages;
        assert_eq!(stored, 2, "the warm-up and one jump: the retry is not stored twice");

        // 2. Latency across the link against the proxy's one-way delay.
        for delay_ms in [0u64, 20, 50] {
            link.set_delay_ms(delay_ms);
            // A connection's chunks already queued keep their delay: one publish to settle.
            js_eu.publish("mlt.us.jump.settle.x", "x".into()).await.unwrap().await.unwrap();
            let mut took = Vec::new();
            for i in 0..publishes {
                let start = Instant::now();
                js_eu
                    .publish(format!("mlt.us.jump.lat.n{i}"), "jump".into())
                    .await
                    .unwrap()
                    .await
                    .unwrap();
                took.push(start.elapsed());
            }
            took.sort();
            let (p50, p99) = (percentile(&took, 0.5), percentile(&took, 0.99));
            println!("FIGURE publish eu -> us stream, one-way delay {delay_ms} ms: p50 {p50:?} p99 {p99:?} ({publishes} publishes, one in flight)");
            assert!(
                p50 >= Duration::from_millis(2 * delay_ms),
                "an ack crosses the link twice: p50 {p50:?} under a delay of {delay_ms} ms"
            );
        }
        link.set_delay_ms(0);

        // 3. A mirror in eu of us's stream, sourced through us's API prefix.
        let us_last = js_us.get_stream("MLT_JUMPS").await.unwrap().info().await.unwrap().state.last_sequence;
        js_eu
            .create_stream(stream::Config {
                name: "MLT_JUMPS_OF_us".into(),
                storage: stream::StorageType::File,
                mirror: Some(stream::Source {
                    name: "MLT_JUMPS".into(),
                    external: Some(stream::External {
                        api_prefix: "$JS.us.API".into(),
                        delivery_prefix: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .expect("a mirror of another domain's stream");
        let took = wait_mirror(&js_eu, "MLT_JUMPS_OF_us", us_last).await;
        let info = mirror_info(&js_eu, "MLT_JUMPS_OF_us").await;
        println!(
            "FACT mirror caught up {us_last} messages in {took:?}; its info: lag {:?} active {:?}",
            info.mirror.as_ref().map(|m| m.lag),
            info.mirror.as_ref().and_then(|m| m.active)
        );

        // 4. The link cut.
        link.cut();
        let start = Instant::now();
        let cut_publish = match js_eu.publish("mlt.us.jump.cut.x", "x".into()).await {
            Err(e) => format!("publish refused at once: {e} (kind {:?})", e.kind()),
            Ok(ack) => match ack.await {
                Ok(a) => format!("acknowledged?! {a:?}"),
                Err(e) => format!("ack failed: {e} (kind {:?})", e.kind()),
            },
        };
        println!("FACT a publish in eu to us's subject with the link cut: {cut_publish} after {:?}", start.elapsed());
        assert!(!cut_publish.starts_with("acknowledged"));
        let start = Instant::now();
        for i in 0..publishes {
            js_eu
                .publish(format!("mlt.eu.log.systems.s{i}"), "record".into())
                .await
                .unwrap()
                .await
                .expect("eu's own writes go on with the link cut");
        }
        println!("FACT with the link cut, eu wrote {publishes} messages to its own stream in {:?}", start.elapsed());
        for i in 0..publishes {
            js_us
                .publish(format!("mlt.us.jump.during.n{i}"), "jump".into())
                .await
                .unwrap()
                .await
                .expect("us's own writes go on with the link cut");
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
        let info = mirror_info(&js_eu, "MLT_JUMPS_OF_us").await;
        let us_last = js_us.get_stream("MLT_JUMPS").await.unwrap().info().await.unwrap().state.last_sequence;
        println!(
            "FACT mirror 3 s into the cut: {} of {us_last} messages; info lag {:?} active {:?}",
            info.state.last_sequence,
            info.mirror.as_ref().map(|m| m.lag),
            info.mirror.as_ref().and_then(|m| m.active)
        );
        if info.state.last_sequence >= us_last {
            println!("{}", regions.log_tails());
        }
        assert!(info.state.last_sequence < us_last, "nothing crosses a cut link");
        let kv_cut = jetstream::with_domain(eu.clone(), "us").get_key_value("mlt_homes").await;
        println!("FACT with the link cut, opening us's bucket from eu: {:?}", kv_cut.err().map(|e| e.to_string()));

        // 5. Heal: the mirror resumes.
        let healed = Instant::now();
        link.heal();
        let relinked = healed.elapsed();
        let took = wait_mirror(&js_eu, "MLT_JUMPS_OF_us", us_last).await;
        let info = mirror_info(&js_eu, "MLT_JUMPS_OF_us").await;
        println!(
            "FACT after heal: leafnode back in {relinked:?}, mirror caught up {took:?} later; info lag {:?} active {:?}",
            info.mirror.as_ref().map(|m| m.lag),
            info.mirror.as_ref().and_then(|m| m.active)
        );
        let took = first_ack(&js_eu, "mlt.us.jump.after.x").await;
        println!("FACT after heal, a publish in eu to us acked within {took:?}");

        // 6. A KV bucket of us read (and written) from eu.
        let kv_us = js_us
            .create_key_value(jetstream::kv::Config {
                bucket: "mlt_homes".into(),
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .unwrap();
        kv_us.put("sol", "us 7".into()).await.unwrap();
        let from_eu = jetstream::with_domain(eu.clone(), "us")
            .get_key_value("mlt_homes")
            .await
            .expect("us's bucket opened from eu");
        let got = from_eu.get("sol").await.unwrap();
        assert_eq!(got.as_deref(), Some(&b"us 7"[..]), "eu reads us's bucket");
        from_eu.put("sol", "eu 8".into()).await.expect("eu writes us's bucket");
        assert_eq!(kv_us.get("sol").await.unwrap().as_deref(), Some(&b"eu 8"[..]));
        assert!(
            js_eu.get_key_value("mlt_homes").await.is_err(),
            "eu's own domain has no such bucket: a domain is its own namespace"
        );
        println!("FACT a KV bucket of us is read and written from eu with jetstream::with_domain(client, \"us\")");
    });
}
