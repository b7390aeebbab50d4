//! The departure pipeline of one shard: the commit of a jump.
//!
//! 1. The shard has appended `depart` (the prepare) to its own log.
//! 2. The pipeline appends `jump` (with the player's whole state) to the transition log at
//!    once, without waiting for the `depart` to be durable, and waits until both are: the two
//!    records durable together are the commit point (a parallel commit). Only then is the
//!    player told, the destination shard handed the jump, and the origin shard told to log
//!    `depart.done`. A crash may leave the `jump` without its `depart`: recovery voids it
//!    (see docs/PROTOCOL.md); nobody was told it happened.
//!
//! The destination is handed the jump only once the origin's acker has sent the player-log
//! lines up to the `depart` (a player's lines must reach the projector in version order, and a
//! move between instances lands within a tick, faster than an acker may be).
//!
//! The destination is handed the jump before the origin is told of the commit: once the origin
//! has logged `depart.done`, the jump is already in the destination's queue. A primary relies
//! on it to close an instance: when it holds no prepared move towards the instance any more,
//! anything it moved there is queued there, ahead of the question "are you empty?".
//!
//! Jumps leave in the order they were prepared (one FIFO a shard), so a destination sees the
//! jumps of one origin in the order of their transfer numbers, which makes landing idempotent
//! with one number per origin. On a storage failure the jump is neither committed nor aborted
//! here: the disk may or may not hold it, so recovery, which reads the transition log, settles
//! it. Never decides game rules; never touches a shard's state.
//!
//! Every queue here is bounded ([`super::limits`]). The queue from the shard holds
//! [`super::limits::DEPARTURE_QUEUE_LEN`] jumps; the shard reserves a place before it prepares a
//! jump, so a full queue refuses the jump (`busy`) before anything is written. The handover to
//! the destination and the report to the origin wait while their shard's queue is full
//! ([`super::limits::SHARD_QUEUE_LEN`]): the pipeline waits, never a shard's loop, so no cycle
//! of waits can form. The protocol's invariants ([`super::protocol::invariants`]) are checked
//! as jumps leave the queue (numbers grow) and once their records are appended (the commit).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

use super::codec::{encode_jump, xfer_text, Jump};
use super::protocol::commit::{self, Commits, Handover, Prepared};
use super::shard::{Reply, ShardMessage};
use super::{Context, Handoff, JumpAck, MeshError};
use store::log::Log;
use store::seq::Seq;

pub use super::limits::MAX_DEPARTURE_BATCH;

/// A prepared jump waiting for its commit, and who waits for it.
pub struct PendingDeparture {
    /// Sequence number of the `depart` record in the origin's log.
    pub seq: Seq,
    pub jump: Jump,
    pub reply: Option<Reply<JumpAck>>,
}

/// The pipeline's driver of the protocol core's commit ([`commit`]): takes prepared jumps from
/// the shard's queue into [`Commits`] (with whom to answer), appends a batch, waits until it
/// is committed, then hands each jump over and answers.
pub async fn run(
    ctx: Arc<Context>,
    system_log: Log,
    mut acked: tokio::sync::watch::Receiver<Seq>,
    origin: mpsc::Sender<ShardMessage>,
    mut rx: mpsc::Receiver<PendingDeparture>,
) {
    let mut commits = Commits::new();
    // The replies of the jumps in `commits`, in the same order.
    let mut replies = VecDeque::new();
    let queue = |commits: &mut Commits, replies: &mut VecDeque<_>, p: PendingDeparture| {
        commits.push(Prepared {
            prepare_seq: p.seq,
            jump: p.jump,
        });
        replies.push_back(p.reply);
    };
    while let Some(first) = rx.recv().await {
        queue(&mut commits, &mut replies, first);
        for _ in 1..MAX_DEPARTURE_BATCH {
            match rx.try_recv() {
                Ok(p) => queue(&mut commits, &mut replies, p),
                Err(_) => break,
            }
        }
        let mut batch = commits.take_batch(MAX_DEPARTURE_BATCH);
        let batch_replies: Vec<_> = replies.drain(..batch.len()).collect();
        let committed = match &ctx.handoff {
            Handoff::Local { transitions } => {
                commit(&ctx, transitions, &system_log, &mut batch).await
            }
            Handoff::Units(_) => commit_at_prepare(&system_log, &mut batch).await,
        };
        if let Err(e) = committed {
            for r in batch_replies.into_iter().flatten() {
                let _ = r.send(Err(e.clone()));
            }
            continue;
        }
        // The prepares' lines are with the projector before any landing's (an acker that is
        // gone, when the shard stops, has sent all it will).
        let last_prepare = commit::last_prepare(&batch);
        let _ = acked.wait_for(|&seq| seq >= last_prepare).await;
        let mut replies = batch_replies.into_iter();
        let mut reply = None;
        // A jump whose handover failed for good (a newer owner fenced its pair subject) goes
        // no further here: no `depart.done`, no answer; the new owner publishes it again.
        let mut given_up = false;
        for step in commit::hand_over(batch) {
            if let Handover::Land(_) = step {
                reply = replies.next().flatten();
                given_up = false;
            }
            if !given_up {
                given_up = !carry_out(&ctx, &origin, step, &mut reply).await;
            }
        }
    }
}

