//! `[[rule]]`: what a DBA says about statements, in order. A rule matches on the product
//! user, the schema, the client's address, the statement's class, its fingerprint, a
//! regular expression on its text, or a leading-comment tag (every condition it names
//! must hold); it routes the statement, refuses it, caps its time, pins the session or
//! logs it. The first rule that matches ends the search unless it says `continue = true`.
//!
//! Here rules are read and checked (a bad one is refused with its index and the reason);
//! [`crate::router::rules`] compiles them for the shards (one `RegexSet` for every
//! pattern) and applies them.

use std::collections::HashMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::validate::Check;
use super::{parse_cidr, ConfigError, Server, User};

/// Rules a configuration may have (their hit counters live in the status region).
pub const MAX_RULES: usize = crate::status::MAX_RULES;

/// ER_NOT_ALLOWED_COMMAND: what a refused statement gets unless `error_code` says.
pub const DEFAULT_ERROR_CODE: u16 = 1148;

/// One `[[rule]]` as the file has it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    /// For `SHOW RULES` and `/metrics` (default: `rule N`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// A product user's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The session's current schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    /// The client's address: an address or a CIDR range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    /// `read` or `write`, as corelay classifies the statement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// A statement shape, fingerprinted like every statement (`SELECT v FROM t WHERE id = ?`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// A regular expression on the statement's text (the `regex` crate's syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// A comment before the statement's first keyword whose text is this:
    /// `tag = "report"` matches `/* report */ SELECT ...`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// `primary`, `replica`, or the address of a server of the session's cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// Refuse the statement with this message; nothing reaches a server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The error's code (default 1148).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u16>,
    /// KILL QUERY on the server once the statement has run this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// false: the session keeps its connection from this statement on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplex: Option<bool>,
    /// true: the statement goes to the query log whatever `log_query_min_time_us` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<bool>,
    /// true: the rules after this one are looked at too (their actions win).
    #[serde(default, rename = "continue", skip_serializing_if = "Option::is_none")]
    pub continue_: Option<bool>,
}

/// A statement class a rule names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleClass {
    Read,
    Write,
}

/// Where a rule sends a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRoute {
    Primary,
    Replica,
    /// A server by id; its cluster's sessions only.
    Server(usize),
}

/// A checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// A product user's index.
    pub user: Option<usize>,
    pub schema: Option<String>,
    pub client: Option<IpNet>,
    pub class: Option<RuleClass>,
    pub digest: Option<String>,
    pub pattern: Option<String>,
    pub tag: Option<String>,
    pub route: Option<RuleRoute>,
    /// (code, message).
    pub error: Option<(u16, String)>,
    pub timeout_ms: Option<u64>,
    /// `multiplex = false`.
    pub pin: bool,
    pub log: bool,
    pub continue_: bool,
}

impl Rule {
    /// What it matches on, for `SHOW RULES`.
    pub fn conditions(&self, users: &[User]) -> String {
        let mut out = Vec::new();
        if let Some(u) = self.user.and_then(|u| users.get(u)) {
            out.push(format!("user={}", u.name));
        }
        let mut text = |key: &str, v: &Option<String>| {
            if let Some(v) = v {
                out.push(format!("{key}={v}"));
            }
        };
        text("schema", &self.schema);
        text("digest", &self.digest);
        text("pattern", &self.pattern);
        text("tag", &self.tag);
        if let Some(c) = self.client {
            out.push(format!("client={c}"));
        }
        if let Some(c) = self.class {
            out.push(format!("class={}", if c == RuleClass::Read { "read" } else { "write" }));
        }
        if out.is_empty() {
            return "any statement".into();
        }
        out.join(" ")
    }

    /// What it does, for `SHOW RULES`.
    pub fn actions<'a>(&self, address: impl Fn(usize) -> Option<&'a str>) -> String {
        let mut out = Vec::new();
        match self.route {
            Some(RuleRoute::Primary) => out.push("route=primary".to_string()),
            Some(RuleRoute::Replica) => out.push("route=replica".to_string()),
            Some(RuleRoute::Server(id)) => out.push(format!("route={}", address(id).unwrap_or("?"))),
            None => {}
        }
        if let Some((code, msg)) = &self.error {
            out.push(format!("error={code} {msg:?}"));
        }
        if let Some(t) = self.timeout_ms {
            out.push(format!("timeout_ms={t}"));
        }
        if self.pin {
            out.push("multiplex=false".into());
        }
        if self.log {
            out.push("log=true".into());
        }
        if self.continue_ {
            out.push("continue".into());
        }
        out.join(" ")
    }
}

/// Names a list of rules: equal lists, equal ids (across processes, so that the admin
/// port counts only the shards that run the rules it shows).
pub fn id(rules: &[Rule]) -> u64 {
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same in every process.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new();
    format!("{rules:?}").hash(&mut h);
    h.finish() | 1
}

