//! The command line, as kubectl users expect it: `kubectl riposte <command> [-n NS] [-o json]`.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use riposte_crds::{AlertState, Classification, EvidenceCapture, Phase, Severity};
use serde::de::DeserializeOwned;

use crate::filter::parse_duration;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl-riposte",
    bin_name = "kubectl riposte",
    version,
    about = "Respond to threats from kubectl: isolate, terminate and release pods, triage alerts, and read the action center",
    after_help = "Every action and triage records who made it: the identity the apiserver authenticated (`kubectl auth whoami`)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct Global {
    /// The namespace; by default the kubeconfig context's namespace, else `default`.
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// The kubeconfig file; by default $KUBECONFIG, else ~/.kube/config.
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use; by default its current context.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// How to print the result: readable text, or the objects as JSON or YAML.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Cut a pod off the network (creates an Isolate ResponseAction).
    Isolate(IsolateArgs),
    /// Delete a pod, optionally keeping its manifest and logs first (a Terminate ResponseAction).
    Terminate(TerminateArgs),
    /// Undo the isolation of a pod (a Release ResponseAction).
    Release(ReleaseArgs),
    /// Add a comment to an action or an alert; comments are append-only.
    Comment(CommentArgs),
    /// Approve, or reject, an action that waits for a responder's approval.
    Approve(ApproveArgs),
    /// Move an alert through its lifecycle: state, assignee, classification.
    Triage(TriageArgs),
    /// The action center: every response, newest last.
    Actions(ActionsArgs),
    /// The alert queue: the most severe first, then the newest.
    Alerts(AlertsArgs),
    /// One action or alert in full, with its history.
    Show(ShowArgs),
    /// The cluster-wide kill switch of automated responses, and the ResponsePolicies.
    Automation(AutomationArgs),
    /// Advanced hunting: a SQL or KQL query over every process and audit event kept
    /// (CloudProcessEvents, CloudAuditEvents, RiposteAlerts, RiposteActions).
    Hunt(HuntArgs),
    /// Every event of an alert's pod, image, user and source address within an hour of it,
    /// newest first: the API calls and what ran inside, as one timeline.
    GoHunt(GoHuntArgs),
}

/// Where the hunting API is, and who you are to it.
#[derive(Args, Debug)]
pub struct HuntingEndpoint {
    /// The hunting API's address, such as https://riposte-hunting.example:8443 (the chart's
    /// NOTES say how to reach it).
    #[arg(long, env = "RIPOSTE_HUNT_URL", value_name = "URL")]
    pub url: Option<String>,
    /// The CA that signed the hunting API's certificate (PEM), when not a public one.
    #[arg(long, env = "RIPOSTE_HUNT_CA_FILE", value_name = "PATH")]
    pub ca_file: Option<PathBuf>,
    /// A bearer token to present instead of the kubeconfig's credentials (for users who
    /// authenticate with a client certificate: `kubectl create token`).
    #[arg(long, env = "RIPOSTE_HUNT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// How to print the rows: a table, JSON (the whole result), or CSV.
    #[arg(long = "format", value_enum, default_value_t = HuntFormat::Table)]
    pub format: HuntFormat,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HuntFormat {
    Table,
    Json,
    Csv,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HuntLanguage {
    Sql,
    Kql,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("text").required(true).args(["query", "file"])))]
pub struct HuntArgs {
    /// The query: SQL (SELECT ... or WITH ...) or KQL (a table, then `| operator ...`).
    pub query: Option<String>,
    /// Read the query from this file (`-` for standard input).
    #[arg(short = 'f', long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// The query's language; by default told from its first word.
    #[arg(long, value_enum)]
    pub language: Option<HuntLanguage>,
    /// Hunt over this much time back from now (or from --to), such as 1h or 7d; at most 30d.
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = parse_duration, conflicts_with = "from")]
    pub since: Duration,
    /// The window's start instead, as RFC 3339 (2026-12-01T10:00:00Z).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// The window's end, as RFC 3339; by default now.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
    #[command(flatten)]
    pub endpoint: HuntingEndpoint,
}

