//! Falco alerts in: one alert as Falco's `http_output` POSTs it (`json_output: true`, one
//! alert per request body), as Falcosidekick's webhook output posts it (the same payload
//! plus `uuid`, maybe `hostname`: its `types.FalcoPayload`), or JSON lines of alerts from a
//! file.
//!
//! Falco decides what is suspicious; Riposte keeps that decision. An alert's rule name is
//! looked up in [`CATALOG`] for the Riposte alert type it means, and an alert whose rule
//! has no entry is kept (`catalog_id: None`) for the caller to raise as a generic sensor
//! alert under Falco's rule name. The process, container and action come from the
//! alert's `output_fields`, as far as the rule's output named them: stock rules name the
//! process, its parent and ancestors, the user, the container and pod, and the file or
//! socket, but neither process ids nor open flags, so those are often unknown.
//!
//! In `output_fields`, JSON `null` and Falco's `<NA>` mean unknown.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::Error;
use crate::audit::Timestamp;
use crate::runtime::event::{Action, Container, Endpoint, Process, ProcessEvent, Sensor};

/// Falco's rule names (stable, incubating and sandbox rule sets of falcosecurity/rules, and
/// one former name) onto Riposte's `K8S.NODE_*` alert types, where the rule detects what
/// the alert type means. A rule that is only near (an audit of a tool, a broader or a
/// narrower behaviour) has no entry.
///
/// | Falco rule | rule set | Riposte alert type |
/// |---|---|---|
/// | Read sensitive file untrusted | stable | `K8S.NODE_SuspectPasswordFileAccess` |
/// | Read sensitive file trusted after startup | stable | `K8S.NODE_SuspectPasswordFileAccess` |
/// | Contact K8S API Server From Container | stable | `K8S.NODE_KubernetesAPI` |
/// | Netcat Remote Code Execution in Container | stable | `K8S.NODE_ReverseShell` |
/// | Redirect STDOUT/STDIN to Network Connection in Container | stable | `K8S.NODE_ReverseShell` |
/// | Clear Log Activities | stable | `K8S.NODE_SystemLogRemoval` |
/// | Debugfs Launched in Privileged Container | stable | `K8S.NODE_PrivilegedExecutionInContainer` |
/// | Detect release_agent File Container Escapes | stable | `K8S.NODE_ExploitAttempt` |
/// | Drop and execute new binary in container | stable | `K8S.NODE_DownloadAndRunCombo` |
/// | Change namespace privileges via unshare | incubating | `K8S.NODE_NamespaceCreation` |
/// | Launch Privileged Container | incubating | `K8S.NODE_PrivilegedContainerArtifacts` |
/// | Contact EC2 Instance Metadata Service From Container | incubating | `K8S.NODE_ImdsCall` |
/// | Contact cloud metadata service from container | incubating | `K8S.NODE_ImdsCall` |
/// | Launch Suspicious Network Tool in Container | incubating | `K8S.NODE_KnownLinuxAttackTool` |
/// | Launch Suspicious Network Tool on Host | incubating | `K8S.NODE_KnownLinuxAttackTool` |
/// | Delete or rename shell history | incubating | `K8S.NODE_HistoryFileCleared` |
/// | Mount Launched in Privileged Container | incubating | `K8S.NODE_PrivilegedExecutionInContainer` |
/// | Launch Ingress Remote File Copy Tools in Container | incubating | `K8S.NODE_SuspectDownloadArtifacts` |
/// | Adding ssh keys to authorized_keys | incubating | `K8S.NODE_SshKeyAccess` |
/// | Potential Local Privilege Escalation via Environment Variables Misuse | incubating | `K8S.NODE_ExploitAttempt` |
/// | Backdoored library loaded into SSHD (CVE-2024-3094) | incubating | `K8S.NODE_LinuxBackdoorArtifact` |
/// | Detect outbound connections to common miner pool ports | sandbox | `K8S.NODE_DigitalCurrencyMining` |
/// | Detect crypto miners using the Stratum protocol | sandbox | `K8S.NODE_DigitalCurrencyMining` |
/// | Known Cryptominer Process Executed | sandbox | `K8S.NODE_CryptoCoinMinerArtifacts` |
/// | Sudo Potential Privilege Escalation | sandbox | `K8S.NODE_ExploitAttempt` |
/// | Polkit Local Privilege Escalation Vulnerability (CVE-2021-4034) | sandbox | `K8S.NODE_ExploitAttempt` |
/// | Java Process Class File Download | sandbox | `K8S.NODE_ExploitAttempt` |
/// | Modify Container Entrypoint | sandbox | `K8S.NODE_ExploitAttempt` |
/// | Netcat/Socat Remote Code Execution on Host | sandbox | `K8S.NODE_ReverseShell` |
/// | Reverse Shell from Web Server | sandbox | `K8S.NODE_ReverseShell` |
/// | Web Server Spawned Shell | sandbox | `K8S.NODE_Webshell` |
/// | Web Server Spawned Suspicious Child Process | sandbox | `K8S.NODE_Webshell` |
/// | Delete Bash History | former name (before 2023) | `K8S.NODE_HistoryFileCleared` |
///
/// Left without an entry on purpose, among others: "Change thread namespace" (setns joins
/// a namespace, NamespaceCreation is about creating one), "Basic Interactive
/// Reconnaissance" (one command, ReconnaissanceArtifactsBurst is a burst), "Read ssh
/// information" (any file below `.ssh`, SshKeyAccess is about `authorized_keys`), "User
/// mgmt binaries" (any user tool, SuspectUserAddition is `useradd`), "Search Private Keys
/// or Passwords" and "Find AWS Credentials" (grep and find are no credential access
/// tools), "Kubernetes Client Tool Launched in Container" (a tool started, not a request
/// sent).
pub const CATALOG: &[(&str, &str)] = &[
    ("Read sensitive file untrusted", "K8S.NODE_SuspectPasswordFileAccess"),
    ("Read sensitive file trusted after startup", "K8S.NODE_SuspectPasswordFileAccess"),
    ("Contact K8S API Server From Container", "K8S.NODE_KubernetesAPI"),
    ("Netcat Remote Code Execution in Container", "K8S.NODE_ReverseShell"),
    ("Redirect STDOUT/STDIN to Network Connection in Container", "K8S.NODE_ReverseShell"),
    ("Clear Log Activities", "K8S.NODE_SystemLogRemoval"),
    ("Debugfs Launched in Privileged Container", "K8S.NODE_PrivilegedExecutionInContainer"),
    ("Detect release_agent File Container Escapes", "K8S.NODE_ExploitAttempt"),
    ("Drop and execute new binary in container", "K8S.NODE_DownloadAndRunCombo"),
    ("Change namespace privileges via unshare", "K8S.NODE_NamespaceCreation"),
    ("Launch Privileged Container", "K8S.NODE_PrivilegedContainerArtifacts"),
    ("Contact EC2 Instance Metadata Service From Container", "K8S.NODE_ImdsCall"),
    ("Contact cloud metadata service from container", "K8S.NODE_ImdsCall"),
    ("Launch Suspicious Network Tool in Container", "K8S.NODE_KnownLinuxAttackTool"),
    ("Launch Suspicious Network Tool on Host", "K8S.NODE_KnownLinuxAttackTool"),
    ("Delete or rename shell history", "K8S.NODE_HistoryFileCleared"),
    ("Mount Launched in Privileged Container", "K8S.NODE_PrivilegedExecutionInContainer"),
    ("Launch Ingress Remote File Copy Tools in Container", "K8S.NODE_SuspectDownloadArtifacts"),
    ("Adding ssh keys to authorized_keys", "K8S.NODE_SshKeyAccess"),
    ("Potential Local Privilege Escalation via Environment Variables Misuse", "K8S.NODE_ExploitAttempt"),
    ("Backdoored library loaded into SSHD (CVE-2024-3094)", "K8S.NODE_LinuxBackdoorArtifact"),
    ("Detect outbound connections to common miner pool ports", "K8S.NODE_DigitalCurrencyMining"),
    ("Detect crypto miners using the Stratum protocol", "K8S.NODE_DigitalCurrencyMining"),
    ("Known Cryptominer Process Executed", "K8S.NODE_CryptoCoinMinerArtifacts"),
    ("Sudo Potential Privilege Escalation", "K8S.NODE_ExploitAttempt"),
    ("Polkit Local Privilege Escalation Vulnerability (CVE-2021-4034)", "K8S.NODE_ExploitAttempt"),
    ("Java Process Class File Download", "K8S.NODE_ExploitAttempt"),
    ("Modify Container Entrypoint", "K8S.NODE_ExploitAttempt"),
    ("Netcat/Socat Remote Code Execution on Host", "K8S.NODE_ReverseShell"),
    ("Reverse Shell from Web Server", "K8S.NODE_ReverseShell"),
    ("Web Server Spawned Shell", "K8S.NODE_Webshell"),
    ("Web Server Spawned Suspicious Child Process", "K8S.NODE_Webshell"),
    ("Delete Bash History", "K8S.NODE_HistoryFileCleared"),
];

