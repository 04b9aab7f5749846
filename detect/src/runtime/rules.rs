//! One rule per `source: runtime` entry of the alert catalog. Each reads one normalized
//! [`ProcessEvent`] and says what it saw as a [`Hit`]; the [`RuntimeEngine`](super::RuntimeEngine)
//! adds the stateful rules (bursts, download-then-run), the entities and the process
//! evidence, and raises one alert per (type, process).
//!
//! Most rules read a program start (`exec`): who ran what, with which arguments, under
//! which parent. The rest read what a process did: a file opened, deleted, renamed or
//! re-dated, a connection, a socket handed to a shell, a namespace created, a signal. A
//! sensor that sees only program starts (Falco's and Tetragon's exec events) still feeds
//! every exec rule; `docs/runtime-detections.md` has the table of which source sees what.

use std::net::IpAddr;

use super::config::RuntimeConfig;
use super::event::{Action, Endpoint, Process, ProcessEvent};

pub const NAMESPACE_CREATION: &str = "K8S.NODE_NamespaceCreation";
pub const HISTORY_FILE_CLEARED: &str = "K8S.NODE_HistoryFileCleared";
pub const SUSPECT_CONNECTION: &str = "K8S.NODE_SuspectConnection";
pub const TIMER_SERVICE_DISABLED: &str = "K8S.NODE_TimerServiceDisabled";
pub const COMMON_BOT: &str = "K8S.NODE_CommonBot";
pub const PRIVILEGED_EXECUTION_IN_CONTAINER: &str = "K8S.NODE_PrivilegedExecutionInContainer";
pub const PRIVILEGED_CONTAINER_ARTIFACTS: &str = "K8S.NODE_PrivilegedContainerArtifacts";
pub const SUSPECT_DOWNLOAD: &str = "K8S.NODE_SuspectDownload";
pub const SUSPECT_DOWNLOAD_ARTIFACTS: &str = "K8S.NODE_SuspectDownloadArtifacts";
pub const SUSPECT_NOHUP: &str = "K8S.NODE_SuspectNohup";
pub const SUSPECT_USER_ADDITION: &str = "K8S.NODE_SuspectUserAddition";
pub const DIGITAL_CURRENCY_MINING: &str = "K8S.NODE_DigitalCurrencyMining";
pub const IMAGE_BUILD_ON_NODE: &str = "K8S.NODE_ImageBuildOnNode";
pub const KNOWN_LINUX_DDOS_TOOLKIT: &str = "K8S.NODE_KnownLinuxDDoSToolkit";
pub const EICAR: &str = "K8S.NODE_EICAR";
pub const KNOWN_LINUX_ATTACK_TOOL: &str = "K8S.NODE_KnownLinuxAttackTool";
pub const LINUX_BACKDOOR_ARTIFACT: &str = "K8S.NODE_LinuxBackdoorArtifact";
pub const EXPLOIT_ATTEMPT: &str = "K8S.NODE_ExploitAttempt";
pub const KNOWN_LINUX_CREDENTIAL_ACCESS_TOOL: &str = "K8S.NODE_KnownLinuxCredentialAccessTool";
pub const CRYPTO_COIN_MINER_DOWNLOAD: &str = "K8S.NODE_CryptoCoinMinerDownload";
pub const SYSTEM_LOG_REMOVAL: &str = "K8S.NODE_SystemLogRemoval";
pub const SUSPECT_PASSWORD_CHANGE: &str = "K8S.NODE_SuspectPasswordChange";
pub const SUSPECT_PORT_FORWARDING: &str = "K8S.NODE_SuspectPortForwarding";
pub const REVERSE_SHELL: &str = "K8S.NODE_ReverseShell";
pub const CRYPTO_COIN_MINER_ARTIFACTS: &str = "K8S.NODE_CryptoCoinMinerArtifacts";
pub const SSH_KEY_ACCESS: &str = "K8S.NODE_SshKeyAccess";
pub const SUSPECT_PROCESS_TERMINATION: &str = "K8S.NODE_SuspectProcessTermination";
pub const CONTAINER_SSH: &str = "K8S.NODE_ContainerSSH";
pub const TIMESTAMP_TAMPERING: &str = "K8S.NODE_TimestampTampering";
pub const KUBERNETES_API: &str = "K8S.NODE_KubernetesAPI";
pub const KUBERNETES_DASHBOARD: &str = "K8S.NODE_KubernetesDashboard";
pub const CRYPTO_COIN_MINER_EXECUTION: &str = "K8S.NODE_CryptoCoinMinerExecution";
pub const SUSPECT_PASSWORD_FILE_ACCESS: &str = "K8S.NODE_SuspectPasswordFileAccess";
pub const WEBSHELL: &str = "K8S.NODE_Webshell";
pub const RECONNAISSANCE_ARTIFACTS_BURST: &str = "K8S.NODE_ReconnaissanceArtifactsBurst";
pub const DOWNLOAD_AND_RUN_COMBO: &str = "K8S.NODE_DownloadAndRunCombo";
pub const KUBE_CONFIG_ACCESS: &str = "K8S.NODE_KubeConfigAccess";
pub const IMDS_CALL: &str = "K8S.NODE_ImdsCall";
pub const MITRE_CALDERA_TOOLS: &str = "K8S.NODE_MitreCalderaTools";

