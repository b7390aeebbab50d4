//! Old logs replay as they were: a system log written by a server of the `model=2` era (the
//! living economy with the full-rate subsidy, before the trade fee; kept as
//! `tests/fixtures/dx-cancri.model2.log`, DX Cancri's log from a swarm run) is replayed under
//! today's rules to a pinned state hash, and every record is written again byte for byte.
//!
//! What it guards: a change to the `model=2` economy step, to the trade rules, or to the
//! encoding of any of these kinds (`arrive`, `trade` without `fee=`, `economy ... model=2`,
//! `refuel`, `depart`, `depart.done`) makes the replay refuse a record, lands on another
//! state, or writes other bytes. docs/FORMAT.md: each record says which rules it followed.

use std::path::Path;

use mltrader_mesh::codec::{decode_event, encode_event, event_kind};
use sim::economy::EconomyModel;
use sim::galaxy::Galaxy;
use sim::ids::Tick;
use sim::instance::InstanceId;
use sim::system::{Event, SystemState};
use store::record::{parse_line, Line};

/// The state hash of DX Cancri after the fixture's last record, as the `model=2` server that
/// wrote the log computed it (its snapshot `dx-cancri.00000000000000000055.snap`:
/// `snapshot log=dx-cancri upto=55 ... hash=bdcff0fce5d89eb8`).
const STATE_HASH_AFTER_FIXTURE: u64 = 0xbdcf_f0fc_e5d8_9eb8;

/// Records in the fixture (its last line's sequence number).
const FIXTURE_RECORDS: usize = 55;

#[test]
fn a_written_model_2_log_replays_to_its_state_and_is_written_again_byte_for_byte() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dx-cancri.model2.log");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("the fixture {} is missing: {e}", path.display()));
    let galaxy = Galaxy::default_galaxy();
    let system = galaxy.lookup("DX Cancri").expect("DX Cancri in the galaxy");
    let at = InstanceId::primary(system);
    let mut state = SystemState::new(&galaxy, system);
    let (mut living_steps, mut trades, mut subsidy_cr) = (0, 0, 0);
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    assert_eq!(lines.len(), FIXTURE_RECORDS, "the fixture changed");
    for (i, original) in lines.iter().enumerate() {
        let seq = i as u64 + 1;
        let rec = parse_line(original.as_bytes())
            .unwrap_or_else(|e| panic!("line {seq} of the fixture: {e}"));
        assert_eq!(rec.seq, seq, "line {seq}");
        let (t, event) = decode_event(&galaxy, at, &rec)
            .unwrap_or_else(|e| panic!("line {seq} does not decode: {e}"));
        state
            .apply(t, &event)
            .unwrap_or_else(|e| panic!("line {seq} does not replay: {e}\n{original}"));
        match &event {
            Event::Economy { model, report, .. } => {
                assert_eq!(*model, EconomyModel::Living, "line {seq}");
                living_steps += 1;
                subsidy_cr += report.subsidy_cr;
            }
            Event::Trade { trade, .. } => {
                assert_eq!(trade.fee_cr, 0, "no fee in the model=2 era: line {seq}");
                trades += 1;
            }
            _ => {}
        }
        let mut again = String::new();
        let mut line = Line::new(&mut again, seq, event_kind(&event));
        if let Some(b) = rec.get("b") {
            line.batch_mark(b.parse().expect("a batch number"));
        }
        let version = state.version_after(&event).unwrap_or_default();
        encode_event(&mut line, &galaxy, at, Tick(t.0), &event, version);
        line.finish();
        assert_eq!(&again, original, "line {seq} is written otherwise today");
    }
    assert!(
        living_steps >= 5 && trades >= 10 && subsidy_cr > 0,
        "the fixture covers the rules"
    );
    assert_eq!(
        state.state_hash(),
        STATE_HASH_AFTER_FIXTURE,
        "the model=2 log replays to another state: {:016x}",
        state.state_hash()
    );
}