/// The Riposte alert type a Falco rule detects, per [`CATALOG`]. Exact match: Falco's rule
/// names are identifiers, and a locally edited rule that kept the name keeps its meaning.
pub fn catalog_id(rule: &str) -> Option<&'static str> {
    CATALOG.iter().find(|(name, _)| *name == rule).map(|&(_, id)| id)
}

/// One Falco alert.
#[derive(Clone, Debug, PartialEq)]
pub struct FalcoAlert {
    /// Falco's rule name.
    pub rule: String,
    pub priority: Priority,
    pub time: Timestamp,
    pub tags: Vec<String>,
    /// Falco's rendered output line.
    pub output: String,
    /// The event source: `syscall`, or a plugin's (`k8s_audit`, `aws_cloudtrail`, ...);
    /// `syscall` when the payload names none, as Falco's did before it had plugins.
    pub source: String,
    /// The host Falco ran on (in Kubernetes, Falco's chart sets it to the node's name).
    pub hostname: Option<String>,
    /// Falcosidekick's id of the alert.
    pub uuid: Option<String>,
    /// The Riposte alert type of the rule, per [`CATALOG`].
    pub catalog_id: Option<&'static str>,
    /// What the output fields tell of the process, its container and what it did; `None`
    /// when they name no process (plugin sources, custom rules without `proc.*` fields).
    pub subject: Option<Subject>,
}