/// Every alert type the runtime rules raise, in catalog order.
pub const ALERT_TYPES: [&str; 39] = [
    NAMESPACE_CREATION,
    HISTORY_FILE_CLEARED,
    SUSPECT_CONNECTION,
    TIMER_SERVICE_DISABLED,
    COMMON_BOT,
    PRIVILEGED_EXECUTION_IN_CONTAINER,
    PRIVILEGED_CONTAINER_ARTIFACTS,
    SUSPECT_DOWNLOAD,
    SUSPECT_DOWNLOAD_ARTIFACTS,
    SUSPECT_NOHUP,
    SUSPECT_USER_ADDITION,
    DIGITAL_CURRENCY_MINING,
    IMAGE_BUILD_ON_NODE,
    KNOWN_LINUX_DDOS_TOOLKIT,
    EICAR,
    KNOWN_LINUX_ATTACK_TOOL,
    LINUX_BACKDOOR_ARTIFACT,
    EXPLOIT_ATTEMPT,
    KNOWN_LINUX_CREDENTIAL_ACCESS_TOOL,
    CRYPTO_COIN_MINER_DOWNLOAD,
    SYSTEM_LOG_REMOVAL,
    SUSPECT_PASSWORD_CHANGE,
    SUSPECT_PORT_FORWARDING,
    REVERSE_SHELL,
    CRYPTO_COIN_MINER_ARTIFACTS,
    SSH_KEY_ACCESS,
    SUSPECT_PROCESS_TERMINATION,
    CONTAINER_SSH,
    TIMESTAMP_TAMPERING,
    KUBERNETES_API,
    KUBERNETES_DASHBOARD,
    CRYPTO_COIN_MINER_EXECUTION,
    SUSPECT_PASSWORD_FILE_ACCESS,
    WEBSHELL,
    RECONNAISSANCE_ARTIFACTS_BURST,
    DOWNLOAD_AND_RUN_COMBO,
    KUBE_CONFIG_ACCESS,
    IMDS_CALL,
    MITRE_CALDERA_TOOLS,
];

/// Microsoft's test trigger: a copy of `echo` under this name, run with the phrase below.
const EICAR_PROGRAM: &str = "asc_alerttest_662jfi039n";
const EICAR_PHRASE: &str = "testing eicar pipe";
/// The namespace flags of clone/unshare (CLONE_NEWNS ... CLONE_NEWTIME).
const CLONE_NEW_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000 | 0x80;
/// Signals that stop or end a process.
const TERMINATING_SIGNALS: [u32; 6] = [1, 2, 3, 9, 15, 19];

/// What a rule saw in one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub alert_type: &'static str,
    /// One sentence for people, without the process and pod (the engine adds them).
    pub summary: String,
    /// The facts specific to this rule (the matched indicator, the file, the address).
    pub evidence: Vec<(String, String)>,
}

fn hit(alert_type: &'static str, summary: impl Into<String>, evidence: Vec<(&str, String)>) -> Hit {
    Hit {
        alert_type,
        summary: summary.into(),
        evidence: evidence.into_iter().map(|(name, value)| (name.to_owned(), value)).collect(),
    }
}

/// The file name of a path.
pub(crate) fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn listed(name: &str, list: &[String]) -> bool {
    list.iter().any(|item| item == name)
}

/// Whether `haystack` contains `needle`, ignoring ASCII case, without allocating.
fn contains_folded(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty() || haystack.windows(needle.len()).any(|window| window.eq_ignore_ascii_case(needle))
}

fn listed_ignoring_case(name: &str, list: &[String]) -> bool {
    list.iter().any(|item| item.eq_ignore_ascii_case(name))
}

/// Whether `path` is `suffix` or ends with it at a directory boundary (`/host/etc/shadow`
/// for `/etc/shadow`), or, for a relative path, is the same file name.
fn path_is(path: &str, suffix: &str) -> bool {
    if path == suffix {
        return true;
    }
    if let Some(head) = path.strip_suffix(suffix) {
        return suffix.starts_with('/') || head.ends_with('/');
    }
    !path.contains('/') && file_name(suffix) == path
}

fn path_in(path: &str, list: &[String]) -> Option<String> {
    list.iter().find(|item| path_is(path, item)).cloned()
}

fn staged(path: &str, config: &RuntimeConfig) -> bool {
    config.staging_directories.iter().any(|dir| path.starts_with(dir.as_str()))
}

fn hidden(path: &str) -> bool {
    let name = file_name(path);
    name.starts_with('.') && name != "." && name != ".."
        || path.split('/').rev().skip(1).any(|dir| dir.starts_with('.') && dir != "." && dir != "..")
}

/// The programs a process runs: its own file name, and, for an interpreter given a script
/// (not `-c`), the script's file name.
pub(crate) fn programs<'p>(process: &'p Process, config: &RuntimeConfig) -> Vec<&'p str> {
    let mut names = vec![process.name.as_str()];
    if listed(&process.name, &config.interpreters) {
        for arg in &process.args {
            if arg == "-c" || arg == "-e" || arg == "-m" {
                break;
            }
            if !arg.starts_with('-') {
                names.push(file_name(arg));
                break;
            }
        }
    }
    names
}

/// The script an interpreter runs, or the command string of `sh -c`, for reading.
fn shell_command<'p>(process: &'p Process, config: &RuntimeConfig) -> Option<&'p str> {
    if !listed(&process.name, &config.shells) && !listed(&process.name, &config.interpreters) {
        return None;
    }
    let at = process.args.iter().position(|a| a == "-c" || a == "-e")?;
    process.args.get(at + 1).map(String::as_str)
}

fn args_text(process: &Process) -> String {
    process.args.join(" ")
}

