//! `corelay check-config FILE`: validates a configuration as corelay would load it (with
//! the command line's overrides), prints the effective configuration with passwords
//! masked, and exits 0 when it is valid, 1 when it is not.

use std::path::Path;

use crate::config::{Config, Overrides};

/// Checks `file`; returns the process exit code.
pub fn run(file: &Path, overrides: &Overrides) -> i32 {
    match Config::load(Some(&file.to_path_buf()), overrides) {
        Ok(c) => {
            print!("{}", c.to_toml());
            eprintln!(
                "{}: configuration is valid ({} shard(s), {} user(s), {} cluster(s))",
                c.source,
                c.shard_count(),
                c.users.len(),
                c.clusters.len()
            );
            0
        }
        Err(e) => {
            eprintln!("corelay: {e}");
            1
        }
    }
}
