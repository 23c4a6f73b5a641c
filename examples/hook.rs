//! corelay with a routing hook of one's own: build with `cargo build --release --example
//! hook`, run `target/release/examples/hook --config corelay.toml` (every flag and
//! subcommand of `corelay` works the same).
//!
//! This hook:
//! - refuses logins of the product user `intern` outside office hours (here: always, to
//!   keep the example short);
//! - sends statements that name the table `ledger` to the primary, even reads;
//! - refuses `DELETE` without `WHERE` with error 1175 (what MariaDB's safe-updates mode
//!   answers);
//! - counts statements that failed on the server, per process.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use corelay::router::hook::{self, Auth, Decision, Hook, Outcome, Refusal, Route, Statement};

#[derive(Default)]
struct Example {
    failed: AtomicU64,
}

fn contains_word(text: &[u8], word: &[u8]) -> bool {
    text.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word))
}

impl Hook for Example {
    fn on_auth(&self, a: &Auth<'_>) -> Option<Refusal> {
        (a.user == "intern").then(|| Refusal::new(1045, "Access denied: interns log in during office hours"))
    }

    fn on_statement(&self, s: &Statement<'_>, d: &mut Decision) {
        let text = s.text.trim_ascii_start();
        if text.len() >= 6 && text[..6].eq_ignore_ascii_case(b"DELETE") && !contains_word(text, b"WHERE") {
            d.error = Some(Refusal::new(1175, "DELETE without WHERE is refused by this proxy's hook"));
            return;
        }
        if contains_word(text, b"ledger") {
            d.route = Some(Route::Primary);
        }
    }

    fn on_result(&self, o: &Outcome<'_>) {
        if o.error != 0 {
            self.failed.fetch_add(1, Relaxed);
        }
    }
}

fn main() -> std::process::ExitCode {
    if let Err(e) = hook::install(Box::new(Example::default())) {
        eprintln!("{e}");
        return std::process::ExitCode::FAILURE;
    }
    corelay::cli::main()
}