/// The host of a URL-like argument (`https://user@host:443/x`, `host/path` for wget).
pub(crate) fn url_host(arg: &str) -> Option<&str> {
    let rest = arg.split_once("://").map_or(arg, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit('@').next()?;
    let host =
        if let Some(v6) = authority.strip_prefix('[') { v6.split(']').next()? } else { authority.split(':').next()? };
    (!host.is_empty() && (arg.contains("://") || host.contains('.'))).then_some(host)
}

/// The URLs among a download's arguments.
pub(crate) fn urls(process: &Process) -> impl Iterator<Item = &str> {
    process.args.iter().map(String::as_str).filter(|a| a.contains("://") && !a.starts_with('-'))
}

fn host_matches(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.');
    host.eq_ignore_ascii_case(domain)
        || host.len() > domain.len()
            && host[host.len() - domain.len()..].eq_ignore_ascii_case(domain)
            && host.as_bytes()[host.len() - domain.len() - 1] == b'.'
}

/// An address on the internet: not loopback, private, link-local, shared or unspecified.
pub(crate) fn is_public(address: &str) -> bool {
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 100 && (64..128).contains(&b))
        }
        Ok(IpAddr::V6(v6)) => {
            let first = v6.segments()[0];
            !(v6.is_loopback() || v6.is_unspecified() || first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfe80)
        }
        Err(_) => false,
    }
}

pub(crate) fn endpoint(remote: &Endpoint) -> String {
    if remote.protocol == "unix" {
        remote.address.clone()
    } else if remote.address.contains(':') {
        format!("[{}]:{}", remote.address, remote.port)
    } else {
        format!("{}:{}", remote.address, remote.port)
    }
}

/// Every rule that reads single events, over `event`.
pub fn evaluate(event: &ProcessEvent, config: &RuntimeConfig, hits: &mut Vec<Hit>) {
    match &event.action {
        // What a sensor's own alert was about, when it said no more than the process: the
        // process is read as at its start.
        Action::Exec | Action::Other { .. } => exec(event, config, hits),
        Action::FileOpen { path, write, truncate } => file_open(event, path, *write, *truncate, config, hits),
        Action::FileDelete { path } => file_removed(event, path, "deleted", config, hits),
        Action::FileRename { from, to } => {
            file_removed(event, from, "renamed", config, hits);
            if path_is(to, "/authorized_keys") || path_is(to, "/authorized_keys2") {
                ssh_key_write(event, to, config, hits);
            }
        }
        Action::FileTimestamp { path } => {
            if config.password_files.iter().chain(&config.activity_logs).any(|f| path_is(path, f)) {
                hits.push(hit(
                    TIMESTAMP_TAMPERING,
                    format!("the timestamps of {path} were set"),
                    vec![("file", path.clone())],
                ));
            }
        }
        Action::Connect(remote) => connect(event, remote, config, hits),
        // A sensor that cannot tell a socket from a file (Tetragon's dup2 tracepoint) gives
        // no remote: the engine pairs it with the process's own connection.
        Action::SocketRedirect { fd, remote } => {
            let known_socket = remote.is_some() || event.sensor == super::event::Sensor::Riposte;
            // Socket servers and web servers hand an accepted connection to a child's
            // standard streams as their job (inetd, CGI).
            let serves =
                listed(&event.process.name, &config.socket_servers) || listed(&event.process.name, &config.web_servers);
            if known_socket && !serves {
                let to = remote
                    .as_ref()
                    .map_or_else(|| "a socket".to_owned(), |r| format!("a connection to {}", endpoint(r)));
                let mut evidence = vec![("fd", fd.to_string())];
                if let Some(remote) = remote {
                    evidence.push(("remoteAddress", endpoint(remote)));
                }
                hits.push(hit(REVERSE_SHELL, format!("standard stream {fd} was handed to {to}"), evidence));
            }
        }
        Action::Namespace { syscall, flags } => {
            if event.container.is_some()
                && syscall != "setns"
                && flags & CLONE_NEW_FLAGS != 0
                && !container_runtime(&event.process, config)
            {
                hits.push(hit(
                    NAMESPACE_CREATION,
                    format!("{syscall} created a new Linux namespace (flags {flags:#x})"),
                    vec![("syscall", syscall.clone()), ("flags", format!("{flags:#x}"))],
                ));
            }
        }
        Action::Signal { target_pid, signal, target_name } => {
            if let Some(name) = target_name
                && TERMINATING_SIGNALS.contains(signal)
                && listed(name, &config.security_processes)
            {
                hits.push(hit(
                    SUSPECT_PROCESS_TERMINATION,
                    format!("signal {signal} was sent to the security process {name} ({target_pid})"),
                    vec![("target", format!("{name} ({target_pid})")), ("signal", signal.to_string())],
                ));
            }
        }
        Action::Exit { .. } | Action::Mount { .. } | Action::Ptrace { .. } => {}
    }
}