#[derive(Args, Debug)]
pub struct GoHuntArgs {
    /// The Alert's name, in the namespace (-n).
    pub alert: String,
    #[command(flatten)]
    pub endpoint: HuntingEndpoint,
}

/// What every requested action may carry.
#[derive(Args, Debug)]
pub struct RequestArgs {
    /// The name of the pod, in the namespace.
    pub pod: String,
    /// Why: shown in the action center.
    #[arg(long)]
    pub comment: Option<String>,
    /// The Alert (in the same namespace) this action responds to.
    #[arg(long)]
    pub alert: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct GateArgs {
    /// Hold the action until a responder other than you approves it.
    #[arg(long)]
    pub require_approval: bool,
    /// Record what would be done without changing anything.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct WaitArgs {
    /// Wait until the action is done, fails, or waits for approval; print its phase and
    /// message, and exit 1 if it failed, was rejected or did not finish in time.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits, such as 90s or 5m.
    #[arg(long, requires = "wait", value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct IsolateArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub gate: GateArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Let the pod resolve names through the cluster DNS.
    #[arg(long)]
    pub allow_dns: bool,
    /// Let the pod still reach this address range (repeatable), such as 10.20.0.0/16.
    #[arg(long, value_name = "CIDR")]
    pub allow_egress_cidr: Vec<String>,
    /// Let the pod still reach pods of this namespace (repeatable).
    #[arg(long, value_name = "NS")]
    pub allow_egress_namespace: Vec<String>,
    /// Let pods of this namespace still reach the pod (repeatable), such as a forensics namespace.
    #[arg(long, value_name = "NS")]
    pub allow_ingress_namespace: Vec<String>,
    /// Let this address range still reach the pod (repeatable).
    #[arg(long, value_name = "CIDR")]
    pub allow_ingress_cidr: Vec<String>,
}

#[derive(Args, Debug)]
pub struct TerminateArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub gate: GateArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// Seconds the containers get to stop (0 kills at once); the pod's own setting by default.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(i64).range(0..=3600))]
    pub grace_period: Option<i64>,
    /// Keep the pod's manifest and its containers' recent logs before deleting it: best-effort
    /// deletes the pod anyway if something cannot be kept, required does not.
    #[arg(long, value_enum)]
    pub evidence: Option<EvidenceArg>,
    /// The most bytes of log kept per container.
    #[arg(long, value_name = "N", requires = "evidence", value_parser = clap::value_parser!(i64).range(1024..=262144))]
    pub log_limit_bytes: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum EvidenceArg {
    BestEffort,
    Required,
}

impl From<EvidenceArg> for EvidenceCapture {
    fn from(arg: EvidenceArg) -> EvidenceCapture {
        match arg {
            EvidenceArg::BestEffort => EvidenceCapture::BestEffort,
            EvidenceArg::Required => EvidenceCapture::Required,
        }
    }
}

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub request: RequestArgs,
    #[command(flatten)]
    pub wait: WaitArgs,
    /// The Isolate action to undo; by default every active isolation of the pod.
    #[arg(long, value_name = "ISOLATE_ACTION")]
    pub action: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// A ResponseAction (also: responseaction, ra).
    #[value(alias = "responseaction", alias = "ra")]
    Action,
    /// An Alert.
    Alert,
}

#[derive(Args, Debug)]
pub struct CommentArgs {
    /// What to comment on.
    pub kind: Kind,
    /// The action's or the alert's name.
    pub name: String,
    /// The comment.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: String,
}

