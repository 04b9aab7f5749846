//! Each command: read what it needs, build with the pure modules, write, print.

use std::fmt::Debug;
use std::time::{Duration, Instant};

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use riposte_crds::{
    Alert, AllowList, ApprovalDecision, Comment, IsolationOptions, Phase, ReleaseOptions, ResponseAction,
    ResponsePolicy,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::cli::{
    ActionsArgs, AlertsArgs, ApproveArgs, AutomationArgs, AutomationCommand, Cli, Command, CommentArgs, GateArgs,
    IsolateArgs, Kind, Output, ReleaseArgs, RequestArgs, ShowArgs, TerminateArgs, TriageArgs, WaitArgs,
};
use crate::cluster::Cluster;
use crate::error::Error;
use crate::filter::{self, ActionFilter, AlertFilter, phase_of};
use crate::objects::{self, AUTOMATION_CONFIG_MAP, Assignee, Options, Request, Triage};
use crate::render;

/// The field manager of the kill switch ConfigMap.
const FIELD_MANAGER: &str = "kubectl-riposte";
/// Writes retried after a concurrent writer changed the object first.
const ATTEMPTS: usize = 5;
/// How often --wait looks at the action.
const POLL: Duration = Duration::from_millis(500);

pub async fn run(cli: Cli) -> Result<(), Error> {
    let cluster = Cluster::connect(&cli.global).await?;
    let output = cli.global.output;
    match cli.command {
        Command::Isolate(args) => isolate(&cluster, output, args).await,
        Command::Terminate(args) => terminate(&cluster, output, args).await,
        Command::Release(args) => release(&cluster, output, args).await,
        Command::Comment(args) => comment(&cluster, output, args).await,
        Command::Approve(args) => approve(&cluster, output, args).await,
        Command::Triage(args) => triage(&cluster, output, args).await,
        Command::Actions(args) => actions(&cluster, output, args).await,
        Command::Alerts(args) => alerts(&cluster, output, args).await,
        Command::Show(args) => show(&cluster, output, args).await,
        Command::Automation(args) => automation(&cluster, output, args).await,
        Command::Hunt(args) => crate::hunt::hunt(&cluster, args).await,
        Command::GoHunt(args) => crate::hunt::go_hunt(&cluster, args).await,
    }
}

async fn isolate(cluster: &Cluster, output: Output, args: IsolateArgs) -> Result<(), Error> {
    let options = IsolationOptions {
        allow_dns: args.allow_dns,
        ingress: AllowList { namespaces: args.allow_ingress_namespace, cidrs: args.allow_ingress_cidr, ports: vec![] },
        egress: AllowList { namespaces: args.allow_egress_namespace, cidrs: args.allow_egress_cidr, ports: vec![] },
    };
    request(cluster, output, args.request, args.gate, args.wait, Options::Isolate(options)).await
}

async fn terminate(cluster: &Cluster, output: Output, args: TerminateArgs) -> Result<(), Error> {
    let options = objects::terminate_options(args.grace_period, args.evidence.map(Into::into), args.log_limit_bytes);
    request(cluster, output, args.request, args.gate, args.wait, Options::Terminate(options)).await
}

async fn release(cluster: &Cluster, output: Output, args: ReleaseArgs) -> Result<(), Error> {
    if let Some(name) = &args.action {
        let isolation = cluster.api::<ResponseAction>().get(name).await.map_err(|e| about_action(cluster, e, name))?;
        objects::check_release_of(&isolation, &args.request.pod)?;
    }
    let options = Options::Release(ReleaseOptions { action_name: args.action });
    request(cluster, output, args.request, GateArgs::default(), args.wait, options).await
}

/// Creates an action on a pod, signed with the caller's identity, and optionally waits for it.
async fn request(
    cluster: &Cluster,
    output: Output,
    args: RequestArgs,
    gate: GateArgs,
    wait: WaitArgs,
    options: Options,
) -> Result<(), Error> {
    let requested_by = cluster.identity().await?;
    ensure_pod(cluster, &args.pod).await?;
    if let Some(alert) = &args.alert {
        cluster.api::<Alert>().get(alert).await.map_err(|e| Error::about(e, "alert", &cluster.namespace, alert))?;
    }
    let request = Request {
        namespace: cluster.namespace.clone(),
        pod: args.pod,
        requested_by,
        comment: args.comment,
        alert: args.alert,
        approval_required: gate.require_approval,
        dry_run: gate.dry_run,
    };
    let api = cluster.api::<ResponseAction>();
    let created = api.create(&PostParams::default(), &objects::action(&request, options)).await?;
    let name = created.name_any();
    if output == Output::Table {
        let dry = if gate.dry_run { " (dry run: nothing will be changed)" } else { "" };
        println!("responseaction {}/{name} created{dry}", cluster.namespace);
    }
    if !wait.wait {
        return emit_machine(output, &tidy(created));
    }
    let last = wait_for(&api, &cluster.namespace, &name, wait.timeout).await?;
    let outcome = render::wait_outcome(&last);
    match (&outcome, output) {
        (Ok(line), Output::Table) => println!("{line}"),
        // The error, printed by main, says how it ended.
        (Err(_), Output::Table) => {}
        (_, Output::Json | Output::Yaml) => emit_machine(output, &tidy(last))?,
    }
    outcome.map(drop)
}

/// A clear error for a pod that does not exist, before an action is created for nothing.
async fn ensure_pod(cluster: &Cluster, pod: &str) -> Result<(), Error> {
    match cluster.api::<Pod>().get_opt(pod).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::NotFound { kind: "pod", name: pod.to_owned(), namespace: cluster.namespace.clone() }),
        // A responder may be allowed to create actions without being allowed to read pods;
        // the operator then reports a missing pod in the action's status.
        Err(kube::Error::Api(status)) if status.code == 403 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Polls the action until it is done, failed, rejected or waiting for approval.
async fn wait_for(
    api: &Api<ResponseAction>,
    namespace: &str,
    name: &str,
    timeout: Duration,
) -> Result<ResponseAction, Error> {
    let deadline = Instant::now() + timeout;
    loop {
        let action = api.get(name).await.map_err(|e| Error::about(e, "responseaction", namespace, name))?;
        let phase = phase_of(&action);
        if phase.is_terminal() || phase == Phase::AwaitingApproval {
            return Ok(action);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::WaitTimedOut {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                phase: phase.as_str(),
                waited: format!("{timeout:?}"),
            });
        }
        tokio::time::sleep(left.min(POLL)).await;
    }
}