/// One step of a committed jump's handover ([`Handover`], in the core's order): to its
/// destination, to its origin (`depart.done`), to the player (`reply`, taken). False when the
/// jump's handover cannot go on here (fenced).
async fn carry_out(
    ctx: &Context,
    origin: &mpsc::Sender<ShardMessage>,
    step: Handover,
    reply: &mut Option<Reply<JumpAck>>,
) -> bool {
    match step {
        Handover::Land(jump) => match &ctx.handoff {
            Handoff::Units(units) if jump.to.system != jump.from.system => {
                return units.publish(ctx, jump).await;
            }
            // A move within the unit: no transition log holds it, so `depart.done` (the next
            // step) waits until its landing is durable.
            Handoff::Units(_) => land_then(ctx, jump).await,
            Handoff::Local { .. } => match ctx.shard(jump.to) {
                Some(dest) => {
                    let _ = dest.send(ShardMessage::Landing(jump)).await;
                }
                None => tracing::error!(
                    "jump {} is committed towards {}, which runs no shard; the next start lands it",
                    xfer_text(&ctx.galaxy, jump.from, jump.xfer),
                    jump.to.slug(&ctx.galaxy)
                ),
            },
        },
        Handover::Done { xfer, tseq, .. } => {
            let _ = origin.send(ShardMessage::Committed { xfer, tseq }).await;
        }
        Handover::Answer(jump) => {
            if let Some(r) = reply.take() {
                let _ = r.send(Ok(JumpAck {
                    xfer: xfer_text(&ctx.galaxy, jump.from, jump.xfer),
                    from: jump.from.system,
                    to: jump.to.system,
                    travel_ticks: jump.travel_ticks,
                    travel_ms: jump.travel_ticks * 1000 / u64::from(ctx.config.tick_hz),
                    player: jump.player,
                }));
            }
        }
    }
    true
}

/// Steps 1 and 2 for a batch, at once: the `jump` records are appended without waiting for
/// the `depart` records, and the batch is committed once both are durable (the two syncs, on
/// two files, overlap). A crash between the two leaves a `jump` whose `depart` is lost:
/// recovery voids it (`depart.void`), and nobody was told, since the replies wait for both.
async fn commit(
    ctx: &Context,
    transitions: &Log,
    system_log: &Log,
    batch: &mut [Prepared],
) -> Result<(), MeshError> {
    let last_prepare = commit::last_prepare(batch);
    let galaxy = &ctx.galaxy;
    let appended = ctx
        .checkpoint
        .append_registered(
            || {
                transitions.append_batch_at(
                    batch,
                    |_| "jump",
                    |p, line| encode_jump(line, galaxy, &p.jump),
                )
            },
            batch.len(),
        )
        .map_err(MeshError::Storage)?;
    let Some((first, last)) = appended else {
        return system_log
            .durable(last_prepare)
            .await
            .map_err(MeshError::Storage);
    };
    assert_eq!(
        last.0 + 1 - first.0,
        batch.len() as u64,
        "a record for each jump of the batch"
    );
    commit::appended(batch, first);
    let (prepared, committed) =
        tokio::join!(system_log.durable(last_prepare), transitions.durable(last));
    prepared.map_err(MeshError::Storage)?;
    committed.map_err(MeshError::Storage)?;
    assert!(
        commit::is_committed(batch, system_log.durable_seq(), transitions.durable_seq()),
        "BUG: a batch is answered before the core calls it committed"
    );
    Ok(())
}

/// The commit on a node of a spread galaxy (docs/PROTOCOL.md "Across nodes"): the batch is
/// committed once its `depart` records are durable (and fenced: a zombie's append is refused),
/// with no transition log. Each jump is numbered by its `depart`'s record ([`commit::at_prepare`]).
async fn commit_at_prepare(system_log: &Log, batch: &mut [Prepared]) -> Result<(), MeshError> {
    let last_prepare = commit::last_prepare(batch);
    system_log
        .durable(last_prepare)
        .await
        .map_err(MeshError::Storage)?;
    commit::at_prepare(batch);
    assert!(
        commit::is_committed(batch, system_log.durable_seq(), last_prepare),
        "BUG: a batch is answered before the core calls it committed"
    );
    Ok(())
}

/// Hands a jump within a unit to its destination and waits until its landing is durable (the
/// destination gone: the unit stops, and the next start lands it from the `depart`).
pub(crate) async fn land_then(ctx: &Context, jump: Jump) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let Some(dest) = ctx.shard(jump.to) else {
        return;
    };
    if dest
        .send(ShardMessage::LandingThen { jump, landed: tx })
        .await
        .is_ok()
    {
        let _ = rx.await;
    }
}
