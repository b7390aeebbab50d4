//! News between the nodes of a spread galaxy (issue 19, "any node answers any player"): what a
//! node's systems tell the systems and listeners of other nodes, and how a node takes in what
//! the others told.
//!
//! Three kinds of news, all soft state (eventually consistent, lossy today inside one process
//! too, each loss repaired or bounded as said):
//! - **gossip**: a primary's whole [`PriceView`], sent every economy period to each lane
//!   neighbour; a neighbour whose primary runs on another node hears it through [`News`]
//!   ([`News::gossip`]), the others as before through their queue. A lost round is repaired by
//!   the next one.
//! - **prices**: a primary's own report ([`Published`]) for the galaxy view of every node
//!   ([`News::prices`]), taken in after the same delay as a local one (counted from the
//!   report's `published_ms`, which travels with it, so the age shown stays the real age).
//! - **feed events**: every durable event of a unit this node runs ([`News::event`]), put in
//!   the other nodes' broadcast, so that `/v1/events` and every listener of
//!   [`Mesh::events`] hears every unit's events. A lost event is lost to that node's
//!   listeners, as a listener lagging by [`crate::feed::FEED_LEN`] loses it.
//!
//! The carrier ([`News`]) is NATS core subjects in production (`nats::news`), or memory for the
//! mesh's tests ([`MemoryNewsBus`]). A node holds at most one carrier ([`Mesh::attach_news`]);
//! a mesh without one (one process) behaves as before.
//!
//! Owns the seam, what the mesh hands it, and the taking in of what it hears. Never decides a
//! game rule, never touches a shard's state (gossip goes through the shard's queue, as a local
//! neighbour's does), never blocks a shard (every send is a `try_send`), never tells again
//! what it heard (no echo between nodes), and never delivers an event of this node's units
//! twice to this node's listeners (a carrier never hands a node what that node told).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde::Serialize;
use sim::galaxy::SystemId;
use sim::instance::InstanceId;
use tokio::sync::mpsc;

use crate::feed::FeedEvent;
use crate::limits::NEWS_INBOX_LEN;
use crate::price_sync::{unix_ms, PriceView, Published};
use crate::shard::ShardMessage;
use crate::{Context, Handoff, Mesh, MeshError};

/// A boxed future, so that [`News`] can be used as a trait object.
pub type NewsFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a carrier could not start listening.
#[derive(Clone, Debug, thiserror::Error)]
pub enum NewsError {
    /// The subscriptions could not be made (the connection is closed, the server refused).
    #[error("cannot listen to the other nodes' news: {0}")]
    Listen(String),
}

/// What another node told, as the carrier hands it to this node. The carrier checks what it
/// decodes: every system named is one of the galaxy's, and `to` is a lane neighbour of `from`.
#[derive(Clone, Debug, PartialEq)]
pub enum Heard {
    /// The view of prices system `from` gossips to its lane neighbour `to`.
    Gossip {
        from: SystemId,
        to: SystemId,
        view: PriceView,
    },
    /// A system's own report, for the galaxy view.
    Prices(Published),
    /// A durable event of a unit another node runs.
    Event(FeedEvent),
}

/// Where a carrier hands what it hears.
pub type NewsSink = mpsc::Sender<Heard>;

/// The carrier of news between the nodes of a spread galaxy. Telling never waits and never
/// fails loudly: a carrier that cannot send drops the news and counts it.
pub trait News: Send + Sync + 'static {
    /// Tells the node that runs system `to`'s primary (a lane neighbour of `from`, not run
    /// here) the view `from` gossips.
    fn gossip(&self, from: SystemId, to: SystemId, view: &Arc<PriceView>);

    /// Tells every other node a system's own report (for their galaxy views).
    fn prices(&self, report: &Published);

    /// Tells every other node a durable feed event of a unit this node runs.
    fn event(&self, event: &Arc<FeedEvent>);

    /// Starts handing `sink` what every other node tells (never what this carrier told), until
    /// `sink` is closed; returns once the carrier listens. A full sink drops what comes (the
    /// carrier counts it).
    fn listen(&self, sink: NewsSink) -> NewsFuture<'_, Result<(), NewsError>>;
}

