//! `SHOW RULES`: each `[[rule]]` in order, what it matches, what it does, and how many
//! statements it matched (summed over the shards that run these rules: a shard still on
//! other rules after a reload is left out until it takes them).

use std::sync::atomic::Ordering::Relaxed;

use crate::admin::{Command, Reply, View};
use crate::protocol::resultset::ResultSet;

pub struct ShowRules;

/// Statements each rule of the configuration matched, summed over the shards that run
/// those rules.
pub fn hits(view: &View) -> Vec<u64> {
    let id = crate::config::rules::id(&view.config.rules);
    let mut hits = vec![0u64; view.config.rules.len()];
    for k in 0..view.status.shards() {
        let slot = view.status.slot(k);
        if slot.rules_id.load(Relaxed) != id {
            continue;
        }
        for (sum, counter) in hits.iter_mut().zip(&slot.rule_hits) {
            *sum += counter.load(Relaxed);
        }
    }
    hits
}

impl Command for ShowRules {
    fn words(&self) -> &'static [&'static str] {
        &["SHOW", "RULES"]
    }

    fn help(&self) -> &'static str {
        "SHOW RULES: each [[rule]] in order with its name, what it matches, what it does, and the statements it matched"
    }

    fn run(&self, view: &View, _args: &[String]) -> Reply {
        let mut rs = ResultSet::new(&["rule", "name", "matches", "actions", "hits"]);
        let address = |id: usize| view.config.server(id).map(|s| s.address.as_str());
        for ((i, rule), hits) in view.config.rules.iter().enumerate().zip(hits(view)) {
            rs.rows.push(vec![
                Some(i.to_string()),
                Some(rule.name.clone()),
                Some(rule.conditions(&view.config.users)),
                Some(rule.actions(address)),
                Some(hits.to_string()),
            ]);
        }
        Reply::Rows(rs)
    }
}