/// The rules that read a program start.
fn exec(event: &ProcessEvent, config: &RuntimeConfig, hits: &mut Vec<Hit>) {
    let process = &event.process;
    let name = process.name.as_str();
    let names = programs(process, config);
    let text = args_text(process);
    let lower = text.to_ascii_lowercase();
    let in_container = event.container.is_some();
    let indicator = |value: &str| vec![("indicator", value.to_owned())];

    if name == EICAR_PROGRAM && lower.contains(EICAR_PHRASE) {
        hits.push(hit(
            EICAR,
            "Microsoft's runtime detection test trigger ran (not a threat)",
            indicator(EICAR_PROGRAM),
        ));
    }
    for (list, alert_type, what) in [
        (&config.miner_names, CRYPTO_COIN_MINER_ARTIFACTS, "a digital currency miner"),
        (&config.attack_tools, KNOWN_LINUX_ATTACK_TOOL, "an attack tool"),
        (&config.credential_tools, KNOWN_LINUX_CREDENTIAL_ACCESS_TOOL, "a credential access tool"),
        (&config.caldera_agents, MITRE_CALDERA_TOOLS, "a MITRE Caldera agent"),
        (&config.bot_names, COMMON_BOT, "a program of the bot feed"),
        (&config.backdoor_names, LINUX_BACKDOOR_ARTIFACT, "a known backdoor"),
        (&config.port_forwarding_tools, SUSPECT_PORT_FORWARDING, "a port forwarding tool"),
    ] {
        if let Some(found) = names.iter().find(|n| listed_ignoring_case(n, list)) {
            hits.push(hit(alert_type, format!("{found}, {what}, ran"), indicator(found)));
        }
    }
    if process.args.iter().any(|a| a.starts_with("-server"))
        && process.args.iter().any(|a| a.starts_with("-group"))
        && !hits.iter().any(|h| h.alert_type == MITRE_CALDERA_TOOLS)
    {
        hits.push(hit(
            MITRE_CALDERA_TOOLS,
            "a program started with Caldera's agent arguments (-server, -group)",
            indicator("-server -group"),
        ));
    }
    let binary = if process.binary.is_empty() { name } else { process.binary.as_str() };
    if let Some(file) = config.ddos_toolkit_files.iter().find(|f| path_is(binary, f) || names.iter().any(|n| n == f)) {
        hits.push(hit(KNOWN_LINUX_DDOS_TOOLKIT, format!("{binary}, a file of a DDoS toolkit, ran"), indicator(file)));
    }
    if listed(name, &config.daemon_names) && (staged(binary, config) || hidden(binary)) {
        hits.push(hit(
            LINUX_BACKDOOR_ARTIFACT,
            format!("a program named like the system daemon {name} ran from {binary}"),
            indicator(binary),
        ));
    }
    if let Some(pattern) = config
        .exploit_patterns
        .iter()
        .find(|p| contains_folded(&lower, p) || names.iter().any(|n| contains_folded(n, p)))
    {
        hits.push(hit(
            EXPLOIT_ATTEMPT,
            format!("a command line carries the exploit pattern {pattern:?}"),
            indicator(pattern),
        ));
    }

    // Mining: the pool, the arguments.
    if let Some(pool) = lower
        .split_whitespace()
        .find(|a| a.contains("stratum+tcp://") || a.contains("stratum+ssl://") || a.contains("stratum2+tcp://"))
        .map(str::to_owned)
        .or_else(|| {
            lower
                .split(|c: char| c.is_whitespace() || c == '=' || c == '"' || c == '\'')
                .filter_map(url_host)
                .find(|host| config.pool_domains.iter().any(|d| host_matches(host, d)))
                .map(str::to_owned)
        })
    {
        hits.push(hit(
            DIGITAL_CURRENCY_MINING,
            format!("a command line names the mining pool {pool}"),
            indicator(&pool),
        ));
    }
    if let Some(argument) = config.miner_arguments.iter().find(|a| {
        if a.contains(' ') {
            return contains_folded(&lower, a);
        }
        process.args.iter().any(|w| {
            w.len() >= a.len()
                && w.as_bytes()[..a.len()].eq_ignore_ascii_case(a.as_bytes())
                && (w.len() == a.len() || w.as_bytes()[a.len()] == b'=')
        })
    }) {
        hits.push(hit(
            CRYPTO_COIN_MINER_EXECUTION,
            format!("a program started with the miner argument {argument}"),
            indicator(argument),
        ));
    }

    // Downloads.
    if listed(name, &config.download_tools) {
        download(event, config, hits);
    }
    if let Some(command) = shell_command(process, config) {
        shell_command_rules(command, config, hits);
    }

    // Reverse shells started by their command line.
    if let Some(pattern) = reverse_shell_command(process, &lower, config) {
        hits.push(hit(
            REVERSE_SHELL,
            format!("a command line opens a shell over the network ({pattern})"),
            indicator(pattern),
        ));
    }

    match name {
        "systemctl" | "service"
            if (lower.contains("apt-daily-upgrade") || lower.contains("apt-daily.timer"))
                && process.args.iter().any(|a| matches!(a.as_str(), "stop" | "disable" | "mask")) =>
        {
            hits.push(hit(TIMER_SERVICE_DISABLED, "the apt-daily-upgrade timer was stopped", indicator(&text)));
        }
        "docker" | "podman" | "nerdctl" | "ctr" => {
            let runs = process.args.iter().any(|a| matches!(a.as_str(), "run" | "create"));
            if runs && process.args.iter().any(|a| a == "--privileged" || a == "--privileged=true") {
                hits.push(hit(
                    PRIVILEGED_CONTAINER_ARTIFACTS,
                    format!("{name} ran a privileged container"),
                    indicator("--privileged"),
                ));
            }
            if process.args.iter().any(|a| matches!(a.as_str(), "build" | "buildx")) {
                hits.push(hit(IMAGE_BUILD_ON_NODE, format!("{name} built an image"), indicator(&text)));
            }
        }
        "buildah" | "buildctl" | "img" | "kaniko" | "executor"
            if process.args.iter().any(|a| matches!(a.as_str(), "bud" | "build" | "--dockerfile" | "-f"))
                || name == "executor" && lower.contains("--destination") =>
        {
            hits.push(hit(IMAGE_BUILD_ON_NODE, format!("{name} built an image"), indicator(&text)));
        }
        "nohup" => {
            if let Some(target) = process.args.iter().find(|a| !a.starts_with('-'))
                && (staged(target, config) || hidden(target))
            {
                hits.push(hit(
                    SUSPECT_NOHUP,
                    format!("nohup ran {target}, a hidden or temporary file"),
                    indicator(target),
                ));
            }
        }
        "useradd" | "adduser" | "luseradd" | "newusers" => {
            let root = process.args.windows(2).any(|w| (w[0] == "-u" || w[0] == "--uid") && w[1] == "0")
                || process.args.iter().any(|a| a == "--uid=0");
            if in_container || root || lower.contains("sudo") || lower.contains("wheel") {
                hits.push(hit(SUSPECT_USER_ADDITION, format!("{name} added a user"), indicator(&text)));
            }
        }
        "usermod" => {
            if process.args.iter().any(|a| a == "-p" || a == "--password" || a.starts_with("--password=")) {
                hits.push(hit(SUSPECT_PASSWORD_CHANGE, "usermod set a password hash", indicator("usermod -p")));
            } else if lower.contains("sudo") || lower.contains("wheel") || lower.contains("-u 0") {
                hits.push(hit(SUSPECT_USER_ADDITION, "usermod gave a user administrator rights", indicator(&text)));
            }
        }
        "chpasswd" => {
            hits.push(hit(SUSPECT_PASSWORD_CHANGE, "chpasswd changed passwords", indicator(&text)));
        }
        "sshd" | "dropbear" if in_container => {
            hits.push(hit(CONTAINER_SSH, format!("the SSH server {name} started in a container"), indicator(name)));
        }
        "touch" => {
            if let Some(flag) = process.args.iter().find(|a| {
                matches!(a.as_str(), "-r" | "-d" | "-t") || a.starts_with("--reference") || a.starts_with("--date")
            }) {
                hits.push(hit(
                    TIMESTAMP_TAMPERING,
                    format!("touch set a file's timestamps ({flag})"),
                    indicator(&text),
                ));
            }
        }
        "kill" | "pkill" | "killall" => {
            if let Some(target) = process.args.iter().find(|a| listed(a, &config.security_processes)) {
                hits.push(hit(
                    SUSPECT_PROCESS_TERMINATION,
                    format!("{name} targeted the security process {target}"),
                    indicator(target),
                ));
            }
        }
        "ssh" => {
            let forwards = process.args.iter().any(|a| a.starts_with("-L") || a.starts_with("-R"));
            if forwards && process.args.iter().any(|a| a.split(':').any(is_public) || a.split('@').any(is_public)) {
                hits.push(hit(
                    SUSPECT_PORT_FORWARDING,
                    "ssh forwarded a port to an external address",
                    indicator(&text),
                ));
            }
            if process.args.iter().any(|a| a.starts_with("-D")) {
                hits.push(hit(SUSPECT_CONNECTION, "ssh opened a SOCKS proxy (-D)", indicator(&text)));
            }
        }
        "socat" if lower.contains("listen") && lower.split([':', ',', ' ']).any(is_public) => {
            hits.push(hit(SUSPECT_PORT_FORWARDING, "socat forwarded a port to an external address", indicator(&text)));
        }
        "kubectl" if in_container => {
            hits.push(hit(KUBERNETES_API, "kubectl ran in a container", indicator(&text)));
        }
        _ => {}
    }
    if let Some(socks) = ["socks4://", "socks4a://", "socks5://", "socks5h://", "--socks4", "--socks5", "proxychains"]
        .into_iter()
        .find(|s| lower.contains(s) || name == *s)
    {
        hits.push(hit(SUSPECT_CONNECTION, format!("a program uses a SOCKS proxy ({socks})"), indicator(socks)));
    }
    if listed(name, &config.interactive_tools) && name != "kubectl" {
        api_by_command_line(event, &lower, config, hits);
    }
    if let Some(host) = config.metadata_hosts.iter().find(|h| lower.contains(h.as_str()))
        && in_container
        && !metadata_client(event, config)
    {
        hits.push(hit(IMDS_CALL, format!("a command line calls the cloud metadata service {host}"), indicator(host)));
    }

    // Files named on the command line, for sensors that see program starts only.
    for arg in &process.args {
        if let Some(file) = path_in(arg, &config.password_files)
            && !listed(name, &config.password_readers)
        {
            hits.push(hit(
                SUSPECT_PASSWORD_FILE_ACCESS,
                format!("{name} was given the password file {arg}"),
                vec![("file", arg.clone()), ("indicator", file)],
            ));
        }
        if let Some(file) = path_in(arg, &config.kubelet_kubeconfigs)
            && !listed(name, &config.kubeconfig_readers)
        {
            hits.push(hit(
                KUBE_CONFIG_ACCESS,
                format!("{name} was given the kubelet's credentials {arg}"),
                vec![("file", arg.clone()), ("indicator", file)],
            ));
        }
        let removes = matches!(name, "rm" | "shred" | "truncate" | "unlink" | "ln" | "mv");
        if removes && config.history_files.iter().any(|h| file_name(arg) == h) {
            hits.push(hit(
                HISTORY_FILE_CLEARED,
                format!("{name} cleared the shell history {arg}"),
                vec![("file", arg.clone())],
            ));
        }
        if removes && !rotating(event, config) && path_in(arg, &config.activity_logs).is_some() {
            hits.push(hit(
                SYSTEM_LOG_REMOVAL,
                format!("{name} removed the activity log {arg}"),
                vec![("file", arg.clone())],
            ));
        }
        if matches!(name, "tee" | "cp" | "mv" | "sed" | "chattr" | "ln")
            && (path_is(arg, "/authorized_keys") || path_is(arg, "/authorized_keys2"))
            && !listed(name, &config.ssh_key_managers)
        {
            hits.push(hit(
                SSH_KEY_ACCESS,
                format!("{name} changed the SSH authorized keys {arg}"),
                vec![("file", arg.clone())],
            ));
        }
    }

    // A web server starting a shell or a reconnaissance command, itself or through the
    // script it ran (a CGI script, a PHP page's shell_exec).
    let web_server = event
        .parent
        .iter()
        .map(|p| p.name.as_str())
        .chain(event.ancestors.first().map(String::as_str))
        .find(|n| listed(n, &config.web_servers));
    if let Some(server) = web_server
        && (listed(name, &config.shells)
            || listed(name, &config.recon_commands)
            || listed(name, &config.download_tools))
    {
        hits.push(hit(
            WEBSHELL,
            format!("the web server {server} started {name}"),
            vec![("webServer", server.to_owned())],
        ));
    }

    if event.container.as_ref().and_then(|c| c.privileged) == Some(true)
        && process.exec_session == Some(true)
        && event.parent.as_ref().and_then(|p| p.exec_session) != Some(true)
    {
        hits.push(hit(
            PRIVILEGED_EXECUTION_IN_CONTAINER,
            format!("{name} was run by an exec into a privileged container"),
            indicator("privileged"),
        ));
    }
}

