//! The storage seam over NATS JetStream: the galaxy's logs in one replicated stream, and
//! ownership as leases in a KV bucket (docs/NATS.md).
//!
//! - [`Nats::connect`]: a connection with credentials ([`Credentials`], a file), refused with a
//!   clear error when they are missing or wrong, and the safety check ([`safety`]): every
//!   server named is nats-server 2.10 or newer and syncs every write (`sync_interval:
//!   always`), else nothing starts.
//! - [`NatsLogs`]: [`store::backend::LogStore`] on one stream, one subject per log
//!   ([`subject`]); a message carries one group commit's exact record lines, published with a
//!   message id (a retry after a lost ack is not stored twice) and the subject's expected last
//!   sequence (a writer that lost its place, a zombie, is refused).
//! - [`NatsOwnership`]: [`store::backend::Ownership`] as leases in a KV bucket, the epoch being
//!   the revision of the claim.
//! - [`members`]: the nodes announcing themselves in a KV bucket (key = node name, renewed
//!   every quarter period), and a poll of every key for an observer to judge who is live.
//! - [`requests`], [`whereis`], [`accounts`]: any node answers any player (issue 19): a
//!   player's request carried to the owner of their unit, the scatter request that finds
//!   where a player is, and the galaxy's accounts (token key to player name).
//! - [`NatsSnapshots`]: [`store::backend::SnapshotStore`] in an object store bucket, and the
//!   galaxy's definition beside the snapshots.
//! - [`NatsLinks`] ([`pairs`]): mesh's `links::Links` on the pair subjects of issue 19, one per
//!   origin and destination unit (`mlt.jump.<from>.<to>`): the committed jumps handed between
//!   nodes, deduplicated by transfer id, fenced by the origin's lease epoch, read live.
//! - [`NatsNews`] ([`news`]): mesh's `spread_news::News` on core NATS subjects: price gossip
//!   towards neighbours on other nodes, every system's report for every node's economy view,
//!   and every unit's feed events for every node's `/v1/events` (soft state, lossy, repaired
//!   by the next round).
//!
//! This crate never interprets records (the store's scanner reads the bytes, as it reads
//! files) and never decides what recovery does; it never writes to a stream without the
//! expected last sequence of the subject.

pub mod accounts;
mod bridge;
pub mod copies;
mod creds;
mod error;
pub mod export;
pub mod lease;
pub mod limits;
pub mod locate;
pub mod logs;
pub mod members;
pub mod news;
pub mod pairs;
pub mod reconcile;
pub mod region;
pub mod rehome;
pub mod requests;
pub mod safety;
pub mod snapshots;
pub mod subject;
#[cfg(feature = "testing")]
pub mod testing;
pub mod whereis;
pub mod writers;

use std::sync::Arc;
use std::time::Duration;

pub use bridge::Bridge;
pub use creds::Credentials;
pub use error::NatsError;
pub use lease::NatsOwnership;
pub use logs::NatsLogs;
pub use news::NatsNews;
pub use pairs::NatsLinks;
pub use safety::Safety;
pub use snapshots::NatsSnapshots;

/// How to reach the NATS servers, and how strictly to check them.
#[derive(Clone, Debug)]
pub struct NatsConfig {
    /// Client URLs of the servers (`nats://127.0.0.1:4222`); any one of them is enough to
    /// connect, the client learns the others.
    pub urls: Vec<String>,
    /// The credentials file ([`Credentials`]).
    pub creds_file: std::path::PathBuf,
    /// Monitoring URLs (`http://127.0.0.1:8222`) of every server of the cluster: the safety
    /// check reads each one's `/varz`.
    pub monitor_urls: Vec<String>,
    /// This node's name (in the connection's name and in the leases it holds).
    pub node: String,
    pub safety: Safety,
}

/// A connection to the NATS servers, checked safe, with the runtime that drives it. Clone it
/// freely: every clone shares one connection.
#[derive(Clone)]
pub struct Nats {
    pub(crate) bridge: Arc<Bridge>,
    pub(crate) client: async_nats::Client,
    pub(crate) jetstream: async_nats::jetstream::Context,
    pub(crate) node: String,
    /// The region this node is in (issue 20), whose domain `jetstream` speaks to; None: no
    /// regions (issues 18/19: subjects without a region).
    pub(crate) region: Option<String>,
}

