//! How the mesh's fuzz targets read their input: the first byte picks the instance whose log or
//! snapshot the rest is read as, and lines can be given valid checksums so that the fuzzer gets
//! past the CRC to the fields and the codec.
//!
//! Owns the input's shape only; never checks a property (the target modules do).

use std::sync::OnceLock;

use sim::galaxy::Galaxy;
use sim::instance::InstanceId;
use store::record::{finish_line, MAX_RECORD_BYTES};

/// The galaxy every input is read in (the default one, built once).
pub fn galaxy() -> &'static Galaxy {
    static GALAXY: OnceLock<Galaxy> = OnceLock::new();
    GALAXY.get_or_init(Galaxy::default_galaxy)
}

/// The instance named by the first byte of `data`, and the rest. Bits 0-1 pick the home system
/// or one of the next three systems of the galaxy, bit 2 its primary or its instance 2; in ASCII,
/// `0` is Sol and `4` is Sol #2. None for empty input.
pub fn instance_and_rest(data: &[u8]) -> Option<(InstanceId, &[u8])> {
    let (&first, rest) = data.split_first()?;
    let g = galaxy();
    let system = match first & 0b11 {
        0 => g.home(),
        k => g.ids().nth(usize::from(k)).unwrap_or(g.home()),
    };
    let at = if first & 0b100 == 0 {
        InstanceId::primary(system)
    } else {
        InstanceId::new(system, 2)
    };
    Some((at, rest))
}

/// Each line of `data` (UTF-8 text) given its checksum, as the writer would end it; None when
/// `data` is not UTF-8 or a line is too long to be a record.
pub fn with_checksums(data: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut out = String::with_capacity(text.len() + 16);
    for content in text.split_terminator('\n') {
        // " ~xxxxxxxx\n" follows the content.
        if content.len() + 11 > MAX_RECORD_BYTES {
            return None;
        }
        let start = out.len();
        out.push_str(content);
        finish_line(&mut out, start);
    }
    Some(out.into_bytes())
}
