//! How a unit's committed jumps reach the units of other nodes: the pair subjects of issue 19
//! (`mlt.jump.<from>.<to>`, docs/PROTOCOL.md "Across nodes"), seen from the mesh.
//!
//! The mesh drives the protocol (`protocol::handover`: commit at the durable `depart`, publish,
//! then `depart.done`; read, then land once in order per origin); an implementation of
//! [`Links`] only carries jumps: over NATS JetStream (`nats::pairs`), or in memory for the
//! mesh's own tests ([`MemoryLinks`]). Never decides a game rule; never touches a shard's state.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use sim::galaxy::SystemId;
use tokio::sync::mpsc;

use crate::codec::Jump;
pub use crate::protocol::handover::{Pair, PairSeq};

/// A boxed future, so that [`Links`] can be used as a trait object.
pub type LinkFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why carrying a jump failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum LinkError {
    /// A newer owner of the origin unit wrote to the pair subject (its `lease` record): this
    /// node no longer owns the origin and must stop serving it.
    #[error("fenced: {0}")]
    Fenced(String),
    /// The engine did not answer, after the implementation's own retries: whether the jump is
    /// stored is unknown; publishing it again is safe (same message id).
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A message on a pair subject that is not a jump of that pair: names the subject and
    /// position. Never skipped silently.
    #[error("malformed: {0}")]
    Malformed(String),
}

/// Where a reader of pair subjects sends what it reads.
pub type ArrivalSink = mpsc::Sender<Result<Arrived, LinkError>>;

/// A jump read from a pair subject, at its position there.
#[derive(Clone, Debug)]
pub struct Arrived {
    pub at: PairSeq,
    pub jump: Jump,
}

/// The carrier of jumps between units.
pub trait Links: Send + Sync + 'static {
    /// Fences unit `from`'s outgoing pair subjects (one per lane of its system) for lease
    /// epoch `epoch`: appends a `lease` record to each, so that a publish of an older owner is
    /// refused from now on. Called when a node starts serving the unit, before it publishes.
    fn fence_outgoing(&self, from: SystemId, epoch: u64) -> LinkFuture<'_, Result<(), LinkError>>;

    /// Publishes a committed jump between two units to its pair subject, under the origin's
    /// lease `epoch`, with its transfer id as message id; returns once the stream holds it
    /// (stored now, or a duplicate of a copy stored before), with its position. The caller
    /// sends the jumps of one origin instance one at a time, in number order.
    fn publish(&self, epoch: u64, jump: Jump) -> LinkFuture<'_, Result<PairSeq, LinkError>>;

    /// Starts reading every pair subject towards unit `to` (one per lane into its system),
    /// each after its position in `after` (absent: from the start), and sends what it reads to
    /// `sink` in order per pair, until `sink` is closed. An error ends the reading of that
    /// pair after it is sent.
    fn read_towards(
        &self,
        to: SystemId,
        after: BTreeMap<SystemId, PairSeq>,
        sink: ArrivalSink,
    ) -> Result<(), LinkError>;
}

/// Pair subjects in memory: for tests of the mesh across units in one process. Keeps every
/// message (lease marks and jumps) per pair; dedups publishes by transfer id as the stream's
/// duplicate window would (forever here); fences by epoch.
#[derive(Default)]
pub struct MemoryLinks {
    inner: Mutex<MemoryPairs>,
}

#[derive(Default)]
struct MemoryPairs {
    /// Per pair: the highest epoch that fenced it, and its messages (None: a lease mark).
    pairs: BTreeMap<Pair, (u64, Vec<Option<Jump>>)>,
    /// Readers waiting for new messages, per destination.
    readers: Vec<(SystemId, ArrivalSink, BTreeMap<SystemId, PairSeq>)>,
    /// Where each reader started, in the order they started: (destination, positions).
    starts: Vec<(SystemId, BTreeMap<SystemId, PairSeq>)>,
}

impl MemoryLinks {
    pub fn new() -> Arc<MemoryLinks> {
        Arc::new(MemoryLinks::default())
    }

    /// Every jump stored on the pair subject from `from` to `to`, in order.
    pub fn stored(&self, from: SystemId, to: SystemId) -> Vec<Jump> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .pairs
            .get(&Pair { from, to })
            .map(|(_, m)| m.iter().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// The positions each reader of the pair subjects towards `to` started after, oldest first.
    pub fn read_starts(&self, to: SystemId) -> Vec<BTreeMap<SystemId, PairSeq>> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner
            .starts
            .iter()
            .filter(|(t, _)| *t == to)
            .map(|(_, after)| after.clone())
            .collect()
    }

    /// Sends readers what they have not had yet.
    fn pump(inner: &mut MemoryPairs) {
        let MemoryPairs { pairs, readers, .. } = inner;
        readers.retain_mut(|(to, sink, after)| {
            for (pair, (_, messages)) in pairs.iter().filter(|(p, _)| p.to == *to) {
                let from = after.entry(pair.from).or_default();
                while (from.0 as usize) < messages.len() {
                    let at = PairSeq(from.0 + 1);
                    if let Some(jump) = &messages[at.0 as usize - 1] {
                        let arrived = Arrived {
                            at,
                            jump: jump.clone(),
                        };
                        // Full: the rest waits for the next publish (a test's queue is large).
                        if sink.try_send(Ok(arrived)).is_err() {
                            return !sink.is_closed();
                        }
                    }
                    *from = at;
                }
            }
            true
        });
    }
}

impl Links for MemoryLinks {
    fn fence_outgoing(&self, from: SystemId, epoch: u64) -> LinkFuture<'_, Result<(), LinkError>> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let newer = inner
            .pairs
            .iter()
            .find(|(p, (fence, _))| p.from == from && *fence > epoch);
        if let Some((pair, (fence, _))) = newer {
            let why = format!("pair {pair:?} is fenced by epoch {fence}, newer than {epoch}");
            return Box::pin(std::future::ready(Err(LinkError::Fenced(why))));
        }
        let tos: Vec<Pair> = inner
            .pairs
            .keys()
            .filter(|p| p.from == from)
            .copied()
            .collect();
        for pair in tos {
            let entry = inner.pairs.entry(pair).or_default();
            entry.0 = entry.0.max(epoch);
            entry.1.push(None);
        }
        Box::pin(std::future::ready(Ok(())))
    }

    fn publish(&self, epoch: u64, jump: Jump) -> LinkFuture<'_, Result<PairSeq, LinkError>> {
        let pair = Pair::of(&jump).expect("only jumps between units are published");
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (fence, messages) = inner.pairs.entry(pair).or_default();
        let answer = if *fence > epoch {
            Err(LinkError::Fenced(format!(
                "pair {pair:?} is fenced by epoch {fence}, the writer has {epoch}"
            )))
        } else {
            *fence = epoch;
            let stored = messages.iter().position(|m| {
                m.as_ref()
                    .is_some_and(|j| j.from == jump.from && j.xfer == jump.xfer)
            });
            match stored {
                Some(i) => Ok(PairSeq(i as u64 + 1)),
                None => {
                    messages.push(Some(jump));
                    Ok(PairSeq(messages.len() as u64))
                }
            }
        };
        MemoryLinks::pump(&mut inner);
        Box::pin(std::future::ready(answer))
    }

    fn read_towards(
        &self,
        to: SystemId,
        after: BTreeMap<SystemId, PairSeq>,
        sink: ArrivalSink,
    ) -> Result<(), LinkError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.starts.push((to, after.clone()));
        inner.readers.push((to, sink, after));
        MemoryLinks::pump(&mut inner);
        Ok(())
    }
}
