//! The statements corelay answers itself or acts on: session functions, dbconnect, KILL,
//! checkproxystatus, admin commands.
#![no_main]
use corelay::session::local::{self, dbconnect, kill, proxystatus, session_function};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = session_function::session_function_query(data);
    let _ = session_function::last_insert_id_query(data);
    let _ = kill::parse(data);
    let _ = dbconnect::parse(data);
    let _ = proxystatus::parse(data);
    let _ = local::recognise(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = corelay::admin::words(text);
    }
});
