//! `SHOW HISTOGRAM [READ|WRITE|OTHER|ALL]`: the merged latency buckets themselves (value
//! in microseconds, count), for `corelay report` and other tools to rebuild the histogram.

use crate::admin::{Command, Reply, View};
use crate::protocol::resultset::ResultSet;
use crate::status::Class;

pub struct ShowHistogram;

impl Command for ShowHistogram {
    fn words(&self) -> &'static [&'static str] {
        &["SHOW", "HISTOGRAM"]
    }

    fn help(&self) -> &'static str {
        "SHOW HISTOGRAM [READ|WRITE|OTHER|ALL]: non-empty latency buckets (value_us, count) merged over shards"
    }

    fn run(&self, view: &View, args: &[String]) -> Reply {
        let class = match args.first().map(String::as_str) {
            None | Some("ALL") => None,
            Some("READ") => Some(Class::Read),
            Some("WRITE") => Some(Class::Write),
            Some("OTHER") => Some(Class::Other),
            Some(other) => {
                return Reply::Err(
                    crate::protocol::code::PARSE_ERROR,
                    format!("SHOW HISTOGRAM {other}: use READ, WRITE, OTHER or ALL"),
                )
            }
        };
        let m = view.status.merged_latency(0..view.status.shards(), class);
        let mut rs = ResultSet::new(&["value_us", "count"]);
        for (v, n) in m.nonzero() {
            rs.push([v, n]);
        }
        Reply::Rows(rs)
    }
}
