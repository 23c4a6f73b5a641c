//! The `[[rule]]` engine ([`crate::config::rules`] reads and checks the rules): one
//! implementation of the routing [`Hook`], built by each shard from its configuration.
//!
//! Cost: a shard with no rules does nothing per statement. Conditions are tried cheapest
//! first (user, class, schema, client, fingerprint: compares of what the session already
//! knows); every `pattern` is in one `RegexSet`, run over the statement at most once and
//! only when a rule with a pattern is reached with its other conditions met; a tag is
//! looked for only when a rule with a tag is reached. Hits are counted in the shard's
//! status slot (single writer, no lock).

use std::net::SocketAddr;
use std::sync::Arc;

use regex::bytes::RegexSet;

use super::classify::{self, Class};
use super::hook::{Decision, Hook, Refusal, Route, Statement};
use crate::config::rules::{Rule, RuleClass, RuleRoute};
use crate::config::Config;
use crate::status::{Slot, StatusRegion};

/// A rule, compiled.
#[derive(Debug)]
struct Compiled {
    rule: Rule,
    /// The fingerprint of its `digest`.
    digest: Option<u64>,
    /// Its pattern's index in the set.
    pattern: Option<usize>,
    /// Its route.
    route: Option<Route>,
}

/// A shard's rules.
#[derive(Default)]
pub struct Rules {
    rules: Vec<Compiled>,
    patterns: Option<RegexSet>,
    /// Where hits are counted: the status region and the shard's slot.
    hits: Option<(Arc<StatusRegion>, usize)>,
}

impl Rules {
    /// Compiles `config`'s rules; hits are counted in slot `hits.1` of `hits.0`.
    pub fn new(config: &Config, hits: Option<(Arc<StatusRegion>, usize)>) -> Rules {
        let mut sources = Vec::new();
        let rules = config
            .rules
            .iter()
            .map(|r| Compiled {
                digest: r.digest.as_deref().map(|d| super::digest::of(d.as_bytes())),
                pattern: r.pattern.as_ref().map(|p| {
                    sources.push(p.as_str());
                    sources.len() - 1
                }),
                route: r.route.map(|route| match route {
                    RuleRoute::Primary => Route::Primary,
                    RuleRoute::Replica => Route::Replica,
                    RuleRoute::Server(id) => Route::Server(config.server(id).map_or(unspecified(), |s| s.addr)),
                }),
                rule: r.clone(),
            })
            .collect();
        // Each pattern compiled when the configuration was checked; a set of them can
        // still exceed the size limit.
        let patterns = (!sources.is_empty())
            .then(|| regex::bytes::RegexSetBuilder::new(&sources).size_limit(64 << 20).build())
            .transpose()
            .unwrap_or_else(|e| {
                tracing::error!(
                    "the rules' patterns do not compile together ({e}); rules with a pattern match nothing"
                );
                None
            });
        Rules { rules, patterns, hits }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    fn hit(&self, i: usize) {
        if let Some((status, shard)) = &self.hits {
            Slot::add(&status.slot(*shard).rule_hits[i], 1);
        }
    }
}

fn unspecified() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 0))
}

/// The conditions that cost a compare.
fn plain_match(r: &Rule, digest: Option<u64>, s: &Statement<'_>) -> bool {
    r.user.is_none_or(|u| u == s.user_index)
        && r.class.is_none_or(|c| (c == RuleClass::Read) == (s.class == Class::Read))
        && digest.is_none_or(|d| d == s.fingerprint)
        && r.schema.as_deref().is_none_or(|want| s.schema == Some(want))
        && r.client.is_none_or(|net| net.contains(&crate::config::canonical_ip(s.client)))
}

