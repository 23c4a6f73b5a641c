//! `GET /status` (one self-contained HTML page) and `GET /status.json` on `metrics_listen`:
//! what a DBA looks at first. Every table is the admin port's own command run on the same
//! view (`SHOW SHARDS`, `SHOW SERVERS`, ...), so the page, the JSON and the admin port
//! always agree. No script, no external asset: inline CSS and the report's inline SVG plot;
//! `?refresh=N` reloads the page every N seconds (a meta tag). Everything from a client or
//! the configuration is escaped.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use super::{Reply, View};
use crate::protocol::resultset::ResultSet;
use crate::util::markup::escape;

/// One section of the page: a title, the JSON key, the admin statement it shows.
struct Section {
    key: &'static str,
    title: &'static str,
    sql: &'static str,
}

const SECTIONS: &[Section] = &[
    Section { key: "shards", title: "Shards", sql: "SHOW SHARDS" },
    Section { key: "servers", title: "Servers", sql: "SHOW SERVERS" },
    Section { key: "pools", title: "Pools", sql: "SHOW POOLS" },
    Section { key: "latency", title: "Latency (µs)", sql: "SHOW LATENCY" },
    Section { key: "digests", title: "Top statements by total time", sql: "SHOW DIGESTS ORDER BY total_time LIMIT 10" },
    Section { key: "users", title: "Users", sql: "SHOW USERS" },
    Section { key: "rules", title: "Rules", sql: "SHOW RULES" },
    Section { key: "stats", title: "Counters", sql: "SHOW STATS" },
];

