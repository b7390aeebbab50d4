//! Tests of a galaxy spread over nodes ([`crate::units`]), in one process: two meshes as two
//! nodes, sharing one store of logs (files) and pair subjects in memory ([`MemoryLinks`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sim::galaxy::{Galaxy, SystemId};
use sim::instance::InstanceId;
use store::backend::Storage;
use store::datadir::DataDir;

use crate::codec::Jump;
use crate::directory::Place;
use crate::links::{ArrivalSink, LinkError, LinkFuture, Links, MemoryLinks, PairSeq};
use crate::test_support::fast_config;
use crate::{Mesh, MeshError};

/// Pair subjects that can be cut off: every publish is unanswered while `cut` is set.
struct Cuttable {
    inner: Arc<MemoryLinks>,
    cut: AtomicBool,
}

impl Links for Cuttable {
    fn fence_outgoing(&self, from: SystemId, epoch: u64) -> LinkFuture<'_, Result<(), LinkError>> {
        self.inner.fence_outgoing(from, epoch)
    }
    fn publish(&self, epoch: u64, jump: Jump) -> LinkFuture<'_, Result<PairSeq, LinkError>> {
        if self.cut.load(Ordering::SeqCst) {
            return Box::pin(std::future::ready(Err(LinkError::Unavailable(
                "cut off by the test".into(),
            ))));
        }
        self.inner.publish(epoch, jump)
    }
    fn read_towards(
        &self,
        to: SystemId,
        after: std::collections::BTreeMap<SystemId, PairSeq>,
        sink: ArrivalSink,
    ) -> Result<(), LinkError> {
        self.inner.read_towards(to, after, sink)
    }
}

struct Spread {
    _dir: tempfile::TempDir,
    galaxy: Galaxy,
    storage: Storage,
    links: Arc<Cuttable>,
    memory: Arc<MemoryLinks>,
    nodes: Vec<Mesh>,
}

impl Spread {
    fn new(nodes: usize) -> Spread {
        let dir = tempfile::tempdir().unwrap();
        let galaxy = Galaxy::default_galaxy();
        let storage = Storage::files(&DataDir::at(dir.path().join("store")));
        let memory = MemoryLinks::new();
        let links = Arc::new(Cuttable {
            inner: memory.clone(),
            cut: AtomicBool::new(false),
        });
        let nodes = (0..nodes)
            .map(|i| {
                let own = DataDir::at(dir.path().join(format!("node{i}")));
                let l: Arc<dyn Links> = links.clone();
                Mesh::start_node(storage.clone(), own, galaxy.clone(), fast_config(), l).unwrap()
            })
            .collect();
        Spread {
            _dir: dir,
            galaxy,
            storage,
            links,
            memory,
            nodes,
        }
    }

    fn systems(&self) -> (SystemId, SystemId) {
        let home = self.galaxy.home();
        (home, self.galaxy.neighbours(home)[0])
    }
}

/// Waits (at most 10 s) until `node` routes `name` to `place`.
async fn until_place(node: &Mesh, name: &str, place: Option<Place>) {
    for _ in 0..1000 {
        if node.place(name) == place {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} is at {:?}, not {place:?}", node.place(name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_between_nodes_lands_once_and_follows_its_unit_when_handed_over() {
    let s = Spread::new(2);
    let (home, next) = s.systems();
    let (a, b) = (&s.nodes[0], &s.nodes[1]);
    a.start_unit(home, s.storage.clone(), 1).await.unwrap();
    b.start_unit(next, s.storage.clone(), 1).await.unwrap();
    assert_eq!(
        a.running_units().keys().copied().collect::<Vec<_>>(),
        [home]
    );

    a.join("ann", "k").await.unwrap();
    let ack = a.jump("ann", next).await.unwrap();
    assert_eq!(ack.to, next);
    until_place(b, "ann", Some(Place::In(InstanceId::primary(next)))).await;
    until_place(a, "ann", None).await;
    assert!(matches!(
        a.look("ann").await,
        Err(MeshError::UnknownPlayer(_))
    ));
    let (_, on_b) = b.look("ann").await.unwrap();
    assert_eq!(on_b.unwrap().version, ack.player.version.next());
    assert_eq!(s.memory.stored(home, next).len(), 1, "published once");

    // A clean hand-over: b stops the unit, a starts it under a newer lease.
    b.stop_unit(next).await.unwrap();
    assert_eq!(b.place("ann"), None, "b forgets the unit's players");
    let started = a.start_unit(next, s.storage.clone(), 2).await.unwrap();
    assert_eq!(started.republished, 0);
    // b's snapshot at the hand-over recorded that the pair subject's first message landed: a
    // reads on after it, not from the start.
    let starts = s.memory.read_starts(next);
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(
        starts[0],
        BTreeMap::new(),
        "the first owner read from the start"
    );
    assert_eq!(starts[1], BTreeMap::from([(home, PairSeq(1))]));
    assert_eq!(
        a.place("ann"),
        Some(Place::In(InstanceId::primary(next))),
        "the player is where the unit's log says"
    );
    // Back home, both units on one node now: still through the pair subject.
    a.jump("ann", home).await.unwrap();
    until_place(a, "ann", Some(Place::In(InstanceId::primary(home)))).await;
    assert_eq!(s.memory.stored(next, home).len(), 1);
    let home_status = a.system_status(home).await.unwrap();
    let next_status = a.system_status(next).await.unwrap();
    assert_eq!((home_status.population, next_status.population), (1, 0));
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_committed_but_never_published_is_finished_by_the_next_owner_once() {
    let s = Spread::new(2);
    let (home, next) = s.systems();
    let (a, b) = (&s.nodes[0], &s.nodes[1]);
    a.start_unit(home, s.storage.clone(), 1).await.unwrap();
    b.start_unit(next, s.storage.clone(), 1).await.unwrap();
    a.join("ann", "k").await.unwrap();
    a.join("bob", "k").await.unwrap();

    // The engine stops answering: ann's jump commits (its depart is durable) but cannot be
    // published; the player has no answer yet.
    s.links.cut.store(true, Ordering::SeqCst);
    let a2 = a.clone();
    let pending = tokio::spawn(async move { a2.jump("ann", next).await });
    for _ in 0..500 {
        if a.system_status(home).await.unwrap().departing == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.system_status(home).await.unwrap().departing, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(s.memory.stored(home, next).is_empty());
    assert!(!pending.is_finished(), "not told before it is published");

    // Node a loses home (its runner stops the unit); b takes it over with a newer epoch.
    a.stop_unit(home).await.unwrap();
    assert!(pending.await.unwrap().is_err(), "a stopped: no answer");
    s.links.cut.store(false, Ordering::SeqCst);
    let started = b.start_unit(home, s.storage.clone(), 2).await.unwrap();
    assert_eq!(started.republished, 1, "the committed jump goes out again");
    until_place(b, "ann", Some(Place::In(InstanceId::primary(next)))).await;
    assert_eq!(s.memory.stored(home, next).len(), 1, "stored once");
    let home_status = b.system_status(home).await.unwrap();
    assert_eq!(
        (home_status.population, home_status.departing),
        (1, 0),
        "bob stays home; ann's departure is done"
    );
    assert_eq!(b.system_status(next).await.unwrap().population, 1);

    // A zombie of a, at the old epoch, cannot take the pair subjects back.
    let zombie = a.start_unit(home, s.storage.clone(), 1).await;
    assert!(zombie.is_err(), "fenced by epoch 2");
    assert!(a.running_units().is_empty());
    a.stop().await.unwrap();
    b.stop().await.unwrap();
}