impl Hook for Rules {
    fn on_statement(&self, s: &Statement<'_>, d: &mut Decision) {
        let mut matches = None;
        for (i, c) in self.rules.iter().enumerate() {
            let r = &c.rule;
            if !plain_match(r, c.digest, s) {
                continue;
            }
            if let Some(p) = c.pattern {
                let Some(set) = &self.patterns else { continue };
                // Most statements match no pattern: one is_match pass says so (cheaper than
                // asking which match); only a statement some pattern matches is read again.
                let which = matches.get_or_insert_with(|| set.is_match(s.text).then(|| set.matches(s.text)));
                if !which.as_ref().is_some_and(|m| m.matched(p)) {
                    continue;
                }
            }
            if r.tag.as_deref().is_some_and(|t| !classify::leading_comment_is(s.text, t)) {
                continue;
            }
            self.hit(i);
            if let Some((code, message)) = &r.error {
                d.error = Some(Refusal::new(*code, message.clone()));
                return;
            }
            d.route = c.route.or(d.route);
            if let Some(t) = r.timeout_ms {
                d.timeout = Some(std::time::Duration::from_millis(t));
            }
            d.pin |= r.pin;
            d.log |= r.log;
            if !r.continue_ {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::FileConfig;
    use std::net::IpAddr;

    fn config(rules: &str) -> Config {
        let text = format!(
            r#"
[[cluster]]
name = "c"
[[cluster.server]]
address = "127.0.0.1:3306"
role = "primary"
[[cluster.server]]
address = "127.0.0.1:3307"
role = "replica"
[[db_user]]
name = "d"
cluster = "c"
[[user]]
name = "app"
db_user = "d"
allow_empty_password = true
[[user]]
name = "report"
db_user = "d"
allow_empty_password = true
{rules}"#
        );
        Config::new(FileConfig::parse(&text, "t").unwrap(), "t".into()).unwrap()
    }

    fn decide(rules: &Rules, sql: &str, user: usize, schema: Option<&str>, client: &str) -> Decision {
        let text = sql.as_bytes();
        let s = Statement {
            text,
            user: "",
            user_index: user,
            schema,
            client: client.parse::<IpAddr>().unwrap(),
            class: classify::classify(text),
            fingerprint: super::super::digest::of(text),
            prepared: false,
            shard: 0,
        };
        let mut d = Decision::default();
        rules.on_statement(&s, &mut d);
        d
    }

    #[test]
    fn conditions_and_first_match() {
        let c = config(
            r#"
[[rule]]
digest = "SELECT @@server_id, ?"
route = "primary"
[[rule]]
pattern = "(?i)^select .* from big_report"
error = "reports run elsewhere"
[[rule]]
user = "report"
class = "read"
route = "127.0.0.1:3307"
timeout_ms = 500
continue = true
[[rule]]
schema = "audit"
client = "10.0.0.0/8"
multiplex = false
[[rule]]
tag = "trace"
log = true
"#,
        );
        let rules = Rules::new(&c, None);
        let d = decide(&rules, "SELECT @@server_id, 1", 0, None, "127.0.0.1");
        assert_eq!(d.route, Some(Route::Primary));
        let d = decide(&rules, "select x from big_report", 0, None, "127.0.0.1");
        assert_eq!(d.error, Some(Refusal::new(1148, "reports run elsewhere")));
        let d = decide(&rules, "SELECT 1", 1, None, "127.0.0.1");
        assert_eq!(d.route, Some(Route::Server("127.0.0.1:3307".parse().unwrap())));
        assert_eq!(d.timeout, Some(std::time::Duration::from_millis(500)));
        assert!(!d.pin, "continue: the next rules are tried, and do not match");
        let d = decide(&rules, "SELECT 1", 1, Some("audit"), "10.1.2.3");
        assert!(d.pin && d.timeout.is_some(), "continue: both rules apply");
        assert!(decide(&rules, "UPDATE t SET a = 1", 1, Some("audit"), "127.0.0.1").is_empty());
        assert!(decide(&rules, "/* trace */ UPDATE t SET a = 1", 0, None, "127.0.0.1").log);
        assert!(!decide(&rules, "UPDATE t SET a = 1 /* trace */", 0, None, "127.0.0.1").log);
        assert!(decide(&rules, "SELECT 2", 0, None, "127.0.0.1").is_empty());
    }

    #[test]
    fn bad_rules_are_refused_with_their_index() {
        let refused = |rules: &str| {
            let text = config("").file;
            let mut file = toml::to_string(&text).unwrap();
            file.push_str(rules);
            Config::new(FileConfig::parse(&file, "t").unwrap(), "t".into()).unwrap_err().to_string()
        };
        let e = refused("[[rule]]\nroute = \"primary\"\n[[rule]]\npattern = \"(unclosed\"\nroute = \"replica\"\n");
        assert!(e.contains("rule[1].pattern") && e.contains("rule 1: not a valid regular expression"), "{e}");
        let e = refused("[[rule]]\nuser = \"nobody\"\nroute = \"primary\"\n");
        assert!(e.contains("rule[0].user"), "{e}");
        let e = refused("[[rule]]\nroute = \"10.9.9.9:3306\"\n");
        assert!(e.contains("rule[0].route"), "{e}");
        let e = refused("[[rule]]\npattern = \"x\"\n");
        assert!(e.contains("does nothing"), "{e}");
        let e = refused("[[rule]]\nclass = \"select\"\nlog = true\n");
        assert!(e.contains("rule[0].class"), "{e}");
        let e = refused("[[rule]]\nerror = \"no\"\nroute = \"primary\"\n");
        assert!(e.contains("rule[0].route"), "{e}");
    }
}