/// The process side of an alert. The action is separate from the rest because a rule's
/// output may name the process but not enough of the syscall to tell the action (the stock
/// reverse shell rule names the socket but not which standard descriptor it replaced).
#[derive(Clone, Debug, PartialEq)]
pub struct Subject {
    pub container: Option<Container>,
    /// `pid` 0 when the output fields did not name `proc.pid` (stock rules do not).
    pub process: Process,
    pub parent: Option<Process>,
    /// `proc.aname[2]`, `proc.aname[3]`, ...: nearest first, up to the first unknown.
    pub ancestors: Vec<String>,
    /// `evt.type`.
    pub syscall: Option<String>,
    pub action: Option<Action>,
}

impl FalcoAlert {
    /// The normalized event, when the output fields name a process.
    pub fn event(&self) -> Option<ProcessEvent> {
        let subject = self.subject.as_ref()?;
        Some(ProcessEvent {
            time: self.time,
            sensor: Sensor::Falco,
            node: self.hostname.clone(),
            container: subject.container.clone(),
            process: subject.process.clone(),
            parent: subject.parent.clone(),
            ancestors: subject.ancestors.clone(),
            // The output fields named the process but not what it did: the syscall is
            // all that is known, and the process is still worth the rules' reading.
            action: subject.action.clone().unwrap_or_else(|| Action::Other {
                event: subject.syscall.clone().unwrap_or_else(|| self.source.clone()),
            }),
        })
    }
}

/// Falco's priorities, most urgent first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    Emergency,
    Alert,
    Critical,
    Error,
    Warning,
    Notice,
    Informational,
    Debug,
}

/// Riposte's severities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    High,
    Medium,
    Low,
    Informational,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::High => "High",
            Severity::Medium => "Medium",
            Severity::Low => "Low",
            Severity::Informational => "Informational",
        }
    }
}

impl Priority {
    /// Case-insensitive, and `info` for Informational, as Falco and Falcosidekick accept.
    pub fn parse(text: &str) -> Option<Priority> {
        const NAMES: [(&str, Priority); 9] = [
            ("emergency", Priority::Emergency),
            ("alert", Priority::Alert),
            ("critical", Priority::Critical),
            ("error", Priority::Error),
            ("warning", Priority::Warning),
            ("notice", Priority::Notice),
            ("informational", Priority::Informational),
            ("info", Priority::Informational),
            ("debug", Priority::Debug),
        ];
        NAMES.iter().find(|(name, _)| name.eq_ignore_ascii_case(text)).map(|&(_, p)| p)
    }

    /// The severity of a generic sensor alert raised for a rule without a catalog entry.
    pub fn severity(self) -> Severity {
        match self {
            Priority::Emergency | Priority::Alert | Priority::Critical | Priority::Error => Severity::High,
            Priority::Warning => Severity::Medium,
            Priority::Notice => Severity::Low,
            Priority::Informational | Priority::Debug => Severity::Informational,
        }
    }
}

/// The top level as it should be.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    tags: Option<Vec<String>>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
    #[serde(borrow, default)]
    output_fields: Option<HashMap<Key<'a>, FieldValue<'a>>>,
}

/// The top level with each field kept raw, read only when [`Wire`] failed, to name the
/// field that is wrong.
#[derive(Deserialize)]
struct RawWire<'a> {
    #[serde(borrow, default)]
    rule: Option<&'a RawValue>,
    #[serde(borrow, default)]
    priority: Option<&'a RawValue>,
    #[serde(borrow, default)]
    time: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tags: Option<&'a RawValue>,
    #[serde(borrow, default)]
    hostname: Option<&'a RawValue>,
    #[serde(borrow, default)]
    uuid: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output_fields: Option<&'a RawValue>,
}