async fn comment(cluster: &Cluster, output: Output, args: CommentArgs) -> Result<(), Error> {
    let author = cluster.identity().await?;
    let comment = Comment { message: args.message, author, time: None };
    match args.kind {
        Kind::Action => {
            let api = cluster.api::<ResponseAction>();
            let updated = append_comment(&api, "responseaction", &cluster.namespace, &args.name, &comment, |a| {
                !a.spec.comments.is_empty()
            })
            .await?;
            emit(output, &tidy(updated), || {
                format!("comment added to responseaction {}/{}", cluster.namespace, args.name)
            })
        }
        Kind::Alert => {
            let api = cluster.api::<Alert>();
            let updated = append_comment(&api, "alert", &cluster.namespace, &args.name, &comment, |a| {
                !a.spec.comments.is_empty()
            })
            .await?;
            emit(output, &tidy(updated), || format!("comment added to alert {}/{}", cluster.namespace, args.name))
        }
    }
}

/// Appends a comment to the version just read; when someone else wrote first, reads again
/// and retries, so concurrent commenters never overwrite each other.
async fn append_comment<K>(
    api: &Api<K>,
    kind: &'static str,
    namespace: &str,
    name: &str,
    comment: &Comment,
    has_comments: impl Fn(&K) -> bool,
) -> Result<K, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let mut current = api.get(name).await.map_err(|e| Error::about(e, kind, namespace, name))?;
    for _ in 0..ATTEMPTS {
        let version = current.resource_version().unwrap_or_default();
        let patch = objects::comment_patch(&version, has_comments(&current), comment);
        match api.patch(name, &PatchParams::default(), &Patch::Json::<()>(patch)).await {
            Ok(updated) => return Ok(updated),
            Err(e) if Error::is_stale_write(&e) => {
                let fresh = api.get(name).await.map_err(|e| Error::about(e, kind, namespace, name))?;
                // The schema refuses a bad comment with a 422 too: that is no race, and
                // retrying would not help.
                if fresh.resource_version().as_deref() == Some(version.as_str()) {
                    return Err(e.into());
                }
                current = fresh;
            }
            Err(e) => return Err(Error::about(e, kind, namespace, name)),
        }
    }
    Err(Error::Conflict(format!("{kind} {namespace}/{name}")))
}

