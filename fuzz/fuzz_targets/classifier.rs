//! The read/write classifier and hints on arbitrary statement text.
#![no_main]
use corelay::router::classify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = classify::classify(data);
    let _ = classify::hint(data);
    let _ = classify::is_read_only_transaction(data);
});