/// What this node took in of the others' news, for tests and figures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NewsCounts {
    /// Views handed to a primary running here.
    pub gossip_in: u64,
    /// Views for a system whose primary does not run here (a carrier hands every node every
    /// gossip; the owner takes it in).
    pub gossip_not_here: u64,
    /// Views dropped: the primary's queue was full (the next round repairs it).
    pub gossip_dropped: u64,
    /// Reports handed to the galaxy view.
    pub prices_in: u64,
    /// Reports dropped: the galaxy view's queue was full (the next report repairs it).
    pub prices_dropped: u64,
    /// Feed events put in this node's broadcast.
    pub events_in: u64,
}

#[derive(Default)]
struct Counters {
    gossip_in: AtomicU64,
    gossip_not_here: AtomicU64,
    gossip_dropped: AtomicU64,
    prices_in: AtomicU64,
    prices_dropped: AtomicU64,
    events_in: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// A node's carrier and what it took in: the mesh's [`Context`] holds one once attached.
pub struct NodeNews {
    news: Arc<dyn News>,
    counters: Counters,
}

impl Context {
    /// Gossips `view` of system `from` to its neighbour `to`, whose primary does not run here
    /// (another node runs it, or none during a hand-over): through the carrier, if any.
    pub(crate) fn gossip_away(&self, from: SystemId, to: SystemId, view: &Arc<PriceView>) {
        debug_assert!(
            !self.runs(to),
            "a neighbour run here hears through its queue"
        );
        if let Some(n) = self.news.get() {
            n.news.gossip(from, to, view);
        }
    }

    /// Tells the other nodes a report of a system run here (for their galaxy views).
    pub(crate) fn report_away(&self, report: &Published) {
        if let Some(n) = self.news.get() {
            n.news.prices(report);
        }
    }

    /// Tells the other nodes a durable event of a unit run here.
    pub(crate) fn event_away(&self, event: &Arc<FeedEvent>) {
        if let Some(n) = self.news.get() {
            n.news.event(event);
        }
    }

    /// Whether a carrier is attached: feed events are then built even with nobody listening
    /// here (other nodes may).
    pub(crate) fn tells_news(&self) -> bool {
        self.news.get().is_some()
    }

    /// Takes in one piece of another node's news. Never waits.
    fn take_in(&self, n: &NodeNews, heard: Heard) {
        match heard {
            Heard::Gossip { from, to, view } => {
                assert!(
                    self.galaxy.has_lane(from, to),
                    "BUG: the carrier handed gossip between {from:?} and {to:?}, not neighbours"
                );
                match self.shard(InstanceId::primary(to)) {
                    None => bump(&n.counters.gossip_not_here),
                    Some(q) => match q.try_send(ShardMessage::Gossip(Arc::new(view))) {
                        Ok(()) => bump(&n.counters.gossip_in),
                        Err(_) => bump(&n.counters.gossip_dropped),
                    },
                }
            }
            Heard::Prices(report) => {
                assert!(
                    report.system.index() < self.galaxy.len(),
                    "BUG: the carrier handed a report of {:?}, not in the galaxy",
                    report.system
                );
                // Counted from its publication, as a local report's delay is: a report that
                // took longer than the delay to get here is taken in at once.
                let age_ms = unix_ms().saturating_sub(report.published_ms);
                let delay_ms = self.config.economy_delay_ms;
                let now = tokio::time::Instant::now();
                let sent = now
                    .checked_sub(Duration::from_millis(age_ms.min(delay_ms)))
                    .unwrap_or(now);
                match self.published.try_send((sent, report)) {
                    Ok(()) => bump(&n.counters.prices_in),
                    Err(_) => bump(&n.counters.prices_dropped),
                }
            }
            Heard::Event(event) => {
                assert!(
                    event.system.index() < self.galaxy.len(),
                    "BUG: the carrier handed an event of {:?}, not in the galaxy",
                    event.system
                );
                // Straight into the broadcast, never through `publish`: what was heard is
                // never told again.
                let _ = self.events.send(Arc::new(event));
                bump(&n.counters.events_in);
            }
        }
    }
}

impl Mesh {
    /// Attaches the carrier of news between nodes to this node of a spread galaxy
    /// ([`Mesh::start_node`]): from now on its systems gossip to neighbours run elsewhere,
    /// report their prices to every node's galaxy view and tell every node their feed events,
    /// and this node takes in what the others tell. Returns once the carrier listens. Once
    /// per mesh; a mesh that runs the whole galaxy has nobody to tell.
    pub async fn attach_news(&self, news: Arc<dyn News>) -> Result<(), MeshError> {
        if !matches!(self.ctx.handoff, Handoff::Units(_)) {
            return Err(MeshError::Internal(
                "this mesh runs the whole galaxy: it has no other node to hear from".into(),
            ));
        }
        if self.ctx.news.get().is_some() {
            return Err(MeshError::Internal("news is attached already".into()));
        }
        let (sink, heard) = mpsc::channel(NEWS_INBOX_LEN);
        news.listen(sink)
            .await
            .map_err(|e| MeshError::Internal(e.to_string()))?;
        let node_news = NodeNews {
            news,
            counters: Counters::default(),
        };
        if self.ctx.news.set(node_news).is_err() {
            return Err(MeshError::Internal("news is attached already".into()));
        }
        tokio::spawn(take_in_all(Arc::downgrade(&self.ctx), heard));
        Ok(())
    }