/// The container runtime setting a container up: it runs in the container's cgroup before
/// the container's own program, and creates its namespaces. runc re-executes itself from a
/// sealed copy (`/proc/self/fd/N init`, `/dev/fd/N init`).
fn container_runtime(process: &Process, config: &RuntimeConfig) -> bool {
    listed(&process.name, &config.container_runtimes)
        || (process.binary.starts_with("/dev/fd/") || process.binary.starts_with("/proc/self/fd/"))
            && process.args.first().is_some_and(|a| a == "init")
}

/// Whether a log rotator, or something it started, acts.
fn rotating(event: &ProcessEvent, config: &RuntimeConfig) -> bool {
    listed(&event.process.name, &config.log_rotators)
        || event.parent.as_ref().is_some_and(|p| listed(&p.name, &config.log_rotators))
        || event.ancestors.iter().any(|a| listed(a, &config.log_rotators))
}

fn metadata_client(event: &ProcessEvent, config: &RuntimeConfig) -> bool {
    let image = event.container.as_ref().and_then(|c| c.image.as_deref()).unwrap_or_default();
    !image.is_empty()
        && crate::image::matches_any(&config.metadata_client_images, &crate::image::repository(image)).is_some()
}

/// A download tool's rules: where from, where to, what.
fn download(event: &ProcessEvent, config: &RuntimeConfig, hits: &mut Vec<Hit>) {
    let process = &event.process;
    for url in urls(process) {
        let Some(host) = url_host(url) else { continue };
        if let Some(source) = config.malicious_download_sources.iter().find(|s| host_matches(host, s)) {
            hits.push(hit(
                SUSPECT_DOWNLOAD,
                format!("a file was downloaded from {host}, a source of the malicious sources feed"),
                vec![("url", url.to_owned()), ("indicator", source.clone())],
            ));
        }
        let lower = url.to_ascii_lowercase();
        if let Some(miner) = config.miner_names.iter().find(|m| lower.contains(&m.to_ascii_lowercase())) {
            hits.push(hit(
                CRYPTO_COIN_MINER_DOWNLOAD,
                format!("{url} names the miner {miner}"),
                vec![("url", url.to_owned()), ("indicator", miner.clone())],
            ));
        }
        if is_public(host) {
            hits.push(hit(
                SUSPECT_DOWNLOAD_ARTIFACTS,
                format!("a file was downloaded from the internet address {host}"),
                vec![("url", url.to_owned())],
            ));
        }
    }
    if let Some(output) = download_output(process)
        && (staged(&output, config) || hidden(&output))
    {
        hits.push(hit(
            SUSPECT_DOWNLOAD_ARTIFACTS,
            format!("a download was written to {output}, a hidden or temporary file"),
            vec![("file", output)],
        ));
    }
}

