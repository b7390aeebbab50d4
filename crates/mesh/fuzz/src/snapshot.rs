//! Fuzz check for snapshot decoding: `store::snapshot::load_bytes` over arbitrary bytes, with the
//! mesh codec's `decode_state_record` rebuilding a `SystemState` from the body.
//!
//! Properties, for any input (as given, and with each line's checksum fixed up):
//! - nothing panics;
//! - a snapshot the reader refuses never feeds a record to the visitor (no half state);
//! - a snapshot decodes only if it validates on its own, and with the same header;
//! - a decoded state, encoded again (`encode` + `encode_state`), loads back to the same header
//!   and the same state, and encoding that state again gives the same bytes (one encoding).
//!
//! Never touches a file: snapshots are bytes here.

use mltrader_mesh::codec::{decode_state_record, encode_state};
use sim::instance::InstanceId;
use sim::system::SystemState;
use store::snapshot::{encode, load_bytes, SnapshotError, SnapshotMeta};

use super::input::{galaxy, instance_and_rest, with_checksums};

/// The name errors give the fuzzed bytes.
const SHOWN: &str = "fuzz.snap";

/// Checks one fuzz input; returns whether any reading of it decoded to a state.
pub fn check(data: &[u8]) -> bool {
    let Some((at, bytes)) = instance_and_rest(data) else {
        return false;
    };
    let mut decoded = check_bytes(at, bytes);
    if let Some(fixed) = with_checksums(bytes) {
        decoded |= check_bytes(at, &fixed);
    }
    decoded
}

/// Checks `bytes` as a snapshot of instance `at`; returns whether it decoded.
fn check_bytes(at: InstanceId, bytes: &[u8]) -> bool {
    let mut visited = 0u64;
    let structure = load_bytes(SHOWN, bytes, |_| {
        visited += 1;
        Ok(())
    });
    if let Err(e) = &structure {
        assert_eq!(visited, 0, "refused ({e}) after visiting {visited} records");
    }
    match (structure, decode(at, bytes)) {
        (Err(_), Err(_)) => false,
        (Err(e), Ok(_)) => panic!("decoded a snapshot that does not validate: {e}"),
        (Ok(_), Err(e)) => {
            // Only the codec may refuse a snapshot whose structure is sound.
            assert!(
                matches!(e, SnapshotError::Corrupt { .. }),
                "a valid structure refused as {e:?}"
            );
            false
        }
        (Ok(meta), Ok((decoded_meta, state))) => {
            assert_eq!(meta, decoded_meta, "the header read differently");
            round_trip(at, &meta, &state);
            true
        }
    }
}

/// Loads `bytes` as a snapshot of `at`, decoding its body into a fresh state.
fn decode(at: InstanceId, bytes: &[u8]) -> Result<(SnapshotMeta, SystemState), SnapshotError> {
    let g = galaxy();
    let mut state = SystemState::new_instance(g, at);
    let meta = load_bytes(SHOWN, bytes, |r| Ok(decode_state_record(g, &mut state, r)?))?;
    Ok((meta, state))
}

/// Encodes `state` under `meta`, loads it back and compares; then checks the encoding is stable.
fn round_trip(at: InstanceId, meta: &SnapshotMeta, state: &SystemState) {
    let g = galaxy();
    let bytes = encode(meta, |w| encode_state(w, g, state));
    let shown = || String::from_utf8_lossy(&bytes).into_owned();
    let (meta_again, state_again) = decode(at, &bytes)
        .unwrap_or_else(|e| panic!("the re-encoded snapshot does not load: {e}\n{}", shown()));
    assert_eq!(
        &meta_again,
        meta,
        "header changed by a round trip:\n{}",
        shown()
    );
    assert_eq!(
        &state_again,
        state,
        "state changed by a round trip:\n{}",
        shown()
    );
    let again = encode(&meta_again, |w| encode_state(w, g, &state_again));
    assert!(
        again == bytes,
        "one state, two encodings:\n{}\n{}",
        shown(),
        String::from_utf8_lossy(&again)
    );
}
