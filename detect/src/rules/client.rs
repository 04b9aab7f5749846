//! Rules about who sends requests, whatever they ask: K8S_PenTestToolsKubeHunter and
//! K8S_TI_Proxy. They see every event, so they are built to cost nothing on the common
//! path, and they remember which clients they reported: a scanner sends hundreds of
//! requests, and one finding per tool, user and address says it.
//!
//! Penetration testing tools are recognised by user agent (client-go tools announce their
//! program name) and, for tools that hide behind a generic HTTP library such as kube-hunter
//! behind `python-requests`, by the probing pattern: several distinct sensitive requests
//! denied within a minute. Not seen: a tool that sets a Kubernetes client's user agent and is
//! allowed what it asks, and proxies absent from the user's feed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use ipnet::IpNet;

use crate::Config;
use crate::audit::{Event, Timestamp};
use crate::rules::{Entities, Finding, PEN_TEST_TOOLS, TI_PROXY, acting_user, non_empty, request_evidence};

const ANONYMOUS: &str = "system:anonymous";
/// A cluster has a few dozen distinct user agents; more than this and the cache starts over.
const AGENT_CACHE_CAPACITY: usize = 4096;

/// The client rules with what they remember between events.
#[derive(Debug)]
pub(crate) struct ClientRules {
    /// The tools' names, lowercase.
    tools: HashSet<String>,
    /// The tool each user agent seen so far names, if any: nearly every event comes from a
    /// user agent seen before, and a lookup costs less than reading its words.
    agents: HashMap<String, Option<String>>,
    feed: AddressFeed,
    reported: OnceOnly,
    probes: HashMap<String, Probe>,
}

impl ClientRules {
    pub fn new(config: &Config) -> Self {
        ClientRules {
            tools: config.pentest.tools.iter().map(|t| t.to_ascii_lowercase()).collect(),
            agents: HashMap::new(),
            feed: AddressFeed::new(&config.proxy_networks),
            reported: OnceOnly::new(config.once_only_memory),
            probes: HashMap::new(),
        }
    }

    pub fn evaluate(&mut self, event: &Event, config: &Config, findings: &mut Vec<Finding>) {
        if !self.feed.is_empty() {
            self.proxy_addresses(event, findings);
        }
        if let Some(tool) = event.user_agent.as_deref().and_then(|agent| self.tool_of(agent)) {
            self.tool_agent(event, &tool, findings);
        }
        if matches!(event.status_code(), Some(401 | 403)) {
            self.probing(event, config, findings);
        }
    }

    /// The penetration testing tool a user agent names.
    fn tool_of(&mut self, agent: &str) -> Option<String> {
        if let Some(tool) = self.agents.get(agent) {
            return tool.clone();
        }
        let lowercase = agent.to_ascii_lowercase();
        let tool = words(&lowercase).find(|word| self.tools.contains(*word)).map(str::to_owned);
        if self.agents.len() >= AGENT_CACHE_CAPACITY {
            self.agents.clear();
        }
        self.agents.insert(agent.to_owned(), tool.clone());
        tool
    }

    fn proxy_addresses(&mut self, event: &Event, findings: &mut Vec<Finding>) {
        for source in &event.source_ips {
            let Ok(address) = source.parse::<IpAddr>() else {
                continue;
            };
            let Some(entry) = self.feed.entry_containing(address.to_canonical()) else {
                continue;
            };
            let user = &event.effective_user().username;
            if !self.reported.first_time(format!("proxy\n{user}\n{source}")) {
                continue;
            }
            let mut evidence = request_evidence(event);
            evidence.push(("proxyAddress".to_owned(), source.clone()));
            evidence.push(("feedEntry".to_owned(), entry.to_string()));
            findings.push(Finding {
                alert_type: TI_PROXY,
                entities: client_entities(event),
                evidence,
                summary: format!("{user} sent API requests from {source}, a proxy address ({entry} in the feed)"),
            });
        }
    }

