//! The population of the systems other nodes of this node's galaxy (or region) run, as last
//! heard from them (`GET /v1/systems` shows it, with its age; before, those systems showed 0):
//! a task of the node asks, every [`NEIGHBOURS_EVERY_MS`], one `GET /v1/status` per node that
//! runs such a system (forwarded over NATS to the owner of the system's unit,
//! `mlt.req.sys.<slug>`; its answer covers every system it runs). `regions::RegionLinks` asks
//! the other regions' owners the same way ([`populations_of`]).
//!
//! Read-only: never writes, never runs in the node's round, and never waits in a request (the
//! routes read what the task last heard).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use nats::Nats;

/// How often the task asks the other nodes, in milliseconds.
pub const NEIGHBOURS_EVERY_MS: u64 = 1_000;

/// How long one owner's `GET /v1/status` may take, in milliseconds (over a link between
/// regions too).
pub const POPULATION_TIMEOUT_MS: u64 = 2_000;

/// The systems whose population to ask for, by slug (this node's share of the galaxy left out),
/// called once a look.
pub type Others = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// What the task heard: population by slug, and when.
type Heard = Arc<Mutex<BTreeMap<String, (usize, Instant)>>>;

/// The populations other nodes run, kept by a task of its own.
pub struct Neighbours {
    heard: Heard,
    task: tokio::task::JoinHandle<()>,
}

impl Neighbours {
    /// Starts the task (on the current tokio runtime); `others` says which systems to ask for.
    pub fn start(nats: &Nats, others: Others) -> Neighbours {
        let heard = Heard::default();
        let task = tokio::spawn(ask_neighbours(
            nats::requests::Requester::new(nats),
            others,
            heard.clone(),
        ));
        Neighbours { heard, task }
    }

    /// Population by slug as last heard, and its age in seconds.
    pub fn populations(&self) -> BTreeMap<String, (usize, f64)> {
        let heard = self.heard.lock().unwrap_or_else(|e| e.into_inner());
        heard
            .iter()
            .map(|(slug, (p, at))| (slug.clone(), (*p, at.elapsed().as_secs_f64())))
            .collect()
    }
}

impl Drop for Neighbours {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The task: every [`NEIGHBOURS_EVERY_MS`], the population of each of `others()`, into `heard`
/// (a system no longer listed is forgotten; one whose owner does not answer keeps what was
/// heard, with its age).
async fn ask_neighbours(requester: nats::requests::Requester, others: Others, heard: Heard) {
    let mut asked: u64 = 0;
    let mut every = tokio::time::interval(Duration::from_millis(NEIGHBOURS_EVERY_MS));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let systems = others();
        let populations =
            populations_of(&requester, &systems, &mut asked, "this node's neighbours").await;
        let now = Instant::now();
        let mut heard = heard.lock().unwrap_or_else(|e| e.into_inner());
        heard.retain(|slug, _| systems.contains(slug));
        for (slug, population) in populations {
            if systems.contains(&slug) {
                heard.insert(slug, (population, now));
            }
        }
    }
}

/// The population of each of `systems` whose owner answers: one `GET /v1/status` per owner
/// node (its answer covers every system it runs, so a system already heard is not asked).
pub async fn populations_of(
    requester: &nats::requests::Requester,
    systems: &[String],
    asked: &mut u64,
    whose: &str,
) -> BTreeMap<String, usize> {
    let mut heard = BTreeMap::new();
    for slug in systems {
        if heard.contains_key(slug) {
            continue;
        }
        *asked += 1;
        match population_of(requester, slug, *asked).await {
            Ok(p) => heard.extend(p),
            Err(e) => tracing::debug!("{whose}: no population of {slug}: {e}"),
        }
    }
    heard
}

/// The population of every system the owner of `slug`'s unit runs (its `GET /v1/status`,
/// forwarded over NATS), by slug.
async fn population_of(
    requester: &nats::requests::Requester,
    slug: &str,
    asked: u64,
) -> anyhow::Result<BTreeMap<String, usize>> {
    use api::forward::{ForwardedReply, ForwardedRequest};
    let unit = mesh::protocol::deal::unit_of_system(slug);
    let request = ForwardedRequest {
        request_id: format!("regions-{}-{asked}", std::process::id()),
        player: None,
        method: "GET".into(),
        path_and_query: "/v1/status".into(),
        content_type: None,
        body: String::new(),
        // The nodes' own request: no client's address.
        client_ip: None,
    };
    let payload = serde_json::to_vec(&request).expect("a request serializes");
    let answer = requester
        .forward(
            &unit,
            &request.request_id,
            payload,
            Duration::from_millis(POPULATION_TIMEOUT_MS),
        )
        .await?;
    let ForwardedReply::Answered(response) = serde_json::from_slice(&answer)? else {
        bail!("unit {unit} is being handed over");
    };
    if response.status != 200 {
        bail!(
            "unit {unit} answered {}: {}",
            response.status,
            response.body
        );
    }
    let status: Vec<api::ShardStatus> = serde_json::from_str(&response.body)?;
    Ok(status
        .into_iter()
        .map(|s| {
            let population = s.population + s.instances.iter().map(|i| i.population).sum::<usize>();
            (s.slug, population)
        })
        .collect())
}