/// Parses one alert: a request body of Falco's `http_output` or of Falcosidekick's webhook,
/// or one line of a file.
pub fn parse_alert(json: &[u8]) -> Result<FalcoAlert, Error> {
    let wire: Wire = match serde_json::from_slice(json) {
        Ok(wire) => wire,
        Err(error) if error.is_syntax() || error.is_eof() => return Err(Error::MalformedFalcoAlert(error)),
        Err(error) => return Err(wrong_field(json).unwrap_or(Error::MalformedFalcoAlert(error))),
    };
    let missing =
        |field: &str, expected| Error::InvalidFalcoField { field: field.to_owned(), expected, seen: "nothing".into() };
    let rule = wire.rule.ok_or_else(|| missing("rule", "a string"))?;
    let priority_text = wire.priority.ok_or_else(|| missing("priority", "a string"))?;
    let priority = Priority::parse(&priority_text).ok_or_else(|| Error::InvalidFalcoField {
        field: "priority".into(),
        expected: "one of Emergency, Alert, Critical, Error, Warning, Notice, Informational, Debug",
        seen: format!("{priority_text:?}"),
    })?;
    let time_text = wire.time.ok_or_else(|| missing("time", "an RFC 3339 time"))?;
    let time = time_text.parse().map_err(|_| Error::InvalidFalcoField {
        field: "time".into(),
        expected: "an RFC 3339 time",
        seen: format!("{time_text:?}"),
    })?;
    let fields = Fields(wire.output_fields.unwrap_or_default());
    Ok(FalcoAlert {
        catalog_id: catalog_id(&rule),
        rule,
        priority,
        time,
        tags: wire.tags.unwrap_or_default(),
        output: wire.output.unwrap_or_default(),
        source: wire.source.unwrap_or_else(|| "syscall".to_owned()),
        hostname: wire.hostname,
        uuid: wire.uuid,
        subject: subject(&fields)?,
    })
}

/// The first top-level field of a JSON object that is not what [`Wire`] expects.
fn wrong_field(json: &[u8]) -> Option<Error> {
    fn check<'a, T: Deserialize<'a>>(raw: Option<&'a RawValue>, field: &str, expected: &'static str) -> Option<Error> {
        let raw = raw?;
        serde_json::from_str::<Option<T>>(raw.get()).err().map(|_| invalid(field, expected, raw))
    }
    // serde reads a struct from a list too: only an object has fields to name.
    if json.trim_ascii_start().first() != Some(&b'{') {
        return None;
    }
    let raw: RawWire = serde_json::from_slice(json).ok()?;
    check::<String>(raw.rule, "rule", "a string")
        .or_else(|| check::<String>(raw.priority, "priority", "a string"))
        .or_else(|| check::<String>(raw.time, "time", "an RFC 3339 time"))
        .or_else(|| check::<String>(raw.output, "output", "a string"))
        .or_else(|| check::<String>(raw.source, "source", "a string"))
        .or_else(|| check::<Vec<String>>(raw.tags, "tags", "a list of strings"))
        .or_else(|| check::<String>(raw.hostname, "hostname", "a string"))
        .or_else(|| check::<String>(raw.uuid, "uuid", "a string"))
        .or_else(|| {
            check::<HashMap<Key, FieldValue>>(raw.output_fields, "output_fields", "an object of field names to values")
        })
}

/// Parses JSON lines of alerts, one result per non-blank line: a bad line is an
/// [`Error::SensorLine`] with its (1-based) number, and the lines after it are still read.
pub fn parse_lines(input: &[u8]) -> impl Iterator<Item = Result<FalcoAlert, Error>> + '_ {
    super::follow::lines(input)
        .map(|(line, text)| parse_alert(text).map_err(|source| Error::SensorLine { line, source: Box::new(source) }))
}

fn invalid(field: &str, expected: &'static str, raw: &RawValue) -> Error {
    Error::InvalidFalcoField { field: field.to_owned(), expected, seen: super::follow::shown(raw.get()) }
}

/// `output_fields`, values kept raw until a field is asked for.
struct Fields<'a>(HashMap<Key<'a>, FieldValue<'a>>);

/// A field name, borrowed from the input unless it holds an escape (serde borrows a `Cow`
/// only when told to, and a map's key cannot be told).
#[derive(Deserialize, PartialEq, Eq, Hash)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

impl std::borrow::Borrow<str> for Key<'_> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