impl Check<'_> {
    /// Checks every `[[rule]]`: what it names exists (a user, a server, a class), its
    /// pattern compiles, it does something, and no two actions contradict. An error names
    /// the rule by its index (counting from 0, in file order) and says why.
    pub(super) fn rules(
        &self,
        file: &[RuleFile],
        users_by_name: &HashMap<String, usize>,
        user_cluster: impl Fn(usize) -> usize,
        servers: &[Server],
    ) -> Result<Vec<Rule>, ConfigError> {
        if file.len() > MAX_RULES {
            return Err(self.bad("rule", format!("at most {MAX_RULES} rules ({} given)", file.len())));
        }
        file.iter().enumerate().map(|(i, r)| self.rule(i, r, users_by_name, &user_cluster, servers)).collect()
    }

    fn rule(
        &self,
        i: usize,
        r: &RuleFile,
        users_by_name: &HashMap<String, usize>,
        user_cluster: &impl Fn(usize) -> usize,
        servers: &[Server],
    ) -> Result<Rule, ConfigError> {
        let bad = |key: &str, message: String| {
            let key = if key.is_empty() { format!("rule[{i}]") } else { format!("rule[{i}].{key}") };
            self.bad(key, format!("rule {i}: {message}"))
        };
        let user = match &r.user {
            None => None,
            Some(name) => {
                Some(*users_by_name.get(name).ok_or_else(|| bad("user", format!("no [[user]] is named {name:?}")))?)
            }
        };
        let client = r.client.as_deref().map(parse_cidr).transpose().map_err(|m| bad("client", m))?;
        let class = match r.class.as_deref() {
            None => None,
            Some(c) if c.eq_ignore_ascii_case("read") => Some(RuleClass::Read),
            Some(c) if c.eq_ignore_ascii_case("write") => Some(RuleClass::Write),
            Some(c) => return Err(bad("class", format!("unknown class {c:?}: use \"read\" or \"write\""))),
        };
        if let Some(p) = &r.pattern {
            regex::bytes::RegexBuilder::new(p)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| bad("pattern", format!("not a valid regular expression: {e}")))?;
        }
        if r.digest.as_deref().is_some_and(|d| d.trim().is_empty()) {
            return Err(bad(
                "digest",
                "is empty: give a statement shape such as \"SELECT v FROM t WHERE id = ?\"".into(),
            ));
        }
        if r.tag.as_deref().is_some_and(|t| t.trim().is_empty() || t.contains("*/")) {
            return Err(bad("tag", "must be a comment's text: not empty, without */".into()));
        }
        let route = match r.route.as_deref() {
            None => None,
            Some("primary") => Some(RuleRoute::Primary),
            Some("replica") => Some(RuleRoute::Replica),
            Some(addr) => {
                let server = servers.iter().find(|s| !s.removed && s.address == addr).ok_or_else(|| {
                    bad("route", format!("{addr:?} is neither \"primary\", \"replica\" nor a server's address"))
                })?;
                if user.is_some_and(|u| user_cluster(u) != server.cluster) {
                    let name = r.user.as_deref().unwrap_or_default();
                    return Err(bad("route", format!("server {addr} is not in user {name:?}'s cluster")));
                }
                Some(RuleRoute::Server(server.id))
            }
        };
        let error = match &r.error {
            None if r.error_code.is_some() => return Err(bad("error_code", "goes with error = \"<message>\"".into())),
            None => None,
            Some(msg) => {
                let code = r.error_code.unwrap_or(DEFAULT_ERROR_CODE);
                if code < 1000 {
                    return Err(bad("error_code", format!("{code} is not a server error code (1000 and up)")));
                }
                if route.is_some() {
                    return Err(bad("route", "a rule that answers with an error routes nothing: drop route".into()));
                }
                Some((code, msg.clone()))
            }
        };
        if r.timeout_ms == Some(0) {
            return Err(bad("timeout_ms", "must be more than 0".into()));
        }
        let pin = r.multiplex == Some(false);
        let log = r.log == Some(true);
        if route.is_none() && error.is_none() && r.timeout_ms.is_none() && !pin && !log {
            return Err(bad("", "does nothing: give route, error, timeout_ms, multiplex = false or log = true".into()));
        }
        Ok(Rule {
            name: r.name.clone().unwrap_or_else(|| format!("rule {i}")),
            user,
            schema: r.schema.clone(),
            client,
            class,
            digest: r.digest.clone(),
            pattern: r.pattern.clone(),
            tag: r.tag.as_deref().map(|t| t.trim().to_string()),
            route,
            error,
            timeout_ms: r.timeout_ms,
            pin,
            log,
            continue_: r.continue_ == Some(true),
        })
    }
}