async fn approve(cluster: &Cluster, output: Output, args: ApproveArgs) -> Result<(), Error> {
    let by = cluster.identity().await?;
    let decision = if args.reject { ApprovalDecision::Rejected } else { ApprovalDecision::Approved };
    let api = cluster.api::<ResponseAction>();
    for _ in 0..ATTEMPTS {
        let current = api.get(&args.action).await.map_err(|e| about_action(cluster, e, &args.action))?;
        objects::check_undecided(&current)?;
        let version = current.resource_version().unwrap_or_default();
        let patch = objects::approval_patch(&version, decision, &by, args.message.clone());
        match api.patch(&args.action, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(updated) => {
                return emit(output, &tidy(updated), || {
                    let next = match decision {
                        ApprovalDecision::Approved => "it runs now",
                        ApprovalDecision::Rejected => "it ends Rejected and nothing is done",
                    };
                    let word = objects::decision_word(decision);
                    format!("responseaction {}/{} {word} by {by}; {next}", cluster.namespace, args.action)
                });
            }
            // Written in between (the operator's status, or another responder's decision,
            // which the next check reports): read again.
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => return Err(about_action(cluster, e, &args.action)),
        }
    }
    Err(Error::Conflict(format!("responseaction {}/{}", cluster.namespace, args.action)))
}

async fn triage(cluster: &Cluster, output: Output, args: TriageArgs) -> Result<(), Error> {
    let by = cluster.identity().await?;
    let assignee = match (args.assign, args.assign_me, args.unassign) {
        (Some(user), _, _) => Some(Assignee::To(user)),
        (None, true, _) => Some(Assignee::To(by.clone())),
        (None, false, true) => Some(Assignee::Nobody),
        (None, false, false) => None,
    };
    let triage = Triage { state: args.state, assignee, classification: args.classify };
    let updated = cluster
        .api::<Alert>()
        .patch(&args.alert, &PatchParams::default(), &Patch::Merge(&objects::triage_patch(&triage, &by)))
        .await
        .map_err(|e| Error::about(e, "alert", &cluster.namespace, &args.alert))?;
    emit(output, &tidy(updated.clone()), || render::triage_summary(&updated))
}

async fn actions(cluster: &Cluster, output: Output, args: ActionsArgs) -> Result<(), Error> {
    let api: Api<ResponseAction> = if args.all_namespaces { Api::all(cluster.client.clone()) } else { cluster.api() };
    let filter = ActionFilter {
        target: args.target,
        phase: args.phase,
        since: args.since,
        policy: args.policy,
        alert: args.alert,
    };
    let now = Timestamp::now();
    let selected = filter::select_actions(api.list(&ListParams::default()).await?.items, &filter, now);
    if output == Output::Table && selected.is_empty() {
        eprintln!("No response actions found{}.", scope(cluster, args.all_namespaces));
        return Ok(());
    }
    emit_list(output, selected, |items| render::actions_table(items, args.all_namespaces, now))
}

async fn alerts(cluster: &Cluster, output: Output, args: AlertsArgs) -> Result<(), Error> {
    let api: Api<Alert> = if args.all_namespaces { Api::all(cluster.client.clone()) } else { cluster.api() };
    let filter = AlertFilter {
        alert_type: args.alert_type.as_deref().map(filter::alert_type).transpose()?,
        min_severity: args.min_severity,
        state: args.state,
        open: args.open,
    };
    let selected = filter::select_alerts(api.list(&ListParams::default()).await?.items, &filter);
    if output == Output::Table && selected.is_empty() {
        eprintln!("No alerts found{}.", scope(cluster, args.all_namespaces));
        return Ok(());
    }
    let now = Timestamp::now();
    emit_list(output, selected, |items| render::alerts_table(items, args.all_namespaces, now))
}

fn scope(cluster: &Cluster, all_namespaces: bool) -> String {
    if all_namespaces { String::new() } else { format!(" in namespace {}", cluster.namespace) }
}