    fn tool_agent(&mut self, event: &Event, tool: &str, findings: &mut Vec<Finding>) {
        let user = &event.effective_user().username;
        let source = event.source_ips.first().map_or("", String::as_str);
        if !self.reported.first_time(format!("tool\n{tool}\n{user}\n{source}")) {
            return;
        }
        let mut evidence = request_evidence(event);
        evidence.push(("tool".to_owned(), tool.to_owned()));
        findings.push(Finding {
            alert_type: PEN_TEST_TOOLS,
            entities: client_entities(event),
            evidence,
            summary: format!("{user} is using the penetration testing tool {tool} from {source}"),
        });
    }

    fn probing(&mut self, event: &Event, config: &Config, findings: &mut Vec<Finding>) {
        let pentest = &config.pentest;
        let (Some(object_ref), Some(at)) = (&event.object_ref, event.timestamp()) else {
            return;
        };
        let resource = if object_ref.subresource.is_empty() {
            object_ref.resource.clone()
        } else {
            format!("{}/{}", object_ref.resource, object_ref.subresource)
        };
        let user = &event.effective_user().username;
        let anonymous = user.is_empty() || user == ANONYMOUS;
        let generic_client = event.user_agent.as_deref().is_some_and(|agent| {
            let product = agent.split(['/', ' ']).next().unwrap_or_default();
            pentest.generic_clients.iter().any(|c| c.eq_ignore_ascii_case(product))
        });
        if !(anonymous || generic_client) || !pentest.sensitive_resources.contains(&resource) {
            return;
        }
        let source = event.source_ips.first().map_or("", String::as_str);
        let key = format!("{user}\n{source}");
        let window_start = at.add_seconds(-pentest.probe_window_seconds);
        if !self.probes.contains_key(&key) && self.probes.len() >= pentest.max_probing_clients {
            self.probes.retain(|_, probe| probe.started >= window_start);
            if self.probes.len() >= pentest.max_probing_clients {
                return;
            }
        }
        let probe = self.probes.entry(key.clone()).or_insert_with(|| Probe { started: at, denied: Vec::new() });
        if probe.started < window_start {
            *probe = Probe { started: at, denied: Vec::new() };
        }
        let request = format!("{} {resource}", event.verb);
        if !probe.denied.contains(&request) {
            probe.denied.push(request);
        }
        if probe.denied.len() < pentest.probe_threshold || !self.reported.first_time(format!("probe\n{key}")) {
            return;
        }
        let denied = probe.denied.join(", ");
        let mut evidence = request_evidence(event);
        evidence.push(("deniedRequests".to_owned(), denied.clone()));
        evidence.push(("windowStart".to_owned(), probe.started.to_string()));
        let who = if user.is_empty() { "An unauthenticated client" } else { user.as_str() };
        findings.push(Finding {
            alert_type: PEN_TEST_TOOLS,
            entities: client_entities(event),
            evidence,
            summary: format!(
                "{who} from {source} probed the API like a penetration testing tool: {} sensitive requests denied within {} s ({denied})",
                probe.denied.len(),
                pentest.probe_window_seconds
            ),
        });
    }
}

/// Denied sensitive requests of one client within the current window.
#[derive(Debug)]
struct Probe {
    started: Timestamp,
    denied: Vec<String>,
}

fn client_entities(event: &Event) -> Entities {
    let service_account =
        event.effective_user().username.strip_prefix("system:serviceaccount:").and_then(|rest| rest.split_once(':'));
    Entities {
        namespace: service_account
            .map(|(ns, _)| ns.to_owned())
            .or_else(|| event.object_ref.as_ref().and_then(|o| non_empty(&o.namespace))),
        service_account: service_account.map(|(_, name)| name.to_owned()),
        user: acting_user(event),
        ..Entities::default()
    }
}

/// The words of a user agent: runs of letters, digits, `-` and `_`, so that `cdk` is a word
/// of `cdk/1.5` but not of `cdk8s/2.0` or `aws-cdk/2.0`, and `kube-hunter` is one word.
fn words(agent: &str) -> impl Iterator<Item = &str> {
    agent.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_')).filter(|w| !w.is_empty())
}

