//! `corelay report`: fetches the merged latency histogram of a running corelay from its
//! admin port (`SHOW HISTOGRAM`) and writes an HdrHistogram percentile-distribution file
//! (`.hgrm`) and an SVG plot of the same distribution ([`crate::status::plot`]).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::backend::blocking::{login, query};
use crate::config::Config;
use crate::status::latency::{write_hgrm, Merged};
use crate::status::plot::svg;

/// Reads `SHOW HISTOGRAM <class>` from the admin port at `addr`.
pub fn fetch(addr: SocketAddr, user: &str, password: &str, class: &str) -> Result<Merged, String> {
    let mut s =
        login(addr, Duration::from_secs(5), user, password, None).map_err(|e| format!("admin port {addr}: {e}"))?;
    let (_, rows) = query(&mut s, &format!("SHOW HISTOGRAM {class}")).map_err(|e| format!("SHOW HISTOGRAM: {e}"))?;
    let mut m = Merged::default();
    for row in rows {
        let num = |i: usize| row.get(i).cloned().flatten().and_then(|v| v.parse::<u64>().ok());
        if let (Some(v), Some(n)) = (num(0), num(1)) {
            m.add_value(v, n);
        }
    }
    Ok(m)
}

/// Writes `<stem>.hgrm` and `<stem>.svg` into `dir`; returns their paths.
pub fn write(m: &Merged, dir: &Path, stem: &str, title: &str) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut hgrm = String::new();
    write_hgrm(m, &mut hgrm);
    let hp = dir.join(format!("{stem}.hgrm"));
    std::fs::write(&hp, hgrm).map_err(|e| format!("{}: {e}", hp.display()))?;
    let sp = dir.join(format!("{stem}.svg"));
    std::fs::write(&sp, svg(m, title)).map_err(|e| format!("{}: {e}", sp.display()))?;
    Ok((hp, sp))
}

/// What `corelay report` was asked for.
pub struct Args<'a> {
    pub admin: Option<&'a str>,
    pub user: Option<&'a str>,
    pub password: Option<&'a str>,
    pub class: &'a str,
    pub out: &'a Path,
    /// Print the top this many digests (by total time) instead of the histogram files.
    pub digests: Option<usize>,
}

/// Columns of `SHOW DIGESTS` the digest table prints.
const DIGEST_COLUMNS: [&str; 7] = ["count", "sum_time_us", "max_time_us", "errors", "user", "side", "digest_text"];

/// A terminal table of `SHOW DIGESTS` rows (`head` names the columns of `rows`).
pub fn digest_table(head: &[String], rows: &[Vec<Option<String>>]) -> String {
    use std::fmt::Write as _;
    let col = |name: &str| head.iter().position(|h| h == name);
    let cell = |row: &Vec<Option<String>>, name: &str| {
        col(name).and_then(|i| row.get(i).cloned().flatten()).unwrap_or_default()
    };
    let num = |row: &Vec<Option<String>>, name: &str| cell(row, name).parse::<u64>().unwrap_or(0);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>10} {:>10} {:>9} {:>9} {:>6} {:<12} {:<7} statement",
        "count", "total_ms", "avg_us", "max_us", "errors", "user", "side"
    );
    for r in rows {
        let (count, sum) = (num(r, "count"), num(r, "sum_time_us"));
        let text: String = cell(r, "digest_text").chars().take(100).collect();
        let _ = writeln!(
            out,
            "{:>10} {:>10.1} {:>9} {:>9} {:>6} {:<12} {:<7} {}",
            count,
            sum as f64 / 1000.0,
            sum / count.max(1),
            num(r, "max_time_us"),
            num(r, "errors"),
            cell(r, "user"),
            cell(r, "side"),
            text
        );
    }
    out
}

/// Runs `corelay report` against the admin port of `config` (or `--admin`): prints what it
/// wrote.
pub fn run(config: &Config, args: &Args<'_>) -> Result<(), String> {
    let addr: SocketAddr = match args.admin {
        Some(a) => a.parse().map_err(|_| format!("--admin {a}: not an ip:port address"))?,
        None => config.admin_addr.ok_or("proxy.admin_listen is off; pass --admin ADDR")?,
    };
    let first = config.admin_users.first();
    let user =
        args.user.or(first.map(|a| a.name.as_str())).ok_or("no --user and no [[admin_user]] in the configuration")?;
    let password = args
        .password
        .map(str::to_string)
        .or_else(|| config.admin_users.iter().find(|a| a.name == user).map(|a| a.password.clone()))
        .unwrap_or_default();
    if let Some(n) = args.digests {
        let mut s = login(addr, Duration::from_secs(5), user, &password, None)
            .map_err(|e| format!("admin port {addr}: {e}"))?;
        let (head, rows) = query(&mut s, &format!("SHOW DIGESTS ORDER BY total_time LIMIT {n}"))
            .map_err(|e| format!("SHOW DIGESTS: {e}"))?;
        debug_assert!(DIGEST_COLUMNS.iter().all(|c| head.iter().any(|h| h == c)));
        print!("{}", digest_table(&head, &rows));
        return Ok(());
    }
    let class = args.class.to_ascii_lowercase();
    if !["read", "write", "other", "all"].contains(&class.as_str()) {
        return Err(format!("--class {class}: use read, write, other or all"));
    }
    let merged = fetch(addr, user, &password, &class)?;
    let title = format!("corelay {addr}: {class} latency");
    let (hgrm, svg) = write(&merged, args.out, &format!("corelay-latency-{class}"), &title)?;
    println!("{} statements; wrote {} and {}", merged.count(), hgrm.display(), svg.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_table_reads_by_column_name() {
        let head: Vec<String> = ["digest_text", "count", "sum_time_us", "max_time_us", "errors", "user", "side"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let row = |t: &str, n: &str, sum: &str| {
            [t, n, sum, "900", "0", "app", "replica"].iter().map(|s| Some(s.to_string())).collect::<Vec<_>>()
        };
        let out = digest_table(&head, &[row("SELECT c FROM t WHERE id=?", "4", "2000")]);
        let line = out.lines().nth(1).unwrap();
        assert!(
            line.contains("2.0") && line.contains(" 500 ") && line.ends_with("SELECT c FROM t WHERE id=?"),
            "{out}"
        );
    }

    #[test]
    fn hgrm_and_svg_files_are_written() {
        let mut m = Merged::default();
        m.add_value(500, 2000);
        let dir = tempfile::tempdir().unwrap();
        let (h, s) = write(&m, dir.path(), "x", "t").unwrap();
        let text = std::fs::read_to_string(h).unwrap();
        assert!(text.contains("Total count    =         2000"), "{text}");
        assert!(std::fs::read_to_string(s).unwrap().contains("<polyline"));
    }
}
