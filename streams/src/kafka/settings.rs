use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::Error;

/// Event Hubs' Kafka endpoint listens on this port of the namespace's host.
pub const EVENT_HUBS_KAFKA_PORT: u16 = 9093;

/// The SASL PLAIN username Event Hubs expects when the password is a connection string.
pub const EVENT_HUBS_USERNAME: &str = "$ConnectionString";

/// How the consumer reaches and joins its group: every setting has a default but the
/// brokers, the topics and the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The bootstrap brokers, `host:port` separated by commas.
    pub brokers: String,
    /// The topics to consume (for Event Hubs: the event hubs).
    pub topics: Vec<String>,
    /// The consumer group: every consumer with this id shares the topics' partitions, and
    /// the group's committed offsets say where a restarted consumer resumes.
    pub group_id: String,
    /// TLS and authentication.
    pub security: Security,
    /// Names this client in the brokers' logs and quotas.
    pub client_id: String,
    /// Where a group that has committed nothing yet starts reading.
    pub start_from: StartFrom,
    /// The most records handed to the sink at once.
    pub max_batch_records: usize,
    /// How long a batch waits for more records after its first one.
    pub max_batch_wait: Duration,
    /// The pause after the sink first refuses a batch; it doubles on every refusal of the
    /// same batch up to `max_refusal_backoff`.
    pub refusal_backoff: Duration,
    /// The longest pause between two offers of a refused batch.
    pub max_refusal_backoff: Duration,
    /// How long [`Consumer::start`](super::Consumer::start) waits for a broker to answer.
    pub connect_timeout: Duration,
    /// The group drops a consumer whose heartbeats stop for this long.
    pub session_timeout: Duration,
    /// The group drops a consumer that does not ask for records for this long, which
    /// includes the time the sink takes, or keeps refusing, one batch; its partitions go to
    /// the others, who resume after the last committed record.
    pub max_poll_interval: Duration,
    /// How often librdkafka reports the statistics the lag is read from.
    pub statistics_interval: Duration,
    /// librdkafka properties set after all the above, which they override
    /// (<https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md>).
    pub librdkafka: BTreeMap<String, String>,
}

/// How the consumer talks to the brokers.
#[derive(Clone, PartialEq, Eq)]
pub enum Security {
    /// No TLS, no authentication (a broker on a trusted network, or a test).
    Plaintext,
    /// TLS, and SASL PLAIN with these credentials.
    SaslSsl {
        /// The SASL PLAIN username (`$ConnectionString` for Event Hubs).
        username: String,
        /// The SASL PLAIN password (the connection string for Event Hubs).
        password: String,
        /// A PEM file of the CA certificates the brokers' certificate must chain to; without
        /// one, the Mozilla root store built into this crate (the operator's image has no
        /// system store).
        ca_file: Option<PathBuf>,
    },
}

/// Where a consumer group starts on a partition it has committed no offset for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The oldest record the topic still keeps.
    Earliest,
    /// Only records written from now on.
    Latest,
}

impl Settings {
    /// Settings for `brokers` with the defaults: plaintext, client id `riposte`, start from
    /// the earliest record, batches of at most 64 records or 250 ms, refusals retried after
    /// 1 s doubling to 30 s, a 30 s connect and session timeout, a 5 min poll interval and
    /// statistics every 5 s.
    pub fn new(brokers: impl Into<String>, topics: Vec<String>, group_id: impl Into<String>) -> Settings {
        Settings {
            brokers: brokers.into(),
            topics,
            group_id: group_id.into(),
            security: Security::Plaintext,
            client_id: "riposte".to_string(),
            start_from: StartFrom::Earliest,
            max_batch_records: 64,
            max_batch_wait: Duration::from_millis(250),
            refusal_backoff: Duration::from_secs(1),
            max_refusal_backoff: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(30),
            max_poll_interval: Duration::from_secs(300),
            statistics_interval: Duration::from_secs(5),
            librdkafka: BTreeMap::new(),
        }
    }