/// An output field's value, read in the one pass over the alert: its strings borrowed
/// from the input when they hold no escape.
enum FieldValue<'a> {
    Null,
    Text(Cow<'a, str>),
    Number(serde_json::Number),
    Bool(bool),
    /// A list or an object, which no field Riposte reads is.
    Nested,
}

impl<'de: 'a, 'a> Deserialize<'de> for FieldValue<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<FieldValue<'a>, D::Error> {
        struct ValueVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for ValueVisitor<'a> {
            type Value = FieldValue<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a field value")
            }
            fn visit_unit<E>(self) -> Result<FieldValue<'a>, E> {
                Ok(FieldValue::Null)
            }
            fn visit_bool<E>(self, b: bool) -> Result<FieldValue<'a>, E> {
                Ok(FieldValue::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<FieldValue<'a>, E> {
                Ok(FieldValue::Number(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<FieldValue<'a>, E> {
                Ok(FieldValue::Number(n.into()))
            }
            fn visit_f64<E>(self, n: f64) -> Result<FieldValue<'a>, E> {
                Ok(serde_json::Number::from_f64(n).map_or(FieldValue::Null, FieldValue::Number))
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<FieldValue<'a>, E> {
                Ok(FieldValue::Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<FieldValue<'a>, E> {
                Ok(FieldValue::Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<FieldValue<'a>, E> {
                Ok(FieldValue::Text(Cow::Owned(text)))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<FieldValue<'a>, A::Error> {
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(FieldValue::Nested)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<FieldValue<'a>, A::Error> {
                while map.next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?.is_some() {}
                Ok(FieldValue::Nested)
            }
        }
        deserializer.deserialize_any(ValueVisitor(std::marker::PhantomData))
    }
}

impl Fields<'_> {
    /// A field as text: `null`, `<NA>` and the empty string are unknown; a number or a
    /// boolean is its JSON text.
    fn text(&self, key: &str) -> Result<Option<String>, Error> {
        let text = match self.0.get(key) {
            None | Some(FieldValue::Null) => return Ok(None),
            Some(FieldValue::Text(text)) => text.to_string(),
            Some(FieldValue::Number(n)) => n.to_string(),
            Some(FieldValue::Bool(b)) => b.to_string(),
            Some(FieldValue::Nested) => {
                return Err(Error::InvalidFalcoField {
                    field: format!("output_fields.{key}"),
                    expected: "a string or a number",
                    seen: "a list or an object".into(),
                });
            }
        };
        Ok((!text.is_empty() && text != "<NA>").then_some(text))
    }

    /// A field as an unsigned number; Falco's -1 (an unset loginuid or tty) is unknown.
    fn number<T: TryFrom<i64>>(&self, key: &str) -> Result<Option<T>, Error> {
        let Some(text) = self.text(key)? else { return Ok(None) };
        if text == "-1" {
            return Ok(None);
        }
        let n: i64 = text.parse().map_err(|_| self.invalid(key, "a number"))?;
        T::try_from(n).map(Some).map_err(|_| self.invalid(key, "a non-negative number in range"))
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>, Error> {
        match self.text(key)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(self.invalid(key, "true or false")),
        }
    }

    fn invalid(&self, key: &str, expected: &'static str) -> Error {
        let seen = match self.0.get(key) {
            Some(FieldValue::Text(text)) => super::follow::shown(&format!("{text:?}")),
            Some(FieldValue::Number(n)) => n.to_string(),
            Some(FieldValue::Bool(b)) => b.to_string(),
            Some(FieldValue::Null | FieldValue::Nested) | None => "nothing".into(),
        };
        Error::InvalidFalcoField { field: format!("output_fields.{key}"), expected, seen }
    }

    fn first_text(&self, keys: &[&str]) -> Result<Option<String>, Error> {
        for key in keys {
            if let Some(text) = self.text(key)? {
                return Ok(Some(text));
            }
        }
        Ok(None)
    }
}