/// Where a download tool writes: curl's `-o`/`--output`, wget's `-O`/`--output-document`,
/// resolved against the working directory. `-O` of curl and wget without `-O` keep the
/// URL's file name.
pub(crate) fn download_output(process: &Process) -> Option<String> {
    let args = &process.args;
    let mut named = None;
    let mut remote_name = process.name == "wget";
    for (i, arg) in args.iter().enumerate() {
        let next = || args.get(i + 1).cloned();
        match (process.name.as_str(), arg.as_str()) {
            ("curl", "-o" | "--output") | ("wget", "-O" | "--output-document") => named = next(),
            ("curl", "-O" | "--remote-name") => remote_name = true,
            ("curl", a) if a.starts_with("-o") && a.len() > 2 && !a.starts_with("--") => {
                named = Some(a[2..].to_owned())
            }
            ("wget", a) if a.starts_with("--output-document=") => {
                named = Some(a["--output-document=".len()..].to_owned())
            }
            // Short options cluster: `-qO-`, `-O/tmp/x`.
            ("wget", a) if a.starts_with('-') && !a.starts_with("--") && a.contains('O') => {
                let rest = &a[a.find('O').unwrap_or_default() + 1..];
                named = if rest.is_empty() { next() } else { Some(rest.to_owned()) };
            }
            _ => {}
        }
    }
    let path = match named {
        Some(path) if path == "-" || path == "/dev/null" => return None,
        Some(path) => path,
        None if remote_name => {
            let url = urls(process).next()?;
            let path = url.split_once("://").map_or(url, |(_, r)| r).split(['?', '#']).next()?;
            let name = path.split_once('/').map(|(_, p)| file_name(p))?;
            if name.is_empty() {
                return None;
            }
            name.to_owned()
        }
        None => return None,
    };
    Some(resolve(&path, process.cwd.as_deref()))
}

/// `path` made absolute against `cwd`, when it is relative and the directory is known.
pub(crate) fn resolve(path: &str, cwd: Option<&str>) -> String {
    match cwd {
        Some(cwd) if !path.starts_with('/') => {
            let relative = path.strip_prefix("./").unwrap_or(path);
            format!("{}/{relative}", cwd.trim_end_matches('/'))
        }
        _ => path.to_owned(),
    }
}