impl Nats {
    /// Reads the credentials, connects, and runs the safety check; blocks until done. Callable
    /// from any thread, inside a tokio runtime or not (the connection runs on its own).
    pub fn connect(config: &NatsConfig) -> Result<Nats, NatsError> {
        Nats::connect_in_region(config, None)
    }

    /// [`Nats::connect`] for a node of region `region` (issue 20): its JetStream context
    /// speaks to the region's own domain (`$JS.<region>.API`, never another region's by
    /// accident), and the logs and pair subjects it opens carry the region
    /// ([`region::log_prefix`]). None: as [`Nats::connect`]. (A parameter rather than a field
    /// of [`NatsConfig`], so that the places building a config need no change.)
    pub fn connect_in_region(config: &NatsConfig, region: Option<&str>) -> Result<Nats, NatsError> {
        if let Some(r) = region {
            region::checked(r).map_err(|e| NatsError::jetstream("region", e))?;
        }
        assert!(!config.node.is_empty(), "a node has a name");
        let creds = Credentials::load(&config.creds_file)?;
        let bridge = Arc::new(Bridge::new()?);
        let urls = config.urls.clone();
        let node = config.node.clone();
        let creds_file = config.creds_file.clone();
        let client = bridge.run(async move {
            async_nats::ConnectOptions::with_user_and_password(creds.user, creds.password)
                .name(format!("mltrader {node}"))
                .connection_timeout(Duration::from_millis(limits::CONNECT_TIMEOUT_MS))
                .connect(urls.clone())
                .await
                .map_err(|error| NatsError::connect(&urls, &creds_file, error))
        })??;
        let version = client.server_info().version;
        safety::check(&bridge, &version, &config.monitor_urls, config.safety)?;
        let for_context = client.clone();
        // Building a context spawns its ack task: on the bridge's runtime.
        let domain = region.map(String::from);
        let jetstream = bridge.run(async move {
            let builder = async_nats::jetstream::ContextBuilder::new()
                .timeout(Duration::from_millis(limits::ACK_TIMEOUT_MS));
            match domain {
                Some(d) => builder
                    .api_prefix(region::api_prefix(&d))
                    .build(for_context),
                None => builder.build(for_context),
            }
        })?;
        Ok(Nats {
            bridge,
            client,
            jetstream,
            node: config.node.clone(),
            region: region.map(String::from),
        })
    }

    /// The region this connection's node is in (None: no regions).
    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    /// A JetStream context on region `region`'s domain, over this connection (through the
    /// leafnode link when it is another region's).
    pub fn jetstream_of(&self, region: &str) -> async_nats::jetstream::Context {
        let client = self.client.clone();
        let prefix = region::api_prefix(region);
        self.bridge
            .run(async move {
                async_nats::jetstream::ContextBuilder::new()
                    .timeout(Duration::from_millis(limits::ACK_TIMEOUT_MS))
                    .api_prefix(prefix)
                    .build(client)
            })
            .expect("the bridge runs")
    }

    /// The core NATS client (for tests and the region tools).
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    /// Runs `future` on the connection's runtime and waits for it.
    pub fn block_on<F>(&self, future: F) -> F::Output
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.bridge.run(future).expect("the bridge runs")
    }

    /// Creates KV bucket `config.bucket`, or updates it to `config`, and opens it; blocks.
    pub(crate) fn open_bucket(
        &self,
        config: async_nats::jetstream::kv::Config,
    ) -> Result<async_nats::jetstream::kv::Store, NatsError> {
        let js = self.jetstream.clone();
        let what = format!("cannot open bucket {}", config.bucket);
        self.bridge.run(async move {
            js.create_or_update_key_value(config)
                .await
                .map_err(|e| NatsError::jetstream(what, e))
        })?
    }

    /// The largest message the server takes (its `max_payload`), in bytes.
    pub fn max_payload_bytes(&self) -> usize {
        self.client.server_info().max_payload
    }
}