async fn show(cluster: &Cluster, output: Output, args: ShowArgs) -> Result<(), Error> {
    let now = Timestamp::now();
    match args.kind {
        Kind::Action => {
            let action = cluster
                .api::<ResponseAction>()
                .get(&args.name)
                .await
                .map_err(|e| about_action(cluster, e, &args.name))?;
            emit(output, &tidy(action.clone()), || render::show_action(&action, now))
        }
        Kind::Alert => {
            let alert = cluster
                .api::<Alert>()
                .get(&args.name)
                .await
                .map_err(|e| Error::about(e, "alert", &cluster.namespace, &args.name))?;
            emit(output, &tidy(alert.clone()), || render::show_alert(&alert, now))
        }
    }
}

async fn automation(cluster: &Cluster, output: Output, args: AutomationArgs) -> Result<(), Error> {
    let namespace = &args.operator_namespace;
    let config_maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), namespace);
    let paused = match args.command {
        AutomationCommand::Status => {
            let switch = config_maps.get_opt(AUTOMATION_CONFIG_MAP).await?;
            let policies = Api::<ResponsePolicy>::all(cluster.client.clone()).list(&ListParams::default()).await?.items;
            let now = Timestamp::now();
            let text = render::automation_status(namespace, switch.as_ref(), &policies, now);
            let document = json!({
                "paused": render::automation_paused(switch.as_ref()),
                "configMap": switch.map(tidy),
                "policies": policies.into_iter().map(tidy).collect::<Vec<_>>(),
            });
            return emit(output, &document, || text);
        }
        AutomationCommand::Pause => true,
        AutomationCommand::Resume => false,
    };
    let by = cluster.identity().await?;
    let switch = objects::automation_config_map(namespace, paused, &by);
    // Forced: whoever wrote the switch last (the chart, another analyst), this decision wins.
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let applied =
        config_maps.patch(AUTOMATION_CONFIG_MAP, &params, &Patch::Apply(&switch)).await.map_err(|e| match e {
            kube::Error::Api(status) if status.code == 404 => Error::OperatorNamespace(namespace.clone()),
            e => e.into(),
        })?;
    emit(output, &tidy(applied), || {
        if paused {
            "automation paused: no ResponsePolicy acts until `kubectl riposte automation resume`".to_owned()
        } else {
            "automation resumed: ResponsePolicies act again".to_owned()
        }
    })
}

fn about_action(cluster: &Cluster, e: kube::Error, name: &str) -> Error {
    Error::about(e, "responseaction", &cluster.namespace, name)
}

/// managedFields are bookkeeping of the apiserver; kubectl leaves them out too.
fn tidy<K: Resource>(mut object: K) -> K {
    object.meta_mut().managed_fields = None;
    object
}

/// Prints the readable text, or the object as JSON or YAML.
fn emit<T: Serialize>(output: Output, object: &T, text: impl FnOnce() -> String) -> Result<(), Error> {
    match output {
        Output::Table => {
            let text = text();
            print!("{text}");
            if !text.ends_with('\n') {
                println!();
            }
            Ok(())
        }
        Output::Json | Output::Yaml => emit_machine(output, object),
    }
}

/// Prints the object as JSON or YAML; nothing for the readable output, which said it already.
fn emit_machine<T: Serialize>(output: Output, object: &T) -> Result<(), Error> {
    match output {
        Output::Table => Ok(()),
        Output::Json => {
            let text = serde_json::to_string_pretty(object).map_err(|e| Error::Output(e.to_string()))?;
            println!("{text}");
            Ok(())
        }
        Output::Yaml => {
            print!("{}", serde_yaml::to_string(object).map_err(|e| Error::Output(e.to_string()))?);
            Ok(())
        }
    }
}

/// A list as kubectl prints one: a v1 List of the objects.
fn emit_list<K: Resource + Serialize>(
    output: Output,
    items: Vec<K>,
    table: impl FnOnce(&[K]) -> String,
) -> Result<(), Error> {
    if output == Output::Table {
        print!("{}", table(&items));
        return Ok(());
    }
    let list = json!({ "apiVersion": "v1", "kind": "List", "items": items.into_iter().map(tidy).collect::<Vec<_>>() });
    emit_machine(output, &list)
}