/// `sh -c "curl … | sh"`: a download run in one command.
fn shell_command_rules(command: &str, config: &RuntimeConfig, hits: &mut Vec<Hit>) {
    let lower = command.to_ascii_lowercase();
    let downloads = config.download_tools.iter().any(|tool| {
        lower
            .split(|c: char| c.is_whitespace() || c == '|' || c == ';' || c == '&' || c == '(' || c == '`')
            .any(|word| file_name(word) == tool)
    });
    if !downloads {
        return;
    }
    let piped_to_shell = lower.split('|').skip(1).any(|stage| {
        let program = stage.split_whitespace().next().map(file_name).unwrap_or_default();
        listed(program, &config.shells) || listed(program, &config.interpreters)
    });
    let runs_after = (lower.contains("chmod +x") || lower.contains("chmod 7") || lower.contains("chmod 5"))
        && (lower.contains("&& ./")
            || lower.contains("; ./")
            || lower.contains("&& /tmp/")
            || lower.contains("; /tmp/"));
    if piped_to_shell || runs_after {
        hits.push(hit(
            DOWNLOAD_AND_RUN_COMBO,
            "a command downloads a file and runs it",
            vec![("command", command.to_owned())],
        ));
    }
}

/// The command-line shapes of reverse shells.
fn reverse_shell_command(process: &Process, lower: &str, config: &RuntimeConfig) -> Option<&'static str> {
    let name = process.name.as_str();
    if listed(name, &config.shells) && (lower.contains("/dev/tcp/") || lower.contains("/dev/udp/")) {
        return Some("/dev/tcp");
    }
    if matches!(name, "nc" | "ncat" | "netcat" | "nc.traditional" | "nc.openbsd" | "busybox")
        && process.args.iter().any(|a| a == "-e" || a == "-c" || a.starts_with("--exec") || a.starts_with("--sh-exec"))
    {
        return Some("netcat -e");
    }
    if name == "socat" && (lower.contains("exec:") || lower.contains("system:")) && lower.contains("tcp") {
        return Some("socat exec");
    }
    let scripting = matches!(name, "python" | "python2" | "python3" | "perl" | "ruby" | "php" | "lua" | "node");
    if scripting
        && lower.contains("socket")
        && (lower.contains("dup2")
            || lower.contains("pty.spawn")
            || lower.contains("/bin/sh")
            || lower.contains("/bin/bash"))
    {
        return Some("scripted socket shell");
    }
    None
}

/// The Kubernetes API and Dashboard named on an interactive tool's command line.
fn api_by_command_line(event: &ProcessEvent, lower: &str, config: &RuntimeConfig, hits: &mut Vec<Hit>) {
    if event.container.is_none() {
        return;
    }
    let words: Vec<&str> = lower.split(|c: char| c.is_whitespace() || c == '"' || c == '\'').collect();
    let names_api = words.iter().any(|w| {
        w.contains("kubernetes.default")
            || url_host(w).is_some_and(|h| config.kubernetes_api_addresses.iter().any(|a| a == h))
                && (w.contains("/api") || w.contains("/version") || w.contains("/healthz") || w.contains("://"))
    });
    if names_api {
        hits.push(hit(
            KUBERNETES_API,
            format!("{} sent a request to the Kubernetes API", event.process.name),
            vec![("indicator", "kubernetes API URL".to_owned())],
        ));
    }
    let names_dashboard = words.iter().any(|w| {
        w.contains("kubernetes-dashboard")
            || url_host(w).is_some_and(|h| config.dashboard_addresses.iter().any(|a| a == h))
    });
    if names_dashboard {
        hits.push(hit(
            KUBERNETES_DASHBOARD,
            format!("{} sent a request to the Kubernetes Dashboard", event.process.name),
            vec![("indicator", "dashboard URL".to_owned())],
        ));
    }
}

/// The rules that read an opened file.
fn file_open(
    event: &ProcessEvent,
    path: &str,
    write: bool,
    truncate: bool,
    config: &RuntimeConfig,
    hits: &mut Vec<Hit>,
) {
    let name = event.process.name.as_str();
    if !write
        && let Some(file) = path_in(path, &config.password_files)
        && !listed(name, &config.password_readers)
    {
        hits.push(hit(
            SUSPECT_PASSWORD_FILE_ACCESS,
            format!("{name} read the password file {path}"),
            vec![("file", path.to_owned()), ("indicator", file)],
        ));
    }
    if let Some(file) = path_in(path, &config.kubelet_kubeconfigs)
        && !listed(name, &config.kubeconfig_readers)
    {
        hits.push(hit(
            KUBE_CONFIG_ACCESS,
            format!("{name} opened the kubelet's credentials {path}"),
            vec![("file", path.to_owned()), ("indicator", file)],
        ));
    }
    if write && (path_is(path, "/authorized_keys") || path_is(path, "/authorized_keys2")) {
        ssh_key_write(event, path, config, hits);
    }
    if write && path_is(path, "/proc/self/exe") {
        hits.push(hit(
            EXPLOIT_ATTEMPT,
            "a process opened its own executable through /proc/self/exe for writing (the runc breakout)",
            vec![("file", path.to_owned())],
        ));
    }
    if truncate {
        file_removed(event, path, "emptied", config, hits);
    }
    if write && config.ddos_toolkit_files.iter().any(|f| f.starts_with('/') && path_is(path, f)) {
        hits.push(hit(
            KNOWN_LINUX_DDOS_TOOLKIT,
            format!("{path}, a file of a DDoS toolkit, was written"),
            vec![("file", path.to_owned())],
        ));
    }
}

fn ssh_key_write(event: &ProcessEvent, path: &str, config: &RuntimeConfig, hits: &mut Vec<Hit>) {
    if !listed(&event.process.name, &config.ssh_key_managers) {
        hits.push(hit(
            SSH_KEY_ACCESS,
            format!("{} wrote the SSH authorized keys {path}", event.process.name),
            vec![("file", path.to_owned())],
        ));
    }
}

