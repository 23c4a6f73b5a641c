//! `SHOW DIGESTS [ORDER BY count|total_time|avg_time|errors] [LIMIT n]`: statement shapes
//! by fingerprint, user, schema and server side, summed over shards; `RESET DIGESTS`
//! starts every shard's table over.

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::{Command, Reply, View};
use crate::protocol::code;
use crate::protocol::resultset::ResultSet;
use crate::status::digests::{Row, Side};
use crate::util::time::format_time;

pub struct ShowDigests;
pub struct ResetDigests;

/// How rows are ordered (most first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Count,
    TotalTime,
    AvgTime,
    Errors,
}

impl Order {
    fn key(self, r: &Row) -> u64 {
        match self {
            Order::Count => r.count,
            Order::TotalTime => r.sum_us,
            Order::AvgTime => r.sum_us / r.count.max(1),
            Order::Errors => r.errors,
        }
    }
}

/// The merged rows, most first by `order`, at most `limit`.
pub fn top(view: &View, order: Order, limit: usize) -> Vec<Row> {
    let mut rows = view.status.merged_digests();
    rows.sort_by(|a, b| order.key(b).cmp(&order.key(a)).then(a.hash.cmp(&b.hash)));
    rows.truncate(limit);
    rows
}

/// The product user's name of a digest row.
pub fn user_name(view: &View, r: &Row) -> String {
    view.config.users.get(r.user as usize).map_or_else(String::new, |u| u.name.clone())
}

fn parse(args: &[String]) -> Result<(Order, usize), String> {
    let mut order = Order::TotalTime;
    let mut limit = usize::MAX;
    let mut i = 0;
    while i < args.len() {
        match (args[i].as_str(), args.get(i + 1).map(String::as_str), args.get(i + 2).map(String::as_str)) {
            ("ORDER", Some("BY"), Some(by)) => {
                order = match by {
                    "COUNT" => Order::Count,
                    "TOTAL_TIME" => Order::TotalTime,
                    "AVG_TIME" => Order::AvgTime,
                    "ERRORS" => Order::Errors,
                    other => return Err(format!("ORDER BY {other}: use count, total_time, avg_time or errors")),
                };
                i += 3;
            }
            ("LIMIT", Some(n), _) => {
                limit = n.parse().map_err(|_| format!("LIMIT {n}: not a number"))?;
                i += 2;
            }
            (other, ..) => return Err(format!("unexpected {other:?}")),
        }
    }
    Ok((order, limit))
}

impl Command for ShowDigests {
    fn words(&self) -> &'static [&'static str] {
        &["SHOW", "DIGESTS"]
    }

    fn help(&self) -> &'static str {
        "SHOW DIGESTS [ORDER BY count|total_time|avg_time|errors] [LIMIT n]: statement shapes per user, schema and server side, summed over shards"
    }

    fn run(&self, view: &View, args: &[String]) -> Reply {
        let (order, limit) = match parse(args) {
            Ok(p) => p,
            Err(e) => return Reply::Err(code::PARSE_ERROR, format!("SHOW DIGESTS: {e}")),
        };
        let mut rs = ResultSet::new(&[
            "digest",
            "digest_text",
            "user",
            "schema",
            "side",
            "count",
            "sum_time_us",
            "min_time_us",
            "max_time_us",
            "rows_sent",
            "rows_affected",
            "errors",
            "warnings",
            "first_seen",
            "last_seen",
        ]);
        for r in top(view, order, limit) {
            rs.rows.push(vec![
                Some(format!("{:016x}", r.hash)),
                Some(r.text.clone()),
                Some(user_name(view, &r)),
                Some(r.schema.clone()),
                Some(Side::name(r.side).into()),
                Some(r.count.to_string()),
                Some(r.sum_us.to_string()),
                Some(r.min_us.to_string()),
                Some(r.max_us.to_string()),
                Some(r.rows_sent.to_string()),
                Some(r.rows_affected.to_string()),
                Some(r.errors.to_string()),
                Some(r.warnings.to_string()),
                Some(format_time(r.first_ms)),
                Some(format_time(r.last_ms)),
            ]);
        }
        Reply::Rows(rs)
    }
}

impl Command for ResetDigests {
    fn words(&self) -> &'static [&'static str] {
        &["RESET", "DIGESTS"]
    }

    fn changes_state(&self) -> bool {
        true
    }

    fn help(&self) -> &'static str {
        "RESET DIGESTS: start every shard's digest table over"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        view.status.header().digest_generation.fetch_add(1, Relaxed);
        Reply::Ok("digest tables reset".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::status::digests::{Index, Sample, Side};
    use crate::status::StatusRegion;

    #[test]
    fn order_and_limit_are_read_and_bad_ones_refused() {
        let w = |s: &str| crate::admin::words(s)[2..].to_vec();
        assert_eq!(parse(&w("SHOW DIGESTS")), Ok((Order::TotalTime, usize::MAX)));
        assert_eq!(parse(&w("show digests order by count limit 3")), Ok((Order::Count, 3)));
        assert_eq!(parse(&w("SHOW DIGESTS LIMIT 2 ORDER BY avg_time")), Ok((Order::AvgTime, 2)));
        assert!(parse(&w("SHOW DIGESTS ORDER BY size")).is_err());
        assert!(parse(&w("SHOW DIGESTS LIMIT x")).is_err());
    }

    #[test]
    fn shards_are_summed_and_reset_empties_them() {
        let config = Config::new(Config::embedded(), "t".into()).unwrap();
        let status = StatusRegion::create(2).unwrap();
        let view = View { config: &config, status: &status, balance: None };
        for (k, us) in [(0, 10), (1, 30)] {
            let s = Sample {
                hash: 7,
                user: 0,
                side: Side::Replica,
                schema: "app",
                us,
                rows_sent: 1,
                rows_affected: 0,
                error: k == 1,
                warnings: 0,
                now_ms: 1000 + us,
            };
            Index::default().record(&status.digests(k), 0, &s, || "SELECT ?".into());
        }
        let Reply::Rows(rs) = crate::admin::run(&view, "SHOW DIGESTS") else { panic!("rows") };
        assert_eq!(rs.rows.len(), 1);
        let row = &rs.rows[0];
        let col = |name: &str| row[rs.columns.iter().position(|c| c == name).unwrap()].clone().unwrap();
        assert_eq!(
            (col("count"), col("sum_time_us"), col("min_time_us"), col("max_time_us")),
            ("2".into(), "40".into(), "10".into(), "30".into())
        );
        assert_eq!(
            (col("errors"), col("side"), col("user"), col("digest_text")),
            ("1".into(), "replica".into(), "root".into(), "SELECT ?".into())
        );
        assert!(matches!(crate::admin::run(&view, "RESET DIGESTS"), Reply::Ok(_)));
        assert!(matches!(crate::admin::run(&view, "SHOW DIGESTS"), Reply::Rows(r) if r.rows.is_empty()));
    }
}