#[derive(Args, Debug)]
pub struct ApproveArgs {
    /// The ResponseAction waiting for approval.
    pub action: String,
    /// Reject the action instead: it ends Rejected and nothing is done.
    #[arg(long)]
    pub reject: bool,
    /// Why, recorded with the decision.
    #[arg(short = 'm', long = "message", value_name = "TEXT")]
    pub message: Option<String>,
}

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("change").required(true).multiple(true).args(["state", "assign", "assign_me", "unassign", "classify"])))]
#[command(group(ArgGroup::new("owner").args(["assign", "assign_me", "unassign"])))]
pub struct TriageArgs {
    /// The Alert's name.
    pub alert: String,
    /// The alert's new state; a Resolved alert needs a classification.
    #[arg(long, ignore_case = true, value_parser = one_of::<AlertState>(STATES))]
    pub state: Option<AlertState>,
    /// Give the alert to this user.
    #[arg(long, value_name = "USER")]
    pub assign: Option<String>,
    /// Take the alert yourself.
    #[arg(long)]
    pub assign_me: bool,
    /// Leave the alert to nobody.
    #[arg(long)]
    pub unassign: bool,
    /// The verdict on the alert.
    #[arg(long, ignore_case = true, value_parser = one_of::<Classification>(CLASSIFICATIONS))]
    pub classify: Option<Classification>,
}

#[derive(Args, Debug)]
pub struct ActionsArgs {
    /// List the actions of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only actions on this pod.
    #[arg(long, value_name = "POD")]
    pub target: Option<String>,
    /// Only actions in this phase; an action the operator has not seen yet is Pending.
    #[arg(long, ignore_case = true, value_parser = one_of::<Phase>(PHASES))]
    pub phase: Option<Phase>,
    /// Only actions created within this long, such as 30m, 2h or 7d.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// Only actions created by this ResponsePolicy.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// Only actions that respond to this Alert.
    #[arg(long, value_name = "NAME")]
    pub alert: Option<String>,
}

#[derive(Args, Debug)]
pub struct AlertsArgs {
    /// List the alerts of every namespace.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Only alerts of this type (an alert catalog id, such as K8S.NODE_ReverseShell).
    #[arg(long = "type", value_name = "ID")]
    pub alert_type: Option<String>,
    /// Only alerts at least this severe.
    #[arg(long, ignore_case = true, value_parser = one_of::<Severity>(SEVERITIES))]
    pub min_severity: Option<Severity>,
    /// Only alerts in this state.
    #[arg(long, ignore_case = true, value_parser = one_of::<AlertState>(STATES))]
    pub state: Option<AlertState>,
    /// Only open alerts (New or InProgress).
    #[arg(long, conflicts_with = "state")]
    pub open: bool,
}

#[derive(Args, Debug)]
pub struct ShowArgs {
    /// What to show.
    pub kind: Kind,
    /// The action's or the alert's name.
    pub name: String,
}

#[derive(Args, Debug)]
pub struct AutomationArgs {
    #[command(subcommand)]
    pub command: AutomationCommand,
    /// The namespace Riposte runs in, where the kill switch lives.
    #[arg(long, global = true, value_name = "NS", default_value = "riposte-system")]
    pub operator_namespace: String,
}

#[derive(Subcommand, Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutomationCommand {
    /// Stop every ResponsePolicy from acting, cluster-wide.
    Pause,
    /// Let the ResponsePolicies act again.
    Resume,
    /// Whether automation is paused, and the ResponsePolicies.
    Status,
}

const PHASES: &[&str] = &["Pending", "AwaitingApproval", "Running", "Succeeded", "Failed", "Released", "Rejected"];
const STATES: &[&str] = &["New", "InProgress", "Resolved", "Dismissed"];
const CLASSIFICATIONS: &[&str] = &["TruePositive", "FalsePositive", "BenignPositive"];
const SEVERITIES: &[&str] = &["Informational", "Low", "Medium", "High"];