    /// Settings for the Kafka endpoint of an Event Hubs namespace, as Azure documents it:
    /// `<namespace_host>:9093`, SASL PLAIN over TLS with username `$ConnectionString` and the
    /// connection string as the password, and the client settings Azure recommends (TCP
    /// keepalive, metadata and idle connections refreshed within Azure's 240 s idle cut-off,
    /// a session timeout of at least 30 s). `hub` is the event hub the AKS diagnostic
    /// setting writes to (the Kafka topic); the group is `riposte`.
    ///
    /// The connection string must name `namespace_host` as its endpoint and, when it is
    /// scoped to one event hub (`EntityPath`), that hub: a mismatch is reported here rather
    /// than as an authentication failure later.
    pub fn event_hubs(namespace_host: &str, connection_string: &str, hub: &str) -> Result<Settings, Error> {
        check_event_hubs_connection_string(namespace_host, connection_string, hub)?;
        let mut settings =
            Settings::new(format!("{namespace_host}:{EVENT_HUBS_KAFKA_PORT}"), vec![hub.to_string()], "riposte");
        settings.security = Security::SaslSsl {
            username: EVENT_HUBS_USERNAME.to_string(),
            password: connection_string.to_string(),
            ca_file: None,
        };
        for (key, value) in [
            ("socket.keepalive.enable", "true"),
            ("metadata.max.age.ms", "180000"),
            ("connections.max.idle.ms", "180000"),
        ] {
            settings.librdkafka.insert(key.to_string(), value.to_string());
        }
        Ok(settings)
    }
}

// The password is a secret (for Event Hubs, a namespace key): never in logs.
impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Security::Plaintext => f.write_str("Plaintext"),
            Security::SaslSsl { username, ca_file, .. } => f
                .debug_struct("SaslSsl")
                .field("username", username)
                .field("password", &"<redacted>")
                .field("ca_file", ca_file)
                .finish(),
        }
    }
}