fn subject(fields: &Fields) -> Result<Option<Subject>, Error> {
    let name = fields.text("proc.name")?;
    let binary = fields.text("proc.exepath")?;
    let cmdline = fields.text("proc.cmdline")?;
    if name.is_none() && binary.is_none() && cmdline.is_none() {
        return Ok(None);
    }
    let name = name
        .or_else(|| binary.as_deref().map(base_name))
        .or_else(|| cmdline.as_deref().and_then(|c| c.split(' ').next()).map(str::to_owned))
        .unwrap_or_default();
    let process = Process {
        pid: fields.number("proc.pid")?.unwrap_or(0),
        args: cmdline.as_deref().map(|c| command_args(c, &name)).unwrap_or_default(),
        binary: binary.unwrap_or_default(),
        name,
        cwd: fields.text("proc.cwd")?,
        uid: fields.number("user.uid")?,
        user: fields.text("user.name")?,
        ..Process::default()
    };
    let parent_name = fields.first_text(&["proc.pname", "proc.aname[1]"])?;
    let parent_pid: Option<u32> = fields.number("proc.ppid")?;
    let parent = if parent_name.is_some() || parent_pid.is_some() {
        let binary = fields.text("proc.pexepath")?.unwrap_or_default();
        let name = parent_name.unwrap_or_else(|| base_name(&binary));
        let args = fields.text("proc.pcmdline")?.map(|c| command_args(&c, &name)).unwrap_or_default();
        Some(Process { pid: parent_pid.unwrap_or(0), binary, name, args, ..Process::default() })
    } else {
        None
    };
    let mut ancestors = Vec::new();
    while let Some(name) = fields.text(&format!("proc.aname[{}]", ancestors.len() + 2))? {
        ancestors.push(name);
    }
    let syscall = fields.text("evt.type")?;
    let action = match syscall.as_deref() {
        Some(syscall) => action(syscall, fields)?,
        None => None,
    };
    Ok(Some(Subject { container: container(fields)?, process, parent, ancestors, syscall, action }))
}

fn base_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).to_owned()
}

/// `proc.cmdline` is the name and the arguments joined by single spaces, unquoted: an
/// argument holding a space cannot be told from two, so it becomes two.
fn command_args(cmdline: &str, name: &str) -> Vec<String> {
    let rest = match cmdline.strip_prefix(name) {
        Some(rest) if rest.is_empty() || rest.starts_with(' ') => rest,
        _ => cmdline.split_once(' ').map_or("", |(_, rest)| rest),
    };
    rest.split(' ').filter(|a| !a.is_empty()).map(str::to_owned).collect()
}

fn container(fields: &Fields) -> Result<Option<Container>, Error> {
    // Falco names the node's own processes "host".
    let Some(id) = fields.text("container.id")?.filter(|id| id != "host") else { return Ok(None) };
    let image = match fields.text("container.image")? {
        Some(image) => Some(image),
        None => match (fields.text("container.image.repository")?, fields.text("container.image.tag")?) {
            (Some(repository), Some(tag)) => Some(format!("{repository}:{tag}")),
            (repository, _) => repository,
        },
    };
    Ok(Some(Container {
        id,
        name: fields.text("container.name")?,
        image,
        pod: fields.text("k8s.pod.name")?,
        namespace: fields.text("k8s.ns.name")?,
        pod_uid: fields.text("k8s.pod.uid")?,
        service_account: None,
        privileged: fields.boolean("container.privileged")?,
    }))
}

/// The action of the syscall `evt.type`, when the output fields tell enough of it. An
/// open's `write` and `truncate` come from `evt.arg.flags` or `evt.is_open_write`, and are
/// false when the rule's output names neither (the stock rules do not). Signals, ptrace and
/// namespace syscalls are not mapped: Falco renders their flags and requests in its own
/// encoding, and the stock rules' outputs do not name them.
fn action(syscall: &str, fields: &Fields) -> Result<Option<Action>, Error> {
    Ok(match syscall {
        "execve" | "execveat" => Some(Action::Exec),
        "open" | "openat" | "openat2" | "creat" | "open_by_handle_at" => {
            let Some(path) = fields.first_text(&["fd.name", "fs.path.name", "evt.arg.name"])? else { return Ok(None) };
            let flags = fields.text("evt.arg.flags")?.unwrap_or_default();
            let has = |flag: &str| flags.split('|').any(|f| f == flag);
            let write = fields.boolean("evt.is_open_write")?.unwrap_or(false)
                || has("O_WRONLY")
                || has("O_RDWR")
                || syscall == "creat";
            Some(Action::FileOpen { path, write, truncate: has("O_TRUNC") || syscall == "creat" })
        }
        "unlink" | "unlinkat" => fields
            .first_text(&["fs.path.name", "evt.arg.name", "evt.arg.path", "fd.name"])?
            .map(|path| Action::FileDelete { path }),
        "rename" | "renameat" | "renameat2" => {
            let from = fields.first_text(&["fs.path.source", "evt.arg.oldpath"])?;
            let to = fields.first_text(&["fs.path.target", "evt.arg.newpath"])?;
            from.zip(to).map(|(from, to)| Action::FileRename { from, to })
        }
        "connect" => endpoint(fields)?.map(Action::Connect),
        // The new descriptor is the call's result, or dup2/dup3's newfd argument; `fd.*`
        // describe the old one, the socket.
        "dup" | "dup2" | "dup3" => {
            let fd = match fields.number::<u32>("evt.rawres")? {
                Some(fd) => Some(fd),
                None => fields.number::<u32>("evt.arg.newfd")?,
            };
            match fd {
                Some(fd @ 0..=2) => Some(Action::SocketRedirect { fd, remote: endpoint(fields)? }),
                _ => None,
            }
        }
        "mount" => {
            let target = fields.text("evt.arg.dir")?;
            target
                .map(|target| -> Result<Action, Error> {
                    Ok(Action::Mount {
                        source: fields.text("evt.arg.dev")?.unwrap_or_default(),
                        target,
                        fs_type: fields.text("evt.arg.type")?.unwrap_or_default(),
                    })
                })
                .transpose()?
        }
        _ => None,
    })
}

