//! What a statement does to session state (SET assignments, USE, pins), and the replay of
//! what it parsed.
#![no_main]
use corelay::router::statement;
use corelay::backend::Vars;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let fx = statement::analyse(data);
    let mut vars = Vars::default();
    for a in &fx.assignments {
        vars.set(a);
    }
    let _ = vars.replay_sql(&Vars::default(), "utf8mb4", true);
});
