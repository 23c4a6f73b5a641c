//! Packet framing and end-of-response detection on arbitrary bytes: headers, every
//! response shape fed whole and in two pieces, OK/ERR/EOF and session-tracking decoding.
#![no_main]
use corelay::protocol::packet::Header;
use corelay::protocol::err::ErrPacket;
use corelay::protocol::ok::{session_changes, OkPacket};
use corelay::protocol::scanner::{Expect, Scanner};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Header::parse(data);
    let _ = OkPacket::parse(data);
    let _ = ErrPacket::parse(data);
    let _ = session_changes(data);
    let split = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    for expect in [Expect::ResultSets, Expect::Prepare, Expect::Rows, Expect::FieldList, Expect::Single] {
        for deprecate_eof in [false, true] {
            let mut whole = Scanner::new(expect, deprecate_eof).tracking_session(true);
            if let Ok((n, _)) = whole.feed(data) {
                assert!(n <= data.len());
            }
            // Fed in two pieces, the scanner must account for the same bytes.
            let mut parts = Scanner::new(expect, deprecate_eof).tracking_session(true);
            if let Ok((n, _)) = parts.feed(&data[..split]) {
                assert!(n <= split);
                let _ = parts.feed(&data[n..]);
            }
        }
    }
});