    /// What this node took in of the other nodes' news (None: no carrier attached).
    pub fn news_counts(&self) -> Option<NewsCounts> {
        let c = &self.ctx.news.get()?.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Some(NewsCounts {
            gossip_in: get(&c.gossip_in),
            gossip_not_here: get(&c.gossip_not_here),
            gossip_dropped: get(&c.gossip_dropped),
            prices_in: get(&c.prices_in),
            prices_dropped: get(&c.prices_dropped),
            events_in: get(&c.events_in),
        })
    }
}

/// Takes in what the carrier hands, until the mesh stops or is dropped (then the carrier sees
/// its sink closed and stops listening). Holds the mesh weakly: the carrier, which the mesh
/// holds, holds the sender.
async fn take_in_all(ctx: Weak<Context>, mut heard: mpsc::Receiver<Heard>) {
    while let Some(h) = heard.recv().await {
        let Some(ctx) = ctx.upgrade() else { return };
        if ctx.is_stopping() {
            return;
        }
        let n = ctx
            .news
            .get()
            .expect("the carrier is attached before it is heard");
        ctx.take_in(n, h);
    }
}

/// News in memory: for tests of several nodes in one process. Every node's sink hears what
/// every other node tells (as a subscription to every subject would), never what it told.
#[derive(Default)]
pub struct MemoryNewsBus {
    /// Each node's id and sink, once it listens. std mutex: held to copy or add, never across
    /// an await.
    sinks: Mutex<Vec<(usize, NewsSink)>>,
    next_node: AtomicUsize,
    /// News dropped: a full sink.
    dropped: AtomicU64,
}

/// One node's end of a [`MemoryNewsBus`].
pub struct MemoryNews {
    bus: Arc<MemoryNewsBus>,
    node: usize,
}

impl MemoryNewsBus {
    pub fn new() -> Arc<MemoryNewsBus> {
        Arc::new(MemoryNewsBus::default())
    }

    /// A carrier for one more node.
    pub fn node(self: &Arc<MemoryNewsBus>) -> Arc<MemoryNews> {
        Arc::new(MemoryNews {
            bus: self.clone(),
            node: self.next_node.fetch_add(1, Ordering::Relaxed),
        })
    }

    /// News dropped because a node's sink was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Hands `heard` to every node but `from`.
    fn tell(&self, from: usize, heard: Heard) {
        let sinks: Vec<NewsSink> = {
            let mut sinks = self.sinks.lock().unwrap_or_else(|e| e.into_inner());
            sinks.retain(|(_, s)| !s.is_closed());
            sinks
                .iter()
                .filter(|(node, _)| *node != from)
                .map(|(_, s)| s.clone())
                .collect()
        };
        for sink in sinks {
            if sink.try_send(heard.clone()).is_err() {
                bump(&self.dropped);
            }
        }
    }
}

impl News for MemoryNews {
    fn gossip(&self, from: SystemId, to: SystemId, view: &Arc<PriceView>) {
        let view = (**view).clone();
        self.bus.tell(self.node, Heard::Gossip { from, to, view });
    }

    fn prices(&self, report: &Published) {
        self.bus.tell(self.node, Heard::Prices(*report));
    }

    fn event(&self, event: &Arc<FeedEvent>) {
        self.bus.tell(self.node, Heard::Event((**event).clone()));
    }

    fn listen(&self, sink: NewsSink) -> NewsFuture<'_, Result<(), NewsError>> {
        let mut sinks = self.bus.sinks.lock().unwrap_or_else(|e| e.into_inner());
        sinks.push((self.node, sink));
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use sim::galaxy::{Galaxy, SystemId};
    use sim::instance::InstanceId;
    use store::backend::Storage;
    use store::datadir::DataDir;
    use tokio::sync::broadcast;