/// A file deleted, renamed away or emptied: history and activity logs.
fn file_removed(event: &ProcessEvent, path: &str, how: &str, config: &RuntimeConfig, hits: &mut Vec<Hit>) {
    if config.history_files.iter().any(|h| file_name(path) == h) {
        hits.push(hit(
            HISTORY_FILE_CLEARED,
            format!("the shell history {path} was {how}"),
            vec![("file", path.to_owned())],
        ));
    }
    if path_in(path, &config.activity_logs).is_some() && !rotating(event, config) {
        hits.push(hit(
            SYSTEM_LOG_REMOVAL,
            format!("the activity log {path} was {how}"),
            vec![("file", path.to_owned())],
        ));
    }
}

/// The rules that read an outgoing connection.
fn connect(event: &ProcessEvent, remote: &Endpoint, config: &RuntimeConfig, hits: &mut Vec<Hit>) {
    if remote.protocol == "unix" {
        return;
    }
    let at = endpoint(remote);
    let address = remote.address.as_str();
    let in_container = event.container.is_some();
    let interactive = listed(&event.process.name, &config.interactive_tools);
    let remote_evidence = || vec![("remoteAddress", at.clone())];
    if in_container && listed(address, &config.metadata_addresses) && !metadata_client(event, config) {
        hits.push(hit(IMDS_CALL, format!("a connection to the cloud metadata service {at}"), remote_evidence()));
    }
    if in_container && interactive && listed(address, &config.kubernetes_api_addresses) {
        hits.push(hit(
            KUBERNETES_API,
            format!("{} connected to the Kubernetes API at {at}", event.process.name),
            remote_evidence(),
        ));
    }
    if in_container && interactive && listed(address, &config.dashboard_addresses) {
        hits.push(hit(
            KUBERNETES_DASHBOARD,
            format!("{} connected to the Kubernetes Dashboard at {at}", event.process.name),
            remote_evidence(),
        ));
    }
    if config.socks_ports.contains(&remote.port) && remote.protocol == "tcp" {
        hits.push(hit(SUSPECT_CONNECTION, format!("a connection to the SOCKS proxy port {at}"), remote_evidence()));
    }
    if config.pool_ports.contains(&remote.port) && is_public(address) {
        hits.push(hit(
            DIGITAL_CURRENCY_MINING,
            format!("a connection to the mining pool port {at}"),
            remote_evidence(),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rules_cover_exactly_the_runtime_entries_of_the_catalog() {
        assert_eq!(crate::rules::catalog::ids(&["runtime"]), ALERT_TYPES);
    }

    #[test]
    fn paths_match_at_directory_boundaries_and_relative_names_by_file_name() {
        assert!(path_is("/etc/shadow", "/etc/shadow"));
        assert!(path_is("/host/etc/shadow", "/etc/shadow"));
        assert!(!path_is("/etc/myshadow", "/shadow"), "a suffix must start a component");
        assert!(path_is("shadow", "/etc/shadow"), "a relative name is compared by file name");
        assert!(!path_is("x/shadow", "/etc/shadow"));
        assert!(path_is("/root/.ssh/authorized_keys", "/authorized_keys"));
    }

    #[test]
    fn hosts_come_out_of_urls_with_ports_users_and_v6() {
        assert_eq!(url_host("http://10.0.0.1:8080/x"), Some("10.0.0.1"));
        assert_eq!(url_host("https://u:p@pool.supportxmr.com/"), Some("pool.supportxmr.com"));
        assert_eq!(url_host("http://[fd00:ec2::254]/latest"), Some("fd00:ec2::254"));
        assert_eq!(url_host("example.com/a.sh"), Some("example.com"));
        assert_eq!(url_host("-s"), None);
        assert!(host_matches("xmr.supportxmr.com", "supportxmr.com"));
        assert!(!host_matches("notsupportxmr.com", "supportxmr.com"));
    }

    #[test]
    fn public_addresses_exclude_every_local_range() {
        for local in [
            "10.1.2.3",
            "192.168.0.1",
            "172.16.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
            "::1",
        ] {
            assert!(!is_public(local), "{local}");
        }
        assert!(is_public("8.8.8.8"));
        assert!(is_public("2001:4860::8888"));
        assert!(!is_public("pool.example"));
    }

    #[test]
    fn downloads_say_where_they_write() {
        let curl = |args: &[&str]| Process {
            name: "curl".into(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            cwd: Some("/work".into()),
            ..Process::default()
        };
        assert_eq!(download_output(&curl(&["-s", "-o", "/tmp/x", "http://h/a"])).as_deref(), Some("/tmp/x"));
        assert_eq!(download_output(&curl(&["-o./y", "http://h/a"])).as_deref(), Some("/work/y"));
        assert_eq!(download_output(&curl(&["-O", "http://h/dir/tool.sh?x=1"])).as_deref(), Some("/work/tool.sh"));
        assert_eq!(download_output(&curl(&["http://h/a"])), None, "curl writes to its output");
        let mut wget = curl(&["http://h/dir/payload"]);
        wget.name = "wget".into();
        assert_eq!(download_output(&wget).as_deref(), Some("/work/payload"));
        wget.args = vec!["-qO-".into(), "http://h/x".into()];
        assert_eq!(download_output(&wget), None, "to standard output");
    }

    #[test]
    fn interpreters_name_their_scripts() {
        let config = RuntimeConfig::default();
        let sh = Process { name: "sh".into(), args: vec!["-x".into(), "/tmp/linpeas.sh".into()], ..Process::default() };
        assert_eq!(programs(&sh, &config), ["sh", "linpeas.sh"]);
        let inline = Process { name: "sh".into(), args: vec!["-c".into(), "nmap x".into()], ..Process::default() };
        assert_eq!(programs(&inline, &config), ["sh"]);
    }
}