/// The librdkafka properties of a consumer with these settings, checked; the Mozilla roots
/// are given as `ssl.ca.pem` when no CA file is.
pub(crate) fn client_properties(settings: &Settings) -> Result<BTreeMap<String, String>, Error> {
    let invalid = |reason: &str| Err(Error::InvalidSettings(reason.to_string()));
    if settings.brokers.trim().is_empty() {
        return invalid("no brokers");
    }
    if settings.topics.is_empty() || settings.topics.iter().any(|topic| topic.trim().is_empty()) {
        return invalid("no topics, or an empty topic name");
    }
    if settings.group_id.trim().is_empty() {
        return invalid("no group id");
    }
    if settings.max_batch_records == 0 {
        return invalid("max_batch_records must be at least 1");
    }
    if settings.refusal_backoff.is_zero() || settings.refusal_backoff > settings.max_refusal_backoff {
        return invalid("refusal_backoff must be above zero and at most max_refusal_backoff");
    }
    if settings.session_timeout > settings.max_poll_interval {
        return invalid("session_timeout must not exceed max_poll_interval");
    }
    let millis = |name: &str, duration: Duration, minimum: u128| -> Result<String, Error> {
        let ms = duration.as_millis();
        if ms < minimum || ms > i32::MAX as u128 {
            return Err(Error::InvalidSettings(format!(
                "{name} must be between {minimum} ms and {} ms, not {ms} ms",
                i32::MAX
            )));
        }
        Ok(ms.to_string())
    };

    let mut properties = BTreeMap::new();
    let mut set = |key: &str, value: String| {
        properties.insert(key.to_string(), value);
    };
    set("bootstrap.servers", settings.brokers.clone());
    set("group.id", settings.group_id.clone());
    set("client.id", settings.client_id.clone());
    // At least once: offsets are committed by the consumer loop, after the sink accepted.
    set("enable.auto.commit", "false".to_string());
    set("enable.auto.offset.store", "false".to_string());
    set(
        "auto.offset.reset",
        match settings.start_from {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
        .to_string(),
    );
    set("session.timeout.ms", millis("session_timeout", settings.session_timeout, 1)?);
    set("max.poll.interval.ms", millis("max_poll_interval", settings.max_poll_interval, 1)?);
    set("statistics.interval.ms", millis("statistics_interval", settings.statistics_interval, 1)?);
    match &settings.security {
        Security::Plaintext => set("security.protocol", "plaintext".to_string()),
        Security::SaslSsl { username, password, ca_file } => {
            if username.is_empty() || password.is_empty() {
                return invalid("SASL needs a username and a password");
            }
            set("security.protocol", "sasl_ssl".to_string());
            set("sasl.mechanisms", "PLAIN".to_string());
            set("sasl.username", username.clone());
            set("sasl.password", password.clone());
            match ca_file {
                Some(path) => set("ssl.ca.location", path.display().to_string()),
                None => set("ssl.ca.pem", crate::roots::mozilla_pem()),
            }
        }
    }
    for (key, value) in &settings.librdkafka {
        set(key, value.clone());
    }
    Ok(properties)
}

/// Checks the parts of an Event Hubs connection string that decide whether it can work
/// against `namespace_host` and `hub` (the key itself only the service can check).
fn check_event_hubs_connection_string(namespace_host: &str, connection_string: &str, hub: &str) -> Result<(), Error> {
    let refuse = |reason: String| Err(Error::ConnectionString(reason));
    if namespace_host.is_empty() || namespace_host.contains([':', '/']) {
        return refuse(format!(
            "the namespace host must be a bare host name such as <namespace>.servicebus.windows.net, not {namespace_host:?}"
        ));
    }
    if hub.is_empty() {
        return refuse("no event hub named".to_string());
    }
    let mut fields = BTreeMap::new();
    for part in connection_string.split(';').map(str::trim).filter(|part| !part.is_empty()) {
        let Some((key, value)) = part.split_once('=') else {
            return refuse(format!("{:?} is not key=value", part.split('=').next().unwrap_or(part)));
        };
        fields.insert(key.trim().to_ascii_lowercase(), value.trim());
    }
    let Some(endpoint) = fields.get("endpoint") else {
        return refuse("no Endpoint=sb://<namespace host>/".to_string());
    };
    let Some(endpoint_host) = endpoint.strip_prefix("sb://").map(|rest| rest.trim_end_matches('/')) else {
        return refuse(format!("the endpoint {endpoint:?} is not sb://<namespace host>/"));
    };
    if !endpoint_host.eq_ignore_ascii_case(namespace_host) {
        return refuse(format!("its endpoint is {endpoint_host}, not the namespace {namespace_host}"));
    }
    let has_key = fields.contains_key("sharedaccesskeyname") && fields.contains_key("sharedaccesskey");
    if !has_key && !fields.contains_key("sharedaccesssignature") {
        return refuse("no SharedAccessKeyName and SharedAccessKey (nor SharedAccessSignature)".to_string());
    }
    if let Some(entity) = fields.get("entitypath")
        && *entity != hub
    {
        return refuse(format!("it is scoped to the event hub {entity}, not {hub}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMESPACE: &str = "riposte-audit.servicebus.windows.net";
    const CONNECTION: &str = "Endpoint=sb://riposte-audit.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=c2VjcmV0LWtleQ==";

    #[test]
    fn event_hubs_settings_are_the_documented_ones() {
        let settings = Settings::event_hubs(NAMESPACE, CONNECTION, "insights-logs-kube-audit").unwrap();
        let properties = client_properties(&settings).unwrap();
        assert_eq!(properties["bootstrap.servers"], "riposte-audit.servicebus.windows.net:9093");
        assert_eq!(properties["security.protocol"], "sasl_ssl");
        assert_eq!(properties["sasl.mechanisms"], "PLAIN");
        assert_eq!(properties["sasl.username"], "$ConnectionString");
        assert_eq!(properties["sasl.password"], CONNECTION);
        assert_eq!(properties["socket.keepalive.enable"], "true");
        assert_eq!(properties["metadata.max.age.ms"], "180000");
        assert_eq!(properties["session.timeout.ms"], "30000");
        assert!(properties["ssl.ca.pem"].starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert_eq!(settings.topics, ["insights-logs-kube-audit"]);
    }

    #[test]
    fn offsets_are_never_committed_or_stored_by_librdkafka_itself() {
        let properties = client_properties(&Settings::new("127.0.0.1:9092", vec!["audit".into()], "g")).unwrap();
        assert_eq!(properties["enable.auto.commit"], "false");
        assert_eq!(properties["enable.auto.offset.store"], "false");
        assert_eq!(properties["security.protocol"], "plaintext");
        assert!(!properties.contains_key("sasl.password"));
    }

    #[test]
    fn a_ca_file_replaces_the_built_in_roots_and_overrides_come_last() {
        let mut settings = Settings::event_hubs(NAMESPACE, CONNECTION, "audit").unwrap();
        settings.security = Security::SaslSsl {
            username: "$ConnectionString".into(),
            password: CONNECTION.into(),
            ca_file: Some("/etc/riposte/ca.pem".into()),
        };
        settings.librdkafka.insert("session.timeout.ms".into(), "45000".into());
        let properties = client_properties(&settings).unwrap();
        assert_eq!(properties["ssl.ca.location"], "/etc/riposte/ca.pem");
        assert!(!properties.contains_key("ssl.ca.pem"));
        assert_eq!(properties["session.timeout.ms"], "45000");
    }

    #[test]
    fn connection_strings_that_cannot_work_are_refused_with_the_reason() {
        let cases = [
            (
                NAMESPACE,
                "Endpoint=sb://other.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v",
                "audit",
                "not the namespace",
            ),
            (NAMESPACE, "SharedAccessKeyName=k;SharedAccessKey=v", "audit", "no Endpoint"),
            (
                NAMESPACE,
                "Endpoint=https://riposte-audit.servicebus.windows.net/;SharedAccessKeyName=k;SharedAccessKey=v",
                "audit",
                "is not sb://",
            ),
            (
                NAMESPACE,
                "Endpoint=sb://riposte-audit.servicebus.windows.net/;SharedAccessKeyName=k",
                "audit",
                "no SharedAccessKeyName",
            ),
            (NAMESPACE, &format!("{CONNECTION};EntityPath=other"), "audit", "scoped to the event hub other"),
            (NAMESPACE, "Endpoint", "audit", "is not key=value"),
            ("riposte-audit.servicebus.windows.net:9093", CONNECTION, "audit", "bare host name"),
            (NAMESPACE, CONNECTION, "", "no event hub"),
        ];
        for (namespace, connection, hub, expected) in cases {
            let error = Settings::event_hubs(namespace, connection, hub).unwrap_err();
            assert!(error.to_string().contains(expected), "{connection:?}: {error}");
            assert_eq!(error.kind(), crate::ErrorKind::Configuration);
        }
        assert!(Settings::event_hubs(NAMESPACE, &format!("{CONNECTION};EntityPath=audit"), "audit").is_ok());
    }

    #[test]
    fn inconsistent_settings_are_refused() {
        let valid = Settings::new("127.0.0.1:9092", vec!["audit".into()], "g");
        type Change = fn(&mut Settings);
        let cases: [(&str, Change); 6] = [
            ("no brokers", |s| s.brokers.clear()),
            ("no topics", |s| s.topics.clear()),
            ("no group id", |s| s.group_id = " ".into()),
            ("max_batch_records", |s| s.max_batch_records = 0),
            ("session_timeout must not exceed", |s| s.session_timeout = Duration::from_secs(600)),
            ("refusal_backoff", |s| s.refusal_backoff = Duration::from_secs(60)),
        ];
        for (expected, change) in cases {
            let mut settings = valid.clone();
            change(&mut settings);
            let error = client_properties(&settings).unwrap_err();
            assert!(error.to_string().contains(expected), "{error}");
        }
    }

    #[test]
    fn the_password_is_not_in_debug_output() {
        let settings = Settings::event_hubs(NAMESPACE, CONNECTION, "audit").unwrap();
        let debug = format!("{settings:?}");
        assert!(!debug.contains("c2VjcmV0LWtleQ"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }
}