/// A set of CIDRs, looked up by binary search over merged address ranges, so a feed of
/// thousands of TOR exit nodes costs a few comparisons per address.
#[derive(Debug)]
struct AddressFeed {
    networks: Vec<IpNet>,
    ranges: Vec<(u128, u128)>,
}

/// IPv4 addresses are kept in the IPv4-mapped IPv6 range so one sorted list serves both.
fn address_number(address: IpAddr) -> u128 {
    match address {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl AddressFeed {
    fn new(networks: &[IpNet]) -> Self {
        let mut ranges: Vec<(u128, u128)> =
            networks.iter().map(|n| (address_number(n.network()), address_number(n.broadcast()))).collect();
        ranges.sort_unstable();
        let mut merged: Vec<(u128, u128)> = Vec::with_capacity(ranges.len());
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if start <= last.1.saturating_add(1) => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        AddressFeed { networks: networks.to_vec(), ranges: merged }
    }

    fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The feed entry that contains the address.
    fn entry_containing(&self, address: IpAddr) -> Option<IpNet> {
        let n = address_number(address);
        let i = self.ranges.partition_point(|&(start, _)| start <= n);
        let (_, end) = *self.ranges.get(i.checked_sub(1)?)?;
        if n > end {
            return None;
        }
        self.networks.iter().copied().find(|net| net.contains(&address))
    }
}

/// Remembers the last `capacity` keys, forgetting the oldest first.
#[derive(Debug)]
struct OnceOnly {
    capacity: usize,
    seen: HashSet<String>,
    order: VecDeque<String>,
}

impl OnceOnly {
    fn new(capacity: usize) -> Self {
        OnceOnly { capacity, seen: HashSet::new(), order: VecDeque::new() }
    }

    /// Whether the key is new; it is remembered from now on.
    fn first_time(&mut self, key: String) -> bool {
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity.max(1)
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        self.seen.insert(key.clone());
        self.order.push_back(key);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::test_support::{event, evidence};

    fn run(rules: &mut ClientRules, config: &Config, event: &Event) -> Vec<Finding> {
        let mut findings = Vec::new();
        rules.evaluate(event, config, &mut findings);
        findings
    }

    #[test]
    fn a_tool_user_agent_is_reported_once_per_user_and_address() {
        let config = Config::default();
        let mut rules = ClientRules::new(&config);
        let mut e = event("list", "", "secrets", "", "", "system:serviceaccount:shop:web");
        e.user_agent = Some("peirates/v0.0.0 (linux/amd64) kubernetes/$Format".into());
        let findings = run(&mut rules, &config, &e);
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].alert_type, PEN_TEST_TOOLS);
        assert_eq!(evidence(&findings[0], "tool"), Some("peirates"));
        assert_eq!(findings[0].entities.service_account.as_deref(), Some("web"));
        assert!(run(&mut rules, &config, &e).is_empty(), "the second request of the same scan");
        e.source_ips = vec!["198.51.100.8".into()];
        assert_eq!(run(&mut rules, &config, &e).len(), 1, "another address");
    }

    #[test]
    fn lookalike_agents_are_not_tools() {
        let config = Config::default();
        let mut rules = ClientRules::new(&config);
        for agent in [
            "cdk8s/2.68 (linux)",
            "aws-cdk/2.150.0",
            "kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0",
            "python-requests/2.32.3",
        ] {
            let mut e = event("get", "", "pods", "shop", "web", "alice");
            e.user_agent = Some(agent.into());
            assert!(run(&mut rules, &config, &e).is_empty(), "{agent}");
        }
    }

    fn denied(verb: &str, resource: &str, user: &str, agent: &str, second: u32) -> Event {
        let mut e = event(verb, "", resource, "", "", user);
        e.response_status.as_mut().unwrap().code = Some(403);
        e.user_agent = Some(agent.into());
        e.request_received_timestamp = Some(format!("2025-06-01T12:00:{second:02}.000000Z").parse().unwrap());
        e
    }

    #[test]
    fn probing_from_a_generic_client_is_reported_at_the_threshold() {
        let config = Config::default();
        let mut rules = ClientRules::new(&config);
        let agent = "python-requests/2.32.3";
        let steps =
            [("list", "namespaces"), ("list", "pods"), ("list", "pods"), ("list", "roles"), ("list", "clusterroles")];
        let mut reported = Vec::new();
        for (i, (verb, resource)) in steps.iter().enumerate() {
            reported.push(run(&mut rules, &config, &denied(verb, resource, ANONYMOUS, agent, i as u32)).len());
        }
        assert_eq!(reported, [0, 0, 0, 0, 1], "four distinct denials, the repeated one counted once");
        let again = run(&mut rules, &config, &denied("list", "secrets", ANONYMOUS, agent, 6));
        assert!(again.is_empty(), "reported once");
    }

    #[test]
    fn denials_of_kubernetes_clients_and_slow_probes_are_not_probing() {
        let config = Config::default();
        let mut rules = ClientRules::new(&config);
        // A controller without its RBAC yet: many denials, but a Kubernetes client.
        for (i, resource) in ["pods", "secrets", "configmaps", "deployments", "nodes"].iter().enumerate() {
            let e = denied(
                "list",
                resource,
                "system:serviceaccount:shop:op",
                "manager/v0.0.0 (linux/amd64) kubernetes/$Format",
                i as u32,
            );
            assert!(run(&mut rules, &config, &e).is_empty());
        }
        // curl, one request every 30 s: never four within a minute.
        let mut rules = ClientRules::new(&config);
        for (i, resource) in ["pods", "secrets", "configmaps", "nodes", "namespaces"].iter().enumerate() {
            let mut e = denied("get", resource, "bob", "curl/8.5.0", 0);
            e.request_received_timestamp = Some(Timestamp::from_unix_micros(i as i64 * 30_000_000));
            assert!(run(&mut rules, &config, &e).is_empty());
        }
    }

    #[test]
    fn proxy_addresses_are_matched_against_the_feed() {
        let config = Config {
            proxy_networks: vec![
                "203.0.113.0/24".parse().unwrap(),
                "198.51.100.7/32".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            ..Config::default()
        };
        let mut rules = ClientRules::new(&config);
        let mut e = event("get", "", "pods", "shop", "web", "alice");
        for (source, expected) in [
            ("192.0.2.1", 0),
            ("198.51.100.7", 1),
            ("198.51.100.8", 0),
            ("::ffff:203.0.113.44", 1),
            ("2001:db8::1", 1),
            ("not-an-ip", 0),
        ] {
            e.source_ips = vec![source.into()];
            let findings = run(&mut rules, &config, &e);
            assert_eq!(findings.len(), expected, "{source}");
            if expected == 1 {
                assert_eq!(findings[0].alert_type, TI_PROXY);
                assert_eq!(evidence(&findings[0], "proxyAddress"), Some(source));
            }
        }
        e.source_ips = vec!["198.51.100.7".into()];
        assert!(run(&mut rules, &config, &e).is_empty(), "reported once per user and address");
    }

    #[test]
    fn the_feed_merges_overlapping_networks() {
        let feed = AddressFeed::new(&[
            "10.0.0.0/8".parse().unwrap(),
            "10.1.0.0/16".parse().unwrap(),
            "11.0.0.0/8".parse().unwrap(),
        ]);
        assert_eq!(feed.ranges.len(), 1);
        assert_eq!(feed.entry_containing("11.2.3.4".parse().unwrap()), Some("11.0.0.0/8".parse().unwrap()));
        assert_eq!(feed.entry_containing("12.0.0.0".parse().unwrap()), None);
        assert_eq!(feed.entry_containing("9.255.255.255".parse().unwrap()), None);
    }

    #[test]
    fn once_only_forgets_the_oldest_at_capacity() {
        let mut once = OnceOnly::new(2);
        assert!(once.first_time("a".into()) && once.first_time("b".into()));
        assert!(!once.first_time("a".into()));
        assert!(once.first_time("c".into()));
        assert!(once.first_time("a".into()), "a was forgotten when c came");
        assert_eq!(once.seen.len(), 2);
    }
}