/// What the page shows, taken once.
struct Snapshot {
    process: Vec<(&'static str, String)>,
    tables: Vec<(&'static Section, ResultSet)>,
}

fn snapshot(view: &View) -> Snapshot {
    let h = view.status.header();
    let started = h.started_unix_s.load(Relaxed);
    let uptime = crate::util::time::unix_s().saturating_sub(started);
    let mode = match view.config.proxy.worker_mode {
        crate::config::WorkerMode::Thread => "thread",
        crate::config::WorkerMode::Fork => "fork",
    };
    let source = match &view.config.file.zookeeper {
        Some(_) => format!(
            "{} + ZooKeeper ({})",
            view.config.source,
            crate::status::zookeeper::source::name(h.zookeeper.source.load(Relaxed))
        ),
        None => view.config.source.clone(),
    };
    let process = vec![
        ("version", env!("CARGO_PKG_VERSION").to_string()),
        ("uptime_s", uptime.to_string()),
        ("started", crate::util::time::format_time(started * 1000)),
        ("worker_mode", mode.to_string()),
        ("shards", view.status.shards().to_string()),
        ("config_version", view.config.version.to_string()),
        ("config_source", source),
        ("listen", view.config.listen.to_string()),
        ("digests", if view.config.proxy.digests { "on" } else { "off" }.to_string()),
    ];
    let tables = SECTIONS
        .iter()
        .filter_map(|s| match super::run(view, s.sql) {
            Reply::Rows(rs) => Some((s, rs)),
            _ => None,
        })
        .collect();
    Snapshot { process, tables }
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}\
h1{font-size:1.4em;margin:0 0 .5em}h2{font-size:1.1em;margin:1.4em 0 .4em}\
table{border-collapse:collapse;background:#fff;margin-bottom:.5em}\
th,td{border:1px solid #ccc;padding:2px 8px;text-align:right;white-space:nowrap}\
th{background:#e8e8f0}td.t{text-align:left}td.w{text-align:left;white-space:normal;min-width:20em;max-width:40em;overflow-wrap:anywhere}\
tr.up td{background:#e6f6e6}tr.down td{background:#f8d7d7}tr.lagging td{background:#fff1c8}\
tr.removed td{background:#eee;color:#888}p.note{color:#666}";

/// The page. `refresh`: seconds between reloads (None: none).
pub fn html(view: &View, refresh: Option<u32>) -> String {
    let snap = snapshot(view);
    let mut out = String::with_capacity(64 * 1024);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    if let Some(n) = refresh.filter(|n| *n > 0) {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{n}\">");
    }
    let _ = write!(
        out,
        "<link rel=\"icon\" href=\"data:,\"><title>corelay status</title><style>{STYLE}</style></head><body>"
    );
    out.push_str("<h1>corelay</h1><table id=\"process\">");
    for (k, v) in &snap.process {
        let _ = write!(out, "<tr><th>{k}</th><td class=\"t\">{}</td></tr>", escape(v));
    }
    out.push_str("</table>");
    for (section, rs) in &snap.tables {
        let _ = write!(out, "<h2>{}</h2>", section.title);
        if section.key == "digests" && !view.config.proxy.digests {
            out.push_str("<p class=\"note\">digests off (proxy.digests = false)</p>");
            continue;
        }
        if rs.rows.is_empty() {
            out.push_str("<p class=\"note\">none</p>");
            continue;
        }
        table(&mut out, section.key, rs);
        if section.key == "latency" {
            let m = view.status.merged_latency(0..view.status.shards(), None);
            if m.count() > 0 {
                out.push_str("<div id=\"plot\">");
                out.push_str(&crate::status::plot::svg(&m, "every statement, all shards"));
                out.push_str("</div>");
            }
        }
    }
    out.push_str("<p class=\"note\">Every figure is what the admin port's SHOW commands answer now; /status.json has the same as JSON.</p></body></html>\n");
    out
}

/// One table; rows of `servers` are coloured by their health.
fn table(out: &mut String, key: &str, rs: &ResultSet) {
    let health = (key == "servers").then(|| rs.columns.iter().position(|c| c == "state")).flatten();
    let _ = write!(out, "<table id=\"{key}\"><tr>");
    for c in &rs.columns {
        let _ = write!(out, "<th>{}</th>", escape(c));
    }
    out.push_str("</tr>");
    // Long texts wrap; every other cell stays on one line.
    let wraps: Vec<bool> =
        rs.columns.iter().map(|c| matches!(c.as_str(), "digest_text" | "matches" | "actions" | "reason")).collect();
    for row in &rs.rows {
        match health.and_then(|i| row.get(i).cloned().flatten()) {
            Some(h) => {
                let _ = write!(out, "<tr class=\"{}\">", escape(&h));
            }
            None => out.push_str("<tr>"),
        }
        for (v, wrap) in row.iter().zip(&wraps) {
            match v {
                Some(v) if v.parse::<f64>().is_ok() => {
                    let _ = write!(out, "<td>{}</td>", escape(v));
                }
                Some(v) => {
                    let class = if *wrap { "w" } else { "t" };
                    let _ = write!(out, "<td class=\"{class}\">{}</td>", escape(v));
                }
                None => out.push_str("<td class=\"t\">NULL</td>"),
            }
        }
        out.push_str("</tr>");
    }
    out.push_str("</table>");
}

/// The same content as JSON: `process` (an object), then one array of row objects per
/// table, numbers as numbers and NULL as null.
pub fn json(view: &View) -> String {
    use serde_json::{Map, Value};
    let snap = snapshot(view);
    let mut top = Map::new();
    let process: Map<String, Value> = snap.process.iter().map(|(k, v)| (k.to_string(), typed(Some(v)))).collect();
    top.insert("process".into(), Value::Object(process));
    for (section, rs) in &snap.tables {
        let rows = rs
            .rows
            .iter()
            .map(|row| {
                let obj: Map<String, Value> =
                    rs.columns.iter().zip(row).map(|(c, v)| (c.clone(), typed(v.as_ref()))).collect();
                Value::Object(obj)
            })
            .collect();
        top.insert(section.key.into(), Value::Array(rows));
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(top)).unwrap_or_else(|_| "{}".into());
    text.push('\n');
    text
}

/// A value as JSON: an integer or a number when it reads as one, else a string.
fn typed(v: Option<&String>) -> serde_json::Value {
    use serde_json::Value;
    let Some(v) = v else { return Value::Null };
    if let Ok(n) = v.parse::<i64>() {
        return Value::from(n);
    }
    if let Ok(n) = v.parse::<u64>() {
        return Value::from(n);
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() && !v.is_empty() && v.trim() == v => Value::from(f),
        _ => Value::from(v.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::status::StatusRegion;

    #[test]
    fn the_page_escapes_what_it_shows() {
        assert_eq!(
            escape("<script>alert('x')&\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;)&amp;&quot;&lt;/script&gt;"
        );
        let config = Config::new(Config::embedded(), "t".into()).unwrap();
        let status = StatusRegion::create(3).unwrap();
        let view = View { config: &config, status: &status, balance: None };
        let page = html(&view, Some(5));
        assert!(page.contains("<meta http-equiv=\"refresh\" content=\"5\">"));
        assert_eq!(page.matches("<table id=\"shards\">").count(), 1);
        let v: serde_json::Value = serde_json::from_str(&json(&view)).unwrap();
        assert_eq!(v["shards"].as_array().map(Vec::len), Some(3));
        assert_eq!(v["process"]["shards"], serde_json::Value::from(3));
    }
}
