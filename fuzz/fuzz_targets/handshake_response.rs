//! The login packets corelay parses from clients and servers.
#![no_main]
use corelay::protocol::caps;
use corelay::protocol::handshake::{AuthSwitch, ChangeUser, Greeting, HandshakeResponse};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(hr) = HandshakeResponse::parse(data) {
        // What parses must write back and parse again to the same login.
        let mut out = Vec::new();
        hr.write(&mut out, 1);
        if let Ok(again) = HandshakeResponse::parse(&out[4..]) {
            assert_eq!(again.user, hr.user);
        }
    }
    let _ = Greeting::parse(data);
    let _ = AuthSwitch::parse(data);
    let _ = ChangeUser::parse(data, caps::PROXY_SERVER);
    let _ = ChangeUser::parse(data, 0);
});