/// A parser for one of the CRDs' enums, spelled as in the objects (`InProgress`), in any case.
fn one_of<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: DeserializeOwned + Clone + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).map(move |typed: String| {
        // clap hands back the value as typed; the CRD's spelling is the one in `names`.
        let name = names.iter().find(|n| n.eq_ignore_ascii_case(&typed)).expect("clap accepted one of the names");
        serde_json::from_value(serde_json::Value::String((*name).to_owned())).expect("every name is a variant")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use clap::error::ErrorKind;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("kubectl-riposte").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_spelling_of_a_crd_enum_parses() {
        for phase in PHASES {
            let Command::Actions(args) = parse(&["actions", "--phase", phase]).unwrap().command else { unreachable!() };
            assert_eq!(args.phase.unwrap().as_str(), *phase);
        }
        for state in STATES {
            let Command::Alerts(args) = parse(&["alerts", "--state", &state.to_lowercase()]).unwrap().command else {
                unreachable!()
            };
            assert_eq!(args.state.unwrap().as_str(), *state);
        }
        for classification in CLASSIFICATIONS {
            let Command::Triage(args) = parse(&["triage", "a", "--classify", classification]).unwrap().command else {
                unreachable!()
            };
            assert_eq!(args.classify.unwrap().as_str(), *classification);
        }
        for severity in SEVERITIES {
            let Command::Alerts(args) = parse(&["alerts", "--min-severity", severity]).unwrap().command else {
                unreachable!()
            };
            assert_eq!(format!("{:?}", args.min_severity.unwrap()), *severity);
        }
    }

    #[test]
    fn global_flags_go_anywhere_as_in_kubectl() {
        let cli = parse(&["-n", "shop", "isolate", "web-1", "-o", "json", "--context", "prod"]).unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("shop"));
        assert_eq!(cli.global.output, Output::Json);
        assert_eq!(cli.global.context.as_deref(), Some("prod"));
        let Command::Isolate(args) = cli.command else { unreachable!() };
        assert_eq!(args.request.pod, "web-1");
        assert_eq!(args.wait.timeout, Duration::from_secs(60));
    }

    #[test]
    fn usage_errors_are_caught_before_anything_is_sent() {
        let kind = |args: &[&str]| parse(args).unwrap_err().kind();
        assert_eq!(kind(&["triage", "a"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["triage", "a", "--assign", "bob", "--unassign"]), ErrorKind::ArgumentConflict);
        assert_eq!(kind(&["terminate", "web-1", "--log-limit-bytes", "4096"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["terminate", "web-1", "--grace-period", "3601"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["terminate", "web-1", "--evidence", "maybe"]), ErrorKind::InvalidValue);
        assert_eq!(kind(&["isolate", "web-1", "--timeout", "10s"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["actions", "--since", "30"]), ErrorKind::ValueValidation);
        assert_eq!(kind(&["actions", "--phase", "Done"]), ErrorKind::InvalidValue);
        assert_eq!(kind(&["alerts", "--open", "--state", "New"]), ErrorKind::ArgumentConflict);
        assert_eq!(kind(&["comment", "action", "x"]), ErrorKind::MissingRequiredArgument);
        assert_eq!(kind(&["show", "policy", "x"]), ErrorKind::InvalidValue);
        let message = parse(&["actions", "--since", "2 hours"]).unwrap_err().to_string();
        assert!(message.contains("unknown unit \" hours\""), "{message}");
    }

    #[test]
    fn options_of_each_command_parse() {
        let cli = parse(&[
            "terminate",
            "web-1",
            "--grace-period",
            "0",
            "--evidence",
            "required",
            "--log-limit-bytes",
            "4096",
            "--wait",
            "--timeout",
            "2m",
        ])
        .unwrap();
        let Command::Terminate(args) = cli.command else { unreachable!() };
        assert_eq!(
            (args.grace_period, args.evidence, args.log_limit_bytes),
            (Some(0), Some(EvidenceArg::Required), Some(4096))
        );
        assert_eq!(args.wait.timeout, Duration::from_secs(120));
        let cli = parse(&["comment", "ra", "isolate-web-1-abcde", "-m", "dump taken"]).unwrap();
        let Command::Comment(args) = cli.command else { unreachable!() };
        assert_eq!((args.kind, args.message.as_str()), (Kind::Action, "dump taken"));
        let cli = parse(&["automation", "status", "--operator-namespace", "ops"]).unwrap();
        let Command::Automation(args) = cli.command else { unreachable!() };
        assert_eq!((args.command, args.operator_namespace.as_str()), (AutomationCommand::Status, "ops"));
    }
}