    use super::*;
    use crate::directory::Place;
    use crate::feed::FeedEventKind;
    use crate::links::{Links, MemoryLinks};
    use crate::test_support::fast_config;

    /// Two or more nodes in one process: one store of logs (files), pair subjects and news in
    /// memory.
    struct Nodes {
        _dir: tempfile::TempDir,
        galaxy: Galaxy,
        storage: Storage,
        bus: Arc<MemoryNewsBus>,
        nodes: Vec<Mesh>,
    }

    impl Nodes {
        async fn start(n: usize) -> Nodes {
            let dir = tempfile::tempdir().unwrap();
            let galaxy = Galaxy::default_galaxy();
            let storage = Storage::files(&DataDir::at(dir.path().join("store")));
            let links: Arc<dyn Links> = MemoryLinks::new();
            let bus = MemoryNewsBus::new();
            let mut nodes = Vec::new();
            for i in 0..n {
                let own = DataDir::at(dir.path().join(format!("node{i}")));
                let mesh = Mesh::start_node(
                    storage.clone(),
                    own,
                    galaxy.clone(),
                    fast_config(),
                    links.clone(),
                )
                .unwrap();
                mesh.attach_news(bus.node()).await.unwrap();
                nodes.push(mesh);
            }
            Nodes {
                _dir: dir,
                galaxy,
                storage,
                bus,
                nodes,
            }
        }

        /// Starts `systems` on node `i`, each under epoch 1.
        async fn run(&self, i: usize, systems: &[SystemId]) {
            for &s in systems {
                self.nodes[i]
                    .start_unit(s, self.storage.clone(), 1)
                    .await
                    .unwrap();
            }
        }

        async fn stop(self) {
            for n in &self.nodes {
                n.stop().await.unwrap();
            }
        }
    }

    /// The home system and three of its neighbours.
    fn home_and_three(g: &Galaxy) -> [SystemId; 4] {
        let home = g.home();
        let n = g.neighbours(home);
        assert!(n.len() >= 3, "the default galaxy's home has 3 neighbours");
        [home, n[0], n[1], n[2]]
    }

