//! The statements corelay answers itself or acts on: session functions, dbconnect, KILL,
//! checkproxystatus, admin commands.
#![no_main]
use corelay::router::classify;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = classify::session_function_query(data);
    let _ = classify::last_insert_id_query(data);
    let _ = classify::kill_statement(data);
    let _ = classify::dbconnect(data);
    let _ = corelay::admin::proxystatus::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = corelay::admin::words(text);
    }
});
