//! `mltrader check --live`: what can be proved of a data directory while its server writes to
//! it. Each log is read once, as far as it was written at that moment, and proved on its own:
//! checksums, sequence numbers, every record decodes, each system's log replays (the rules
//! accept every event, in order) and gives its snapshots' state hashes, the transition log
//! holds each jump once.
//!
//! Not proved: anything across logs (a player in exactly one place, jumps landing once and
//! only if committed, credits and goods conserved, player logs, snapshots ahead of their
//! logs). The logs are read one after the other, so a record in one may answer a record
//! another log got after it was read: judging them together gives problems that are not there.
//! Stop the server (or copy the directory from a filesystem snapshot) for those.
//!
//! Only reads; never takes the data directory's lock.

use std::time::Instant;

use super::{check_layout, load_snapshots, read_jumps, replay_log, AuditReport, Commits};
use sim::galaxy::Galaxy;
use sim::instance::InstanceId;
use sim::system::SystemState;
use store::datadir::DataDir;

/// What a live check says it did not prove (a note of every live report).
pub const NOT_PROVED: &str = "live check: each log was proved on its own, as far as it was \
     written when read; nothing across logs (one place per player, jumps, conservation of \
     credits and goods, player logs) was proved: stop the server and run `mltrader check` for that";

/// Audits each log of a data directory a server may be writing, on its own.
pub fn audit_live(datadir: &DataDir, galaxy: &Galaxy) -> AuditReport {
    let started = Instant::now();
    let mut r = AuditReport::default();
    check_layout(datadir, galaxy, Commits::of(datadir), &mut r);
    r.jumps = read_jumps(datadir, galaxy, &mut r).len() as u64;
    for id in galaxy.ids() {
        let instances = crate::recovery::instance_logs(datadir, galaxy, id);
        let all = std::iter::once(InstanceId::primary(id))
            .chain(instances.into_iter().map(|n| InstanceId::new(id, n)));
        for at in all {
            let mut state = SystemState::new_instance(galaxy, at);
            let snapshots = load_snapshots(datadir, galaxy, at, &mut r);
            replay_log(
                datadir,
                galaxy,
                at,
                &mut r,
                &mut state,
                &snapshots,
                |state, _, t, event| Ok(state.apply(t, event)?),
            );
            r.instances += u64::from(!at.is_primary());
            r.system_hashes
                .insert(at.slug(galaxy), format!("{:016x}", state.state_hash()));
        }
    }
    r.notes.push(NOT_PROVED.to_string());
    r.seconds = started.elapsed().as_secs_f64();
    r
}