/// The far end of the event's socket: the server of the connection (`fd.sip`/`fd.sport`,
/// or the right of `fd.name`'s `client->server`), which for a connect or a reverse shell's
/// socket is the remote. `fd.rport` is not used: for a loopback connection Falco takes the
/// server as local and reports the client's port there.
fn endpoint(fields: &Fields) -> Result<Option<Endpoint>, Error> {
    let kind = fields.text("fd.type")?;
    let name = fields.text("fd.name")?;
    if kind.as_deref() == Some("unix") {
        return Ok(name.map(|path| Endpoint { address: path, port: 0, protocol: "unix".into() }));
    }
    let Some(protocol) = fields.text("fd.l4proto")? else { return Ok(None) };
    let server = name.as_deref().and_then(|n| n.split_once("->")).and_then(|(_, server)| server.rsplit_once(':'));
    let address = fields.text("fd.sip")?.or_else(|| server.map(|(ip, _)| ip.trim_matches(['[', ']']).to_owned()));
    let port = match fields.number::<u16>("fd.sport")? {
        Some(port) => Some(port),
        None => server.and_then(|(_, port)| port.parse().ok()),
    };
    Ok(address.zip(port).map(|(address, port)| Endpoint { address, port, protocol }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_read_case_insensitively_and_map_onto_severities() {
        assert_eq!(Priority::parse("Warning"), Some(Priority::Warning));
        assert_eq!(Priority::parse("CRITICAL"), Some(Priority::Critical));
        assert_eq!(Priority::parse("info"), Some(Priority::Informational));
        assert_eq!(Priority::parse(""), None);
        let severities: Vec<_> = [
            Priority::Emergency,
            Priority::Alert,
            Priority::Critical,
            Priority::Error,
            Priority::Warning,
            Priority::Notice,
            Priority::Informational,
            Priority::Debug,
        ]
        .into_iter()
        .map(|p| p.severity().as_str())
        .collect();
        assert_eq!(severities, ["High", "High", "High", "High", "Medium", "Low", "Informational", "Informational"]);
    }

    #[test]
    fn rule_names_match_exactly() {
        assert_eq!(catalog_id("Clear Log Activities"), Some("K8S.NODE_SystemLogRemoval"));
        assert_eq!(catalog_id("clear log activities"), None);
        assert_eq!(catalog_id("Terminal shell in container"), None);
        let mut names: Vec<_> = CATALOG.iter().map(|(name, _)| name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len(), "a rule name appears twice");
    }

    #[test]
    fn command_lines_lose_the_program_name() {
        assert_eq!(command_args("nc -l 127.0.0.1 14444", "nc"), ["-l", "127.0.0.1", "14444"]);
        assert_eq!(command_args("whoami", "whoami"), Vec::<String>::new());
        // comm is truncated to 15 characters; the first word is the program then.
        assert_eq!(command_args("kube-controller-manager --v=2", "kube-controller"), ["--v=2"]);
    }

    fn alert(fields: &str) -> FalcoAlert {
        let body = format!(
            r#"{{"rule":"r","priority":"Notice","time":"2026-12-01T09:35:46.741582370Z","output":"o","output_fields":{fields}}}"#
        );
        parse_alert(body.as_bytes()).unwrap()
    }

    #[test]
    fn open_flags_tell_writes_and_truncations() {
        let open = alert(
            r#"{"proc.name":"bash","evt.type":"openat","fd.name":"/root/.bash_history","evt.arg.flags":"O_TRUNC|O_CREAT|O_WRONLY"}"#,
        );
        assert_eq!(
            open.subject.unwrap().action,
            Some(Action::FileOpen { path: "/root/.bash_history".into(), write: true, truncate: true })
        );
        let read =
            alert(r#"{"proc.name":"cat","evt.type":"openat","fd.name":"/etc/shadow","evt.arg.flags":"O_RDONLY"}"#);
        assert_eq!(
            read.subject.unwrap().action,
            Some(Action::FileOpen { path: "/etc/shadow".into(), write: false, truncate: false })
        );
    }

    #[test]
    fn unknown_values_and_host_processes_have_no_container() {
        let host =
            alert(r#"{"proc.name":"sshd","container.id":"host","user.uid":-1,"proc.pid":null,"proc.cwd":"<NA>"}"#);
        let subject = host.subject.unwrap();
        assert_eq!(subject.container, None);
        assert_eq!((subject.process.uid, subject.process.pid, subject.process.cwd), (None, 0, None));
        let pod = alert(
            r#"{"proc.name":"sh","proc.pid":42,"proc.ppid":"41","container.id":"03f5519566a2","container.image.repository":"nginx","container.image.tag":"1.27","k8s.pod.name":"web","k8s.ns.name":"shop"}"#,
        );
        let subject = pod.subject.unwrap();
        let container = subject.container.unwrap();
        assert_eq!(container.id, "03f5519566a2");
        assert_eq!(container.image.as_deref(), Some("nginx:1.27"));
        assert_eq!((container.pod.as_deref(), container.namespace.as_deref()), (Some("web"), Some("shop")));
        assert_eq!((subject.process.pid, subject.parent.unwrap().pid), (42, 41));
    }

    #[test]
    fn redirects_need_the_new_descriptor() {
        let fields = r#""proc.name":"bash","evt.type":"dup2","fd.type":"ipv4","fd.l4proto":"tcp","fd.name":"10.0.0.5:40000->203.0.113.7:4444""#;
        let remote = Some(Endpoint { address: "203.0.113.7".into(), port: 4444, protocol: "tcp".into() });
        let with_result = alert(&format!(r#"{{{fields},"evt.rawres":1}}"#));
        assert_eq!(with_result.subject.unwrap().action, Some(Action::SocketRedirect { fd: 1, remote: remote.clone() }));
        let with_argument = alert(&format!(r#"{{{fields},"evt.arg.newfd":0}}"#));
        assert_eq!(with_argument.subject.unwrap().action, Some(Action::SocketRedirect { fd: 0, remote }));
        assert_eq!(alert(&format!(r#"{{{fields},"evt.rawres":5}}"#)).subject.unwrap().action, None);
        assert_eq!(alert(&format!("{{{fields}}}")).subject.unwrap().action, None);
    }

    #[test]
    fn connects_name_the_server() {
        let connect = alert(
            r#"{"proc.name":"curl","evt.type":"connect","fd.type":"ipv4","fd.l4proto":"tcp","fd.name":"10.0.0.5:40000->169.254.169.254:80","fd.sip":null,"fd.rport":80}"#,
        );
        assert_eq!(
            connect.subject.unwrap().action,
            Some(Action::Connect(Endpoint { address: "169.254.169.254".into(), port: 80, protocol: "tcp".into() }))
        );
    }

    #[test]
    fn wrong_fields_are_named() {
        let error = parse_alert(br#"{"rule":"r","priority":"Loud","time":"2026-12-01T00:00:00Z"}"#).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"Falco alert field priority: expected one of Emergency, Alert, Critical, Error, Warning, Notice, Informational, Debug, saw "Loud""#
        );
        let error = parse_alert(br#"{"rule":"r","priority":"Notice","time":"now","output_fields":{}}"#).unwrap_err();
        assert!(error.to_string().contains("field time: expected an RFC 3339 time, saw \"now\""), "{error}");
        let error = parse_alert(br#"{"priority":"Notice","time":"2026-12-01T00:00:00Z"}"#).unwrap_err();
        assert_eq!(error.to_string(), "Falco alert field rule: expected a string, saw nothing");
        let error = parse_alert(
            br#"{"rule":"r","priority":"Notice","time":"2026-12-01T00:00:00Z","output_fields":{"proc.name":"x","proc.pid":"abc"}}"#,
        )
        .unwrap_err();
        assert_eq!(error.to_string(), r#"Falco alert field output_fields.proc.pid: expected a number, saw "abc""#);
        let error =
            parse_alert(br#"{"rule":"r","priority":"Notice","time":"2026-12-01T00:00:00Z","output_fields":"x"}"#)
                .unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"Falco alert field output_fields: expected an object of field names to values, saw "x""#
        );
        let error = parse_alert(
            br#"{"rule":"r","priority":"Notice","time":"2026-12-01T00:00:00Z","output_fields":{"proc.name":["x"]}}"#,
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "Falco alert field output_fields.proc.name: expected a string or a number, saw a list or an object"
        );
        assert!(matches!(parse_alert(b"[1]"), Err(Error::MalformedFalcoAlert(_))));
    }
}