    /// Waits (at most 10 s) for `what` to hold, saying `why` if it never does.
    async fn until<F, Fut>(why: &str, mut what: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..1000 {
            if what().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("not within 10 s: {why}");
    }

    /// The slugs of the systems `mesh`'s market of `system` has heard from, with their ages.
    async fn heard(mesh: &Mesh, system: SystemId) -> Vec<(String, u64)> {
        let m = mesh.market(system).await.unwrap();
        m.heard.into_iter().map(|h| (h.slug, h.age_ms)).collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn gossip_and_price_reports_cross_nodes_so_every_node_sees_every_system() {
        let s = Nodes::start(2).await;
        let g = s.galaxy.clone();
        let [home, n0, n1, n2] = home_and_three(&g);
        let (a, b) = (&s.nodes[0], &s.nodes[1]);
        s.run(0, &[home, n0]).await;
        s.run(1, &[n1, n2]).await;
        let slug = |id: SystemId| g.slug(id).to_string();

        // n1 (node b) hears home (node a), its lane neighbour, and n0 through home: the whole
        // view travels, not only home's own report.
        until("n1 on b hears home and n0 from node a", || async {
            let h = heard(b, n1).await;
            [home, n0]
                .iter()
                .all(|s| h.iter().any(|(x, _)| *x == slug(*s)))
        })
        .await;
        until("home on a hears n1 and n2 from node b", || async {
            let h = heard(a, home).await;
            [n1, n2]
                .iter()
                .all(|s| h.iter().any(|(x, _)| *x == slug(*s)))
        })
        .await;
        // Ages are real ages: each report's publication time travelled with it (the economy
        // reports every 50 ms at 200 Hz; a second is generous on a loaded machine).
        for (system, age_ms) in heard(b, n1).await {
            assert!(age_ms < 5_000, "{system} heard {age_ms} ms old");
        }

        // Every node's galaxy view has every system that runs, on either node.
        let every: BTreeSet<String> = [home, n0, n1, n2].into_iter().map(slug).collect();
        for (name, node) in [("a", a), ("b", b)] {
            until(
                &format!("node {name}'s economy view has every system"),
                || {
                    let seen: BTreeSet<String> =
                        node.economy().systems.into_iter().map(|h| h.slug).collect();
                    std::future::ready(seen == every)
                },
            )
            .await;
            let view = node.economy();
            for h in &view.systems {
                assert!(
                    h.age_ms < 5_000,
                    "{name}: {} is {} ms old",
                    h.slug,
                    h.age_ms
                );
            }
        }
        let (ca, cb) = (a.news_counts().unwrap(), b.news_counts().unwrap());
        assert!(ca.gossip_in > 0 && cb.gossip_in > 0, "{ca:?} {cb:?}");
        assert!(ca.prices_in > 0 && cb.prices_in > 0, "{ca:?} {cb:?}");
        assert_eq!((ca.gossip_dropped, cb.gossip_dropped), (0, 0));
        assert_eq!(s.bus.dropped(), 0);
        s.stop().await;
    }

    /// Every event of `player` in `feed` so far (waits `settle` for late ones first).
    async fn events_of(
        feed: &mut broadcast::Receiver<Arc<FeedEvent>>,
        player: &str,
        settle: Duration,
    ) -> Vec<FeedEvent> {
        tokio::time::sleep(settle).await;
        let mut out = Vec::new();
        loop {
            match feed.try_recv() {
                Ok(e) if e.kind.player() == player => out.push((*e).clone()),
                Ok(_) => {}
                Err(broadcast::error::TryRecvError::Empty) => return out,
                Err(e) => panic!("the feed: {e}"),
            }
        }
    }

    fn kinds(events: &[FeedEvent]) -> Vec<(&'static str, SystemId)> {
        events
            .iter()
            .map(|e| {
                let kind = match e.kind {
                    FeedEventKind::Joined { .. } => "joined",
                    FeedEventKind::Departed { .. } => "departed",
                    FeedEventKind::Arrived { .. } => "arrived",
                    _ => "other",
                };
                (kind, e.system)
            })
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_units_events_reach_every_nodes_feed_once() {
        let s = Nodes::start(2).await;
        let [home, _, n1, _] = home_and_three(&s.galaxy);
        let (a, b) = (&s.nodes[0], &s.nodes[1]);
        s.run(0, &[home]).await;
        s.run(1, &[n1]).await;
        let (mut feed_a, mut feed_b) = (a.events(), b.events());

        // ann joins on a (home), jumps to n1 (b): joined and departed are a's events, arrived
        // is b's.
        a.join("ann", "k").await.unwrap();
        a.jump("ann", n1).await.unwrap();
        until("ann lands on b", || {
            std::future::ready(b.place("ann") == Some(Place::In(InstanceId::primary(n1))))
        })
        .await;
        let expected = vec![("joined", home), ("departed", home), ("arrived", n1)];
        let settle = Duration::from_millis(500);
        let on_a = events_of(&mut feed_a, "ann", Duration::ZERO).await;
        let on_b = events_of(&mut feed_b, "ann", Duration::ZERO).await;
        // What is missing yet may be on its way: wait once, then look again.
        let (on_a, on_b) = if on_a.len() < 3 || on_b.len() < 3 {
            let more_a = events_of(&mut feed_a, "ann", settle).await;
            let more_b = events_of(&mut feed_b, "ann", Duration::ZERO).await;
            ([on_a, more_a].concat(), [on_b, more_b].concat())
        } else {
            (on_a, on_b)
        };
        assert_eq!(kinds(&on_a), expected, "node a's feed: {on_a:?}");
        assert_eq!(kinds(&on_b), expected, "node b's feed: {on_b:?}");
        // The same events, record for record, on both nodes.
        assert_eq!(on_a, on_b);
        // Nothing late comes twice.
        assert!(events_of(&mut feed_a, "ann", settle).await.is_empty());
        assert!(events_of(&mut feed_b, "ann", Duration::ZERO)
            .await
            .is_empty());
        // Market shocks (issue 22: about no player, drawn at random in the economy steps)
        // cross nodes too, so the counts are at least the player's events.
        assert!(a.news_counts().unwrap().events_in >= 1, "b's arrival");
        assert!(
            b.news_counts().unwrap().events_in >= 2,
            "a's join and departure"
        );
        s.stop().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_mesh_of_the_whole_galaxy_takes_no_news() {
        let dir = tempfile::tempdir().unwrap();
        let mesh =
            crate::test_support::start_quick(&DataDir::at(dir.path()), &Galaxy::default_galaxy())
                .await;
        let bus = MemoryNewsBus::new();
        assert!(mesh.attach_news(bus.node()).await.is_err());
        assert_eq!(mesh.news_counts(), None);
        mesh.stop().await.unwrap();
    }
}
