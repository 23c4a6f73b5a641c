//! Micro-benchmarks of the per-statement work corelay does besides moving bytes: packet
//! framing, end-of-response detection, the classifier, the SET parser and the status-slot
//! update. No framework: each case runs in batches of a fixed size; the figure is the
//! median time per operation over the batches.
//!
//!   cargo bench --bench micro                          # print the table
//!   cargo bench --bench micro -- --save FILE           # also write it (a baseline)
//!   cargo bench --bench micro -- --compare FILE        # ratios against a baseline
//!
//! Baseline: `benches/results/micro-baseline.txt`.

use std::hint::black_box;
use std::time::Instant;

use corelay::backend::Vars;
use corelay::protocol::packet::{write_packet, Header};
use corelay::protocol::scanner::{Expect, Scanner};
use corelay::router::{classify, statement};
use corelay::status::{Class, Slot, StatusRegion};

const BATCHES: usize = 15;

/// Median nanoseconds per call of `f` (called `per_batch` times per batch).
fn measure(per_batch: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..per_batch {
        f();
    }
    let mut times: Vec<f64> = (0..BATCHES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_batch {
                f();
            }
            t.elapsed().as_nanos() as f64 / per_batch as f64
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[BATCHES / 2]
}

/// A point-select's reply as the server sends it (CLIENT_DEPRECATE_EOF): column count,
/// one column definition, one row, the closing OK.
fn point_select_reply() -> Vec<u8> {
    let mut out = Vec::new();
    write_packet(&mut out, 1, &[1]);
    let mut def = Vec::new();
    for s in [&b"def"[..], b"sb", b"sbtest1", b"sbtest1", b"c", b"c"] {
        def.push(s.len() as u8);
        def.extend_from_slice(s);
    }
    def.extend_from_slice(&[0x0c, 0x21, 0, 0xe0, 1, 0, 0, 0xfe, 0, 0, 0, 0, 0]);
    write_packet(&mut out, 2, &def);
    let mut row = vec![120];
    row.extend(std::iter::repeat_n(b'7', 120));
    write_packet(&mut out, 3, &row);
    write_packet(&mut out, 4, &[0xfe, 0, 0, 2, 0, 0, 0]);
    out
}

/// A 100-row range select's reply.
fn range_reply() -> Vec<u8> {
    let one = point_select_reply();
    let rows_at = one.len() - 11; // before the closing OK (4 + 7 bytes)
    let mut out = one[..rows_at].to_vec();
    let row = &one[rows_at - 125..rows_at];
    for _ in 1..100 {
        out.extend_from_slice(row);
    }
    out.extend_from_slice(&one[rows_at..]);
    out
}

fn cases() -> Vec<(&'static str, f64)> {
    let mut out = Vec::new();
    let query = {
        let mut q = Vec::new();
        write_packet(&mut q, 0, b"\x03SELECT c FROM sbtest1 WHERE id=4711");
        q
    };
    out.push((
        "framing: parse a packet header",
        measure(1_000_000, || {
            black_box(Header::parse(black_box(&query)));
        }),
    ));
    out.push((
        "framing: write a 40-byte packet",
        measure(1_000_000, || {
            let mut v = Vec::with_capacity(64);
            write_packet(&mut v, 0, black_box(b"\x03SELECT c FROM sbtest1 WHERE id=4711"));
            black_box(v);
        }),
    ));
    let point = point_select_reply();
    out.push((
        "end of response: point-select reply (4 packets)",
        measure(200_000, || {
            let mut s = Scanner::new(Expect::ResultSets, true);
            black_box(s.feed(black_box(&point)).ok());
        }),
    ));
    let range = range_reply();
    out.push((
        "end of response: 100-row reply",
        measure(20_000, || {
            let mut s = Scanner::new(Expect::ResultSets, true);
            black_box(s.feed(black_box(&range)).ok());
        }),
    ));
    for (name, sql) in [
        ("classifier: point select", &b"SELECT c FROM sbtest1 WHERE id=4711"[..]),
        ("classifier: update", b"UPDATE sbtest1 SET k=k+1 WHERE id=4711"),
        ("classifier: commented select with hint", b"/* app:checkout */ /* corelay:replica */ SELECT 1"),
    ] {
        out.push((
            name,
            measure(200_000, || {
                black_box(classify::classify(black_box(sql)));
                black_box(classify::hint(black_box(sql)));
            }),
        ));
    }
    out.push((
        "statement effects: point select",
        measure(200_000, || {
            black_box(statement::analyse(black_box(b"SELECT c FROM sbtest1 WHERE id=4711")));
        }),
    ));
    let set = b"SET NAMES utf8mb4, @@session.sql_mode = 'STRICT_TRANS_TABLES', time_zone = '+00:00'";
    out.push((
        "SET parser: three assignments, recorded",
        measure(100_000, || {
            let fx = statement::analyse(black_box(set));
            let mut vars = Vars::default();
            for a in &fx.assignments {
                vars.set(a);
            }
            black_box(vars);
        }),
    ));
    let region = StatusRegion::create(1).expect("a status region");
    let slot = region.slot(0);
    out.push((
        "status slot: count a statement (command, class, bytes)",
        measure(1_000_000, || {
            slot.command(black_box(3));
            Slot::add(&slot.statements[Class::Read as usize], 1);
            Slot::add(&slot.bytes_from_clients, black_box(40));
            Slot::add(&slot.bytes_from_backends, black_box(180));
        }),
    ));
    out.push(rules_case(&region));
    out.push(status_page_case());
    out.push((
        "status slot: record a latency",
        measure(1_000_000, || {
            region.latency(0, Class::Read).record(black_box(137));
        }),
    ));
    out
}

/// The bench's twenty non-matching rules (`benches/rules-20.toml`: five patterns) judging a
/// point select, hits counted in a status slot: what each statement pays for them.
fn rules_case(region: &std::sync::Arc<StatusRegion>) -> (&'static str, f64) {
    use corelay::config::{Config, FileConfig};
    use corelay::router::hook::{Decision, Hook, Statement};
    use corelay::router::rules::Rules;
    let rules = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/benches/rules-20.toml"))
        .expect("benches/rules-20.toml");
    let text = format!(
        "[[cluster]]\nname = \"bench\"\n[[cluster.server]]\naddress = \"127.0.0.1:3306\"\nrole = \"primary\"\n\
[[db_user]]\nname = \"sb\"\ncluster = \"bench\"\n[[user]]\nname = \"sb\"\ndb_user = \"sb\"\nallow_empty_password = true\n{rules}"
    );
    let config = Config::new(FileConfig::parse(&text, "bench").expect("parses"), "bench".into()).expect("valid");
    let engine = Rules::new(&config, Some((region.clone(), 0)));
    let sql = b"SELECT c FROM sbtest1 WHERE id=4711";
    let fingerprint = corelay::router::digest::of(sql);
    let ns = measure(200_000, || {
        let s = Statement {
            text: black_box(sql),
            user: "sb",
            user_index: 0,
            schema: Some("sb"),
            client: std::net::IpAddr::from([127, 0, 0, 1]),
            class: classify::Class::Read,
            fingerprint,
            prepared: false,
            shard: 0,
        };
        let mut d = Decision::default();
        engine.on_statement(&s, &mut d);
        black_box(d);
    });
    ("rules: 20 that do not match (5 patterns), point select", ns)
}

/// `GET /status` rendered for 64 shards and 256 servers (4 clusters of 64), with every
/// shard's latency histogram holding statements: the page must render in under 50 ms.
fn status_page_case() -> (&'static str, f64) {
    use corelay::config::{Config, FileConfig};
    let mut text = String::new();
    for c in 0..4 {
        text.push_str(&format!("[[cluster]]\nname = \"c{c}\"\n"));
        for k in 0..64 {
            let role = if k == 0 { "primary" } else { "replica" };
            text.push_str(&format!("[[cluster.server]]\naddress = \"10.0.{c}.{k}:3306\"\nrole = \"{role}\"\n"));
        }
    }
    for c in 0..4 {
        text.push_str(&format!("[[db_user]]\nname = \"d{c}\"\ncluster = \"c{c}\"\n"));
        text.push_str(&format!("[[user]]\nname = \"u{c}\"\ndb_user = \"d{c}\"\nallow_empty_password = true\n"));
    }
    let config = Config::new(FileConfig::parse(&text, "bench").expect("parses"), "bench".into()).expect("valid");
    let region = StatusRegion::create(64).expect("a status region");
    for k in 0..64 {
        for v in 0..2000u64 {
            region.latency(k, Class::Read).record(100 + v % 900);
        }
    }
    let view = corelay::admin::View { config: &config, status: &region, balance: None };
    let ns = measure(5, || {
        black_box(corelay::admin::page::html(&view, None));
    });
    ("status page: 64 shards, 256 servers (ns; target < 50 ms)", ns)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |flag: &str| args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1)).cloned();
    let results = cases();
    let baseline: Vec<(String, f64)> = arg("--compare")
        .and_then(|f| std::fs::read_to_string(f).ok())
        .map(|t| {
            t.lines()
                .filter_map(|l| l.rsplit_once('\t'))
                .filter_map(|(n, v)| Some((n.to_string(), v.trim().parse().ok()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut table = String::new();
    for (name, ns) in &results {
        let line = format!("{name}\t{ns:.1}");
        match baseline.iter().find(|(n, _)| n == name) {
            Some((_, b)) => println!("{line}\t(baseline {b:.1}, ratio {:.2})", ns / b),
            None => println!("{line}"),
        }
        table.push_str(&line);
        table.push('\n');
    }
    if let Some(f) = arg("--save") {
        std::fs::write(&f, table).expect("baseline file written");
        println!("saved to {f}");
    }
}
