//! Rules on what a pod runs: K8S_PrivilegedContainer, K8S_SensitiveMount,
//! K8S_KubeSystemContainer and K8S_MaliciousContainerImage; and K8S_SensitiveMount for the
//! PersistentVolumes that give pods a node's files without a hostPath of their own.
//!
//! They read pods and the pod templates of Deployments, DaemonSets, StatefulSets,
//! ReplicaSets, ReplicationControllers, Jobs and CronJobs, written by `create`, `update` or
//! `patch` (an attacker does not have to `create pod`), and ephemeral containers added to a
//! pod (`kubectl debug`). Every container counts: regular, init and ephemeral.
//!
//! Not read again: the pods, ReplicaSets and Jobs that kube-controller-manager makes from a
//! template already read (the engine remembers which, see [`template_write`]); what it makes
//! from a template the log never showed is read, once per owner and revision. Not read at
//! all: the mirror pods that kubelets publish for their static pods, and in a patch the
//! fields it does not touch (a rollout restart of a DaemonSet privileged all along), unless
//! it is the first the log shows of that workload's template ([`Reading`]).

use std::collections::{BTreeMap, HashMap};

use crate::Config;
use crate::audit::Event;
use crate::image;
use crate::objects::{
    Container, ContainerList, CronJobDocument, OwnerReference, PodDocument, PodSpec, TemplatedDocument,
};
use crate::rules::{
    Entities, Finding, KUBE_SYSTEM_CONTAINER, MALICIOUS_CONTAINER_IMAGE, PRIVILEGED_CONTAINER, SENSITIVE_MOUNT,
    acting_user, non_empty, past_tense, request_evidence, took_effect, write_touches, written_object,
};

const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The kind of object a resource holds, and where its pod spec is: `None` for resources
/// without a pod spec.
pub(crate) fn pod_spec_location(group: &str, resource: &str) -> Option<(&'static str, &'static str)> {
    POD_SPEC_LOCATIONS.iter().find(|((g, r), _)| *g == group && *r == resource).map(|(_, location)| *location)
}

type PodSpecLocation = ((&'static str, &'static str), (&'static str, &'static str));

const POD_SPEC_LOCATIONS: [PodSpecLocation; 8] = [
    (("", "pods"), ("Pod", "spec")),
    (("apps", "deployments"), ("Deployment", "spec.template.spec")),
    (("apps", "daemonsets"), ("DaemonSet", "spec.template.spec")),
    (("apps", "statefulsets"), ("StatefulSet", "spec.template.spec")),
    (("apps", "replicasets"), ("ReplicaSet", "spec.template.spec")),
    (("", "replicationcontrollers"), ("ReplicationController", "spec.template.spec")),
    (("batch", "jobs"), ("Job", "spec.template.spec")),
    (("batch", "cronjobs"), ("CronJob", "spec.jobTemplate.spec.template.spec")),
];

/// A workload whose pod template the engine may remember having read: namespace, kind
/// (`Deployment`, `ReplicaSet`...) and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct TemplateKey {
    pub namespace: String,
    pub kind: String,
    pub name: String,
}

/// The controller owner whose template a workload controller made an object from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Owner {
    pub kind: String,
    pub name: String,
    /// The revision of the owner's template the object was made from, from the label its
    /// controller stamps (`pod-template-hash`, `controller-revision-hash`); empty for Jobs and
    /// ReplicationControllers, whose pods carry none.
    pub revision: String,
}

impl Owner {
    /// The workload that made this owner, told by the name its controller gives what it
    /// makes: a Deployment names its ReplicaSets `<deployment>-<pod-template-hash>`, a CronJob
    /// its Jobs `<cronjob>-<scheduled time in minutes>`. It links the pods of a ReplicaSet or
    /// Job written before the log began to the Deployment or CronJob the log shows.
    pub fn maker(&self) -> Option<(&'static str, &str)> {
        match self.kind.as_str() {
            "ReplicaSet" if !self.revision.is_empty() => {
                let deployment = self.name.strip_suffix(self.revision.as_str())?.strip_suffix('-')?;
                Some(("Deployment", deployment))
            }
            "Job" => {
                let (cronjob, minutes) = self.name.rsplit_once('-')?;
                (!minutes.is_empty() && minutes.bytes().all(|b| b.is_ascii_digit())).then_some(("CronJob", cronjob))
            }
            _ => None,
        }
    }

    fn describe(&self) -> String {
        match self.maker() {
            Some((kind, name)) => format!("{} {} (of {kind} {name})", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }
}

/// What a write of a pod or pod template means for what the engine remembers of templates.
pub(crate) enum TemplateWrite<'a> {
    /// A write whose body the rules read.
    Read(WrittenSpec<'a>),
    /// A deletion, or a write whose body the log does not show (recorded at Metadata, or a
    /// JSON patch without the object it produced): what was known of this template is stale.
    Unseen(TemplateKey),
}

/// A write of a pod or pod template that took effect, before its spec is read.
pub(crate) struct WrittenSpec<'a> {
    event: &'a Event,
    kind: &'static str,
    field_prefix: &'static str,
    object: &'a str,
    /// The controller owner it was made from, when a workload controller wrote it.
    pub derived_from: Option<Owner>,
}

impl WrittenSpec<'_> {
    pub fn namespace(&self) -> &str {
        self.event.object_ref.as_ref().map_or("", |o| o.namespace.as_str())
    }

    /// The workload written, when it has a pod template of its own (pods do not).
    pub fn template(&self) -> Option<TemplateKey> {
        template_key(self.event, self.kind)
    }

    /// Whether the body shows the whole object after the write: a create or update carries
    /// it; a patch carries only what it changes, and shows the result when the audit level
    /// recorded the response.
    pub fn shows_whole_object(&self) -> bool {
        self.event.verb != "patch" || self.event.response_object.is_some()
    }
}

/// How much of a write the rules read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Reading {
    /// What the write set: all of a create or update, the fields a patch touches (a rollout
    /// restart of a DaemonSet privileged all along says nothing new).
    Changes,
    /// The whole object as the write left it, a patch's too: the first time the log shows a
    /// workload's template, what it held all along is news.
    Whole,
}

/// A pod spec as written by one request, or as the cluster holds it (no request: the
/// second source, which watches the objects themselves).
struct PodSpecWrite<'a> {
    event: Option<&'a Event>,
    kind: &'static str,
    field_prefix: &'static str,
    namespace: String,
    name: String,
    spec: PodSpec,
    derived_from: Option<&'a Owner>,
}

/// Reads as much of a write of a pod or pod template as the engine needs to decide whether
/// the rules read it: which object, and which owner's template a controller made it from.
/// `None` for what the rules never read: failed writes, dry runs, subresources other than
/// ephemeral containers, and the mirror pods that kubelets publish for their static pods.
pub(crate) fn template_write<'a>(event: &'a Event, config: &Config) -> Option<TemplateWrite<'a>> {
    let object_ref = event.object_ref.as_ref()?;
    let (kind, field_prefix) = pod_spec_location(&object_ref.api_group, &object_ref.resource)?;
    let subresource_allowed =
        object_ref.subresource.is_empty() || (kind == "Pod" && object_ref.subresource == "ephemeralcontainers");
    if !subresource_allowed || !took_effect(event) {
        return None;
    }
    match &*event.verb {
        "create" | "update" | "patch" => {}
        "delete" => return template_key(event, kind).map(TemplateWrite::Unseen),
        _ => return None,
    }
    let Some(object) = written_object(event) else {
        return template_key(event, kind).map(TemplateWrite::Unseen);
    };
    let derived_from = match lineage(event, kind, object, config) {
        Lineage::Mirror => return None,
        Lineage::Derived(owner) => Some(owner),
        Lineage::Own => None,
    };
    Some(TemplateWrite::Read(WrittenSpec { event, kind, field_prefix, object, derived_from }))
}

/// The workload an event writes, unless it is a pod (pods have no template of their own).
fn template_key(event: &Event, kind: &str) -> Option<TemplateKey> {
    let object_ref = event.object_ref.as_ref()?;
    (kind != "Pod").then(|| TemplateKey {
        namespace: object_ref.namespace.clone(),
        kind: kind.to_owned(),
        name: object_ref.name.clone(),
    })
}

/// Who a pod spec comes from.
enum Lineage {
    /// Written by a user, or by a controller for an object no controller owns.
    Own,
    /// Made by a workload controller from its controller owner's template.
    Derived(Owner),
    /// A kubelet's mirror pod: its static pod's manifest is on the node, never in the API.
    Mirror,
}

/// Decided from the metadata alone, before the spec is read: controllers write most pods,
/// and a kubelet every mirror pod.
fn lineage(event: &Event, kind: &str, object: &str, config: &Config) -> Lineage {
    let user = &event.user.username;
    let controller = config.workload_controllers.iter().any(|c| c == user);
    let node = kind == "Pod" && user.starts_with("system:node:");
    if !controller && !node {
        return Lineage::Own;
    }
    #[derive(serde::Deserialize)]
    struct Owners {
        #[serde(default)]
        metadata: OwnersMetadata,
    }
    #[derive(Default, serde::Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    struct OwnersMetadata {
        owner_references: Vec<OwnerReference>,
        labels: BTreeMap<String, String>,
        annotations: BTreeMap<String, serde::de::IgnoredAny>,
    }
    let Ok(Owners { mut metadata }) = serde_json::from_str::<Owners>(object) else {
        return Lineage::Own;
    };
    if node && metadata.annotations.contains_key(MIRROR_POD_ANNOTATION) {
        return Lineage::Mirror;
    }
    let Some(owner) = metadata.owner_references.into_iter().find(|o| o.controller == Some(true)) else {
        return Lineage::Own;
    };
    if !controller {
        return Lineage::Own;
    }
    let revision = ["pod-template-hash", "controller-revision-hash"]
        .into_iter()
        .find_map(|label| metadata.labels.remove(label))
        .unwrap_or_default();
    Lineage::Derived(Owner { kind: owner.kind, name: owner.name, revision })
}

/// All four rules over one write of a pod or pod template; `None` when its body is not
/// this kind of object (a JSON patch without the recorded result): there is nothing to say
/// about fields it does not show.
pub(crate) fn evaluate(written: &WrittenSpec, reading: Reading, config: &Config) -> Option<Vec<Finding>> {
    let write = read_spec(written)?;
    let touches = |keys: &[&str]| reading == Reading::Whole || write_touches(written.event, keys);
    let mut findings = Vec::new();
    if touches(&["privileged"]) {
        privileged_containers(&write, config, &mut findings);
    }
    if touches(&["hostPath", "volumeMounts"]) {
        sensitive_mounts(&write, config, &mut findings);
    }
    if touches(&["image", "command", "args"]) {
        kube_system_containers(&write, config, &mut findings);
        mining_containers(&write, config, &mut findings);
    }
    Some(findings)
}

fn read_spec<'a>(written: &'a WrittenSpec) -> Option<PodSpecWrite<'a>> {
    let WrittenSpec { event, kind, field_prefix, object, .. } = *written;
    let (metadata, spec) = read_pod_spec(kind, object)?;
    let object_ref = event.object_ref.as_ref()?;
    let namespace = if metadata.namespace.is_empty() { object_ref.namespace.clone() } else { metadata.namespace };
    let name = if metadata.name.is_empty() { object_ref.name.clone() } else { metadata.name };
    let derived_from = written.derived_from.as_ref();
    Some(PodSpecWrite { event: Some(event), kind, field_prefix, namespace, name, spec, derived_from })
}

fn read_pod_spec(kind: &str, object: &str) -> Option<(crate::objects::ObjectMeta, PodSpec)> {
    match kind {
        "Pod" => serde_json::from_str::<PodDocument>(object).ok().map(|d| (d.metadata, d.spec)),
        "CronJob" => serde_json::from_str::<CronJobDocument>(object)
            .ok()
            .map(|d| (d.metadata, d.spec.job_template.spec.template.spec)),
        _ => serde_json::from_str::<TemplatedDocument>(object).ok().map(|d| (d.metadata, d.spec.template.spec)),
    }
}

/// All four rules over an object as the cluster holds it (a pod or a workload, with its
/// `kind`): what a watch of the cluster sees, whether or not any audit event reported it.
/// Objects of other kinds, or that are not valid objects of their kind, have no findings.
pub fn observed(object: &str, config: &Config) -> Vec<Finding> {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    let Ok(Kind { kind }) = serde_json::from_str::<Kind>(object) else {
        return Vec::new();
    };
    let Some((kind, field_prefix)) = POD_SPEC_LOCATIONS.iter().map(|(_, location)| *location).find(|(k, _)| *k == kind)
    else {
        return Vec::new();
    };
    let Some((metadata, spec)) = read_pod_spec(kind, object) else {
        return Vec::new();
    };
    let write = PodSpecWrite {
        event: None,
        kind,
        field_prefix,
        namespace: metadata.namespace,
        name: metadata.name,
        spec,
        derived_from: None,
    };
    let mut findings = Vec::new();
    privileged_containers(&write, config, &mut findings);
    sensitive_mounts(&write, config, &mut findings);
    kube_system_containers(&write, config, &mut findings);
    mining_containers(&write, config, &mut findings);
    findings
}

impl PodSpecWrite<'_> {
    fn field(&self, list: ContainerList, index: usize, rest: &str) -> String {
        format!("{}.{}[{index}]{rest}", self.field_prefix, list.field())
    }

    fn object(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    fn finding(&self, alert_type: &'static str, container: &Container, field: String, summary: String) -> Finding {
        let mut evidence = self.event.map(request_evidence).unwrap_or_default();
        evidence.push(("object".to_owned(), self.object()));
        evidence.push(("field".to_owned(), field));
        evidence.push(("image".to_owned(), container.image.clone()));
        if let Some(owner) = self.derived_from {
            evidence.push(("controlledBy".to_owned(), owner.describe()));
        }
        let is_pod = self.kind == "Pod";
        // A pod a controller made is one of its owner's: the owner is what to fix.
        let (workload_kind, workload_name) = match (is_pod, self.derived_from) {
            (false, _) => (Some(self.kind.to_owned()), Some(self.name.clone())),
            (true, Some(owner)) => (Some(owner.kind.clone()), Some(owner.name.clone())),
            (true, None) => (None, None),
        };
        Finding {
            alert_type,
            entities: Entities {
                namespace: non_empty(&self.namespace),
                pod: is_pod.then(|| self.name.clone()),
                container: non_empty(&container.name),
                image: non_empty(&container.image),
                node: non_empty(&self.spec.node_name),
                service_account: non_empty(&self.spec.service_account_name),
                workload_kind,
                workload_name,
                user: self.event.and_then(acting_user),
            },
            evidence,
            summary: match self.event {
                Some(event) => format!(
                    "{summary}, in {} {} by {}",
                    self.object(),
                    past_tense(&event.verb),
                    event.effective_user().username
                ),
                None => format!("{summary}, in {} as the cluster holds it", self.object()),
            },
        }
    }

    /// A cluster component where it belongs: a system image in a system namespace.
    fn is_system_component(&self, container: &Container, config: &Config) -> bool {
        config.system_namespaces.contains(&self.namespace)
            && image::matches_any(&config.system_images, &image::repository(&container.image)).is_some()
    }
}

fn privileged_containers(write: &PodSpecWrite, config: &Config, findings: &mut Vec<Finding>) {
    for (list, index, container) in write.spec.all_containers() {
        if container.privileged() && !write.is_system_component(container, config) {
            findings.push(write.finding(
                PRIVILEGED_CONTAINER,
                container,
                write.field(list, index, ".securityContext.privileged"),
                format!("Privileged container {} ({})", container.name, container.image),
            ));
        }
    }
}

fn sensitive_mounts(write: &PodSpecWrite, config: &Config, findings: &mut Vec<Finding>) {
    let sensitive: HashMap<&str, (usize, &str, &str)> = write
        .spec
        .volumes
        .iter()
        .enumerate()
        .filter_map(|(i, volume)| {
            let path = &volume.host_path.as_ref()?.path;
            let listed = sensitive_path(path, &config.sensitive_host_paths)?;
            Some((volume.name.as_str(), (i, path.as_str(), listed)))
        })
        .collect();
    if sensitive.is_empty() {
        return;
    }
    for (list, index, container) in write.spec.all_containers() {
        if write.is_system_component(container, config) {
            continue;
        }
        let mounts: Vec<_> = container
            .volume_mounts
            .iter()
            .enumerate()
            .filter_map(|(m, mount)| sensitive.get(mount.name.as_str()).map(|v| (m, mount, *v)))
            .collect();
        let Some(&(mount_index, mount, (volume_index, path, listed))) = mounts.first() else {
            continue;
        };
        let mut finding = write.finding(
            SENSITIVE_MOUNT,
            container,
            write.field(list, index, &format!(".volumeMounts[{mount_index}]")),
            format!(
                "Container {} mounts the node's {path} at {}{}",
                container.name,
                mount.mount_path,
                if mounts.len() > 1 {
                    format!(" (and {} more sensitive mounts)", mounts.len() - 1)
                } else {
                    String::new()
                }
            ),
        );
        finding.evidence.push((
            "hostPath".to_owned(),
            format!("{}.volumes[{volume_index}].hostPath.path: {path}", write.field_prefix),
        ));
        finding.evidence.push(("sensitivePath".to_owned(), listed.to_owned()));
        for (_, other, (_, other_path, _)) in &mounts[1..] {
            finding.evidence.push(("alsoMounts".to_owned(), format!("{other_path} at {}", other.mount_path)));
        }
        findings.push(finding);
    }
}

/// K8S_SensitiveMount for a PersistentVolume created with a hostPath at a sensitive path:
/// whichever pod mounts a claim bound to it gets the node's files, through a pod spec with no
/// hostPath of its own (one that Pod Security's baseline admits). The apiserver refuses
/// changes to a PersistentVolume's source, so its creation is the one write that says it; the
/// binder controller's updates (claimRef, phase) would only repeat it.
///
/// The audit events alone cannot say which pods mount it: a claim binds to it and pods name
/// the claim in writes of their own, possibly before the log begins. The cluster-watch part
/// will follow PersistentVolumes, claims and the pods that mount them (as the exposure rules
/// follow workloads), and name those pods and containers.
pub fn persistent_volume(event: &Event, config: &Config) -> Vec<Finding> {
    #[derive(Default, serde::Deserialize)]
    #[serde(default)]
    struct PersistentVolume {
        metadata: crate::objects::ObjectMeta,
        spec: PersistentVolumeSpec,
    }
    #[derive(Default, serde::Deserialize)]
    #[serde(rename_all = "camelCase", default)]
    struct PersistentVolumeSpec {
        host_path: Option<crate::objects::HostPathSource>,
        claim_ref: Option<ClaimRef>,
    }
    #[derive(Default, serde::Deserialize)]
    #[serde(default)]
    struct ClaimRef {
        namespace: String,
        name: String,
    }
    let subresource = event.object_ref.as_ref().map_or("", |o| o.subresource.as_str());
    if event.verb != "create" || !subresource.is_empty() || !took_effect(event) {
        return Vec::new();
    }
    let Some(volume) = written_object(event).and_then(|o| serde_json::from_str::<PersistentVolume>(o).ok()) else {
        return Vec::new();
    };
    let Some(path) = volume.spec.host_path.map(|h| h.path) else {
        return Vec::new();
    };
    let Some(listed) = sensitive_path(&path, &config.sensitive_host_paths) else {
        return Vec::new();
    };
    let name = non_empty(&volume.metadata.name).or_else(|| event.object_ref.as_ref().map(|o| o.name.clone()));
    let object = format!("PersistentVolume {}", name.as_deref().unwrap_or_default());
    let claim = volume.spec.claim_ref.filter(|c| !c.name.is_empty());
    let mut evidence = request_evidence(event);
    evidence.push(("object".to_owned(), object.clone()));
    evidence.push(("field".to_owned(), "spec.hostPath.path".to_owned()));
    evidence.push(("hostPath".to_owned(), format!("spec.hostPath.path: {path}")));
    evidence.push(("sensitivePath".to_owned(), listed.to_owned()));
    if let Some(claim) = &claim {
        evidence.push(("claimRef".to_owned(), format!("{}/{}", claim.namespace, claim.name)));
    }
    let claimed_by = match &claim {
        Some(c) => format!("the pods that mount claim {}/{}", c.namespace, c.name),
        None => "the pods whose claim binds to it".to_owned(),
    };
    vec![Finding {
        alert_type: SENSITIVE_MOUNT,
        entities: Entities {
            // A claim reserved in advance says where the node's files will be mounted.
            namespace: claim.as_ref().and_then(|c| non_empty(&c.namespace)),
            workload_kind: Some("PersistentVolume".to_owned()),
            workload_name: name,
            user: acting_user(event),
            ..Entities::default()
        },
        evidence,
        summary: format!(
            "{object} gives the node's {path} to {claimed_by}, {} by {}",
            past_tense(&event.verb),
            event.effective_user().username
        ),
    }]
}

/// The listed path that makes `path` sensitive: the same path, one above it (a parent of a
/// sensitive path exposes it), or one below it. `hostPath` cannot contain `..`
/// (the apiserver refuses it), so a lexical comparison is exact.
fn sensitive_path<'l>(path: &str, listed: &'l [String]) -> Option<&'l str> {
    let path = normalise(path);
    listed.iter().map(String::as_str).find(|sensitive| {
        let sensitive = normalise(sensitive);
        within(&path, &sensitive) || within(&sensitive, &path)
    })
}

/// Whether `inner` is `outer` or below it.
fn within(inner: &str, outer: &str) -> bool {
    outer == "/" || inner == outer || inner.strip_prefix(outer).is_some_and(|rest| rest.starts_with('/'))
}

fn normalise(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    format!("/{}", parts.join("/"))
}

fn kube_system_containers(write: &PodSpecWrite, config: &Config, findings: &mut Vec<Finding>) {
    if !config.system_namespaces.contains(&write.namespace) {
        return;
    }
    for (list, index, container) in write.spec.all_containers() {
        // A patch may name a container without its image; the object shows it in full.
        if container.image.is_empty() || write.is_system_component(container, config) {
            continue;
        }
        let mut finding = write.finding(
            KUBE_SYSTEM_CONTAINER,
            container,
            write.field(list, index, ".image"),
            format!("Container {} runs {}, which is not a known system image", container.name, container.image),
        );
        finding.evidence.push(("repository".to_owned(), image::repository(&container.image)));
        findings.push(finding);
    }
}

fn mining_containers(write: &PodSpecWrite, config: &Config, findings: &mut Vec<Finding>) {
    for (list, index, container) in write.spec.all_containers() {
        let image_match = (!container.image.is_empty())
            .then(|| image::matches_any(&config.mining_images, &image::repository(&container.image)))
            .flatten();
        let argument_match = || {
            container.command.iter().chain(&container.args).find_map(|argument| {
                let lower = argument.to_ascii_lowercase();
                config.mining_arguments.iter().find(|m| lower.contains(&m.to_ascii_lowercase())).map(|m| (argument, m))
            })
        };
        let (field, reason) = match (image_match, argument_match()) {
            (Some(pattern), _) => (".image", format!("image matches {pattern}")),
            (None, Some((argument, pattern))) => (".args", format!("argument {argument:?} contains {pattern}")),
            (None, None) => continue,
        };
        let mut finding = write.finding(
            MALICIOUS_CONTAINER_IMAGE,
            container,
            write.field(list, index, field),
            format!("Container {} looks like a digital currency miner: {reason}", container.name),
        );
        finding.evidence.push(("reason".to_owned(), reason));
        findings.push(finding);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::test_support::{event, evidence, with_request, with_response};

    fn config() -> Config {
        Config::default()
    }

    /// The rules over one write, as the engine runs them when it has not read the template
    /// the write was made from.
    fn rules_over(event: &Event, config: &Config) -> Vec<Finding> {
        match template_write(event, config) {
            Some(TemplateWrite::Read(written)) => evaluate(&written, Reading::Changes, config).unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    fn derived_from(event: &Event) -> Option<Owner> {
        match template_write(event, &config()) {
            Some(TemplateWrite::Read(written)) => written.derived_from,
            _ => None,
        }
    }

    fn alert_types(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.alert_type).collect()
    }

    const PRIVILEGED_POD: &str = r#"{"kind":"Pod","apiVersion":"v1","metadata":{"name":"debug","namespace":"shop"},
        "spec":{"serviceAccountName":"default","nodeName":"node-1","containers":[
          {"name":"app","image":"nginx:1.27"},
          {"name":"shell","image":"ubuntu:24.04","securityContext":{"privileged":true}}]}}"#;

    #[test]
    fn a_privileged_pod_names_the_container_and_field() {
        let e = with_response(event("create", "", "pods", "shop", "debug", "mallory"), PRIVILEGED_POD);
        let findings = rules_over(&e, &config());
        assert_eq!(alert_types(&findings), [PRIVILEGED_CONTAINER]);
        let f = &findings[0];
        assert_eq!(evidence(f, "field"), Some("spec.containers[1].securityContext.privileged"));
        assert_eq!(f.entities.container.as_deref(), Some("shell"));
        assert_eq!(f.entities.pod.as_deref(), Some("debug"));
        assert_eq!(f.entities.node.as_deref(), Some("node-1"));
        assert_eq!(f.entities.user.as_deref(), Some("mallory"));
        assert_eq!(evidence(f, "sourceIPs"), Some("192.0.2.10"));
        assert!(f.summary.contains("in Pod shop/debug created by mallory"), "{}", f.summary);
    }

    #[test]
    fn privileged_init_containers_of_cronjob_templates_count() {
        let cronjob = r#"{"kind":"CronJob","metadata":{"name":"nightly","namespace":"ops"},"spec":{"schedule":"0 2 * * *",
            "jobTemplate":{"spec":{"template":{"spec":{"initContainers":[{"name":"setup","image":"busybox",
            "securityContext":{"privileged":true}}],"containers":[{"name":"job","image":"busybox"}]}}}}}}"#;
        let e = with_request(event("create", "batch", "cronjobs", "ops", "nightly", "alice"), cronjob);
        let findings = rules_over(&e, &config());
        assert_eq!(alert_types(&findings), [PRIVILEGED_CONTAINER]);
        assert_eq!(
            evidence(&findings[0], "field"),
            Some("spec.jobTemplate.spec.template.spec.initContainers[0].securityContext.privileged")
        );
        assert_eq!(findings[0].entities.workload_kind.as_deref(), Some("CronJob"));
    }

    #[test]
    fn failed_and_dry_run_writes_are_not_findings() {
        let mut forbidden = with_request(event("create", "", "pods", "shop", "debug", "mallory"), PRIVILEGED_POD);
        forbidden.response_status.as_mut().unwrap().code = Some(403);
        assert!(template_write(&forbidden, &config()).is_none());

        let mut dry_run = with_request(event("create", "", "pods", "shop", "debug", "mallory"), PRIVILEGED_POD);
        dry_run.request_uri.push_str("?dryRun=All");
        assert!(template_write(&dry_run, &config()).is_none());
    }

    const REPLICASET_CONTROLLER: &str = "system:serviceaccount:kube-system:replicaset-controller";

    #[test]
    fn a_pod_a_controller_made_names_its_owner_and_the_revision() {
        let owned = PRIVILEGED_POD.replace(
            r#""namespace":"shop"}"#,
            r#""namespace":"shop","labels":{"app":"web","pod-template-hash":"5d4f8b9c7"},
               "ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d4f8b9c7","uid":"u","controller":true}]}"#,
        );
        let from_replicaset = with_request(event("create", "", "pods", "shop", "", REPLICASET_CONTROLLER), &owned);
        let owner = derived_from(&from_replicaset).expect("made by the ReplicaSet controller");
        assert_eq!(
            owner,
            Owner { kind: "ReplicaSet".into(), name: "web-5d4f8b9c7".into(), revision: "5d4f8b9c7".into() }
        );
        assert_eq!(owner.maker(), Some(("Deployment", "web")));
        // Read (the engine decides whether to), it names its owner as the workload to fix.
        let findings = rules_over(&from_replicaset, &config());
        assert_eq!(alert_types(&findings), [PRIVILEGED_CONTAINER]);
        assert_eq!(evidence(&findings[0], "controlledBy"), Some("ReplicaSet web-5d4f8b9c7 (of Deployment web)"));
        let e = &findings[0].entities;
        assert_eq!(
            (e.pod.as_deref(), e.workload_kind.as_deref(), e.workload_name.as_deref()),
            (Some("debug"), Some("ReplicaSet"), Some("web-5d4f8b9c7"))
        );
        // The same pod, owned but created by someone else, is theirs.
        let impostor = with_request(event("create", "", "pods", "shop", "", "mallory"), &owned);
        assert_eq!(derived_from(&impostor), None);
        assert_eq!(alert_types(&rules_over(&impostor, &config())), [PRIVILEGED_CONTAINER]);
        // A controller's object without a controller owner is the controller's own.
        let unowned = with_request(event("create", "", "pods", "shop", "", REPLICASET_CONTROLLER), PRIVILEGED_POD);
        assert_eq!(derived_from(&unowned), None);
    }

    #[test]
    fn makers_are_told_by_the_names_their_controllers_give() {
        let owner = |kind: &str, name: &str, revision: &str| Owner {
            kind: kind.into(),
            name: name.into(),
            revision: revision.into(),
        };
        assert_eq!(owner("Job", "nightly-29412345", "").maker(), Some(("CronJob", "nightly")));
        assert_eq!(owner("Job", "migrate", "").maker(), None);
        assert_eq!(owner("Job", "db-migrate-v2", "").maker(), None);
        assert_eq!(owner("ReplicaSet", "web-5d4f8b9c7", "6c9d8f7b5").maker(), None, "not its hash");
        assert_eq!(owner("ReplicaSet", "web", "").maker(), None, "no pod-template-hash: not a Deployment's");
        assert_eq!(owner("DaemonSet", "agent", "7f9c").maker(), None);
    }

    #[test]
    fn mirror_pods_are_not_read_and_deletions_and_bodiless_writes_forget() {
        let mirror = PRIVILEGED_POD.replace(
            r#""namespace":"shop"}"#,
            r#""namespace":"shop","annotations":{"kubernetes.io/config.mirror":"0a1b"},
               "ownerReferences":[{"apiVersion":"v1","kind":"Node","name":"node-1","uid":"n","controller":true}]}"#,
        );
        let e = with_request(event("create", "", "pods", "shop", "", "system:node:node-1"), &mirror);
        assert!(template_write(&e, &config()).is_none());
        let web = TemplateKey { namespace: "shop".into(), kind: "Deployment".into(), name: "web".into() };
        let deleted = event("delete", "apps", "deployments", "shop", "web", "alice");
        assert!(matches!(template_write(&deleted, &config()), Some(TemplateWrite::Unseen(k)) if k == web));
        let metadata_only = event("patch", "apps", "deployments", "shop", "web", "alice");
        assert!(matches!(template_write(&metadata_only, &config()), Some(TemplateWrite::Unseen(k)) if k == web));
        let pod_deleted = event("delete", "", "pods", "shop", "debug", "alice");
        assert!(template_write(&pod_deleted, &config()).is_none(), "pods have no template to forget");
    }

    #[test]
    fn patches_count_only_when_they_touch_the_field() {
        let daemonset = r#"{"kind":"DaemonSet","metadata":{"name":"agent","namespace":"monitoring"},"spec":{"template":
            {"spec":{"containers":[{"name":"agent","image":"example.com/agent:2","securityContext":{"privileged":true}}]}}}}"#;
        let restart = r#"{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2025-06-01T12:00:00Z"}}}}}"#;
        let e = with_response(
            with_request(event("patch", "apps", "daemonsets", "monitoring", "agent", "alice"), restart),
            daemonset,
        );
        assert!(rules_over(&e, &config()).is_empty(), "a rollout restart of an already privileged DaemonSet");

        let escalate =
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"agent","securityContext":{"privileged":true}}]}}}}"#;
        let e = with_response(
            with_request(event("patch", "apps", "daemonsets", "monitoring", "agent", "alice"), escalate),
            daemonset,
        );
        assert_eq!(alert_types(&rules_over(&e, &config())), [PRIVILEGED_CONTAINER]);
    }

    #[test]
    fn sensitive_host_paths_include_parents_and_children() {
        let listed = config().sensitive_host_paths;
        assert_eq!(sensitive_path("/", &listed), Some("/etc/kubernetes"));
        assert_eq!(sensitive_path("/var/run/", &listed), Some("/var/run/docker.sock"));
        assert_eq!(sensitive_path("/etc/kubernetes/pki", &listed), Some("/etc/kubernetes"));
        assert_eq!(sensitive_path("//var//lib/kubelet", &listed), Some("/var/lib/kubelet"));
        assert_eq!(sensitive_path("/etc/localtime", &listed), None);
        assert_eq!(sensitive_path("/var/log", &listed), None);
        assert_eq!(sensitive_path("/var/lib/kubeletx", &listed), None);
    }

    #[test]
    fn a_docker_socket_mount_is_sensitive_and_a_log_mount_is_not() {
        let deployment = r#"{"kind":"Deployment","metadata":{"name":"ci","namespace":"build"},"spec":{"template":{"spec":{
            "volumes":[{"name":"logs","hostPath":{"path":"/var/log"}},{"name":"sock","hostPath":{"path":"/var/run/docker.sock","type":"Socket"}}],
            "containers":[{"name":"runner","image":"ci/runner","volumeMounts":[{"name":"logs","mountPath":"/logs"},{"name":"sock","mountPath":"/var/run/docker.sock"}]},
                          {"name":"shipper","image":"fluent/fluent-bit","volumeMounts":[{"name":"logs","mountPath":"/var/log"}]}]}}}}"#;
        let e = with_request(event("create", "apps", "deployments", "build", "ci", "alice"), deployment);
        let findings = rules_over(&e, &config());
        assert_eq!(alert_types(&findings), [SENSITIVE_MOUNT]);
        assert_eq!(evidence(&findings[0], "field"), Some("spec.template.spec.containers[0].volumeMounts[1]"));
        assert_eq!(
            evidence(&findings[0], "hostPath"),
            Some("spec.template.spec.volumes[1].hostPath.path: /var/run/docker.sock")
        );
    }

    #[test]
    fn system_components_in_kube_system_raise_nothing() {
        // kube-proxy as kubeadm installs it: privileged, host mounts, registry.k8s.io image.
        let kube_proxy = r#"{"kind":"DaemonSet","metadata":{"name":"kube-proxy","namespace":"kube-system"},"spec":{"template":{"spec":{
            "hostNetwork":true,"volumes":[{"name":"lib-modules","hostPath":{"path":"/lib/modules"}},{"name":"kubelet","hostPath":{"path":"/var/lib/kubelet"}}],
            "containers":[{"name":"kube-proxy","image":"registry.k8s.io/kube-proxy:v1.33.1","securityContext":{"privileged":true},
            "volumeMounts":[{"name":"lib-modules","mountPath":"/lib/modules"},{"name":"kubelet","mountPath":"/var/lib/kubelet"}]}]}}}}"#;
        let e = with_request(
            event("create", "apps", "daemonsets", "kube-system", "kube-proxy", "kubernetes-admin"),
            kube_proxy,
        );
        assert!(rules_over(&e, &config()).is_empty());
        // The same image outside a system namespace is not exempt.
        let e = with_request(
            event("create", "apps", "daemonsets", "shop", "kube-proxy", "mallory"),
            &kube_proxy.replace("kube-system", "shop"),
        );
        assert_eq!(alert_types(&rules_over(&e, &config())), [PRIVILEGED_CONTAINER, SENSITIVE_MOUNT]);
    }

    #[test]
    fn an_unknown_image_in_kube_system_is_reported_even_when_added_by_debug() {
        let pod = r#"{"kind":"Pod","metadata":{"name":"coredns-6f6b679f8f-x2x9k","namespace":"kube-system"},"spec":{
            "containers":[{"name":"coredns","image":"registry.k8s.io/coredns/coredns:v1.12.0"}],
            "ephemeralContainers":[{"name":"debugger-8xk2p","image":"docker.io/library/alpine:3.20"}]}}"#;
        let patch = r#"{"spec":{"ephemeralContainers":[{"name":"debugger-8xk2p","image":"alpine:3.20","targetContainerName":"coredns"}]}}"#;
        let mut e = with_response(
            with_request(event("patch", "", "pods", "kube-system", "coredns-6f6b679f8f-x2x9k", "alice"), patch),
            pod,
        );
        e.object_ref.as_mut().unwrap().subresource = "ephemeralcontainers".into();
        let findings = rules_over(&e, &config());
        assert_eq!(alert_types(&findings), [KUBE_SYSTEM_CONTAINER]);
        assert_eq!(evidence(&findings[0], "field"), Some("spec.ephemeralContainers[0].image"));
        assert_eq!(evidence(&findings[0], "repository"), Some("docker.io/library/alpine"));
    }

    #[test]
    fn miners_are_recognised_by_image_or_pool_argument() {
        let by_image = r#"{"metadata":{"name":"m","namespace":"shop"},"spec":{"template":{"spec":{"containers":[{"name":"w","image":"metal3d/xmrig:latest"}]}}}}"#;
        let e = with_request(event("create", "apps", "deployments", "shop", "m", "mallory"), by_image);
        let findings = rules_over(&e, &config());
        assert_eq!(alert_types(&findings), [MALICIOUS_CONTAINER_IMAGE]);
        assert_eq!(evidence(&findings[0], "reason"), Some("image matches *xmrig*"));

        let by_pool = r#"{"metadata":{"name":"m","namespace":"shop"},"spec":{"containers":[{"name":"w","image":"ubuntu",
            "command":["/tmp/x"],"args":["-o","stratum+tcp://pool.example:3333"]}]}}"#;
        let e = with_request(event("create", "", "pods", "shop", "m", "mallory"), by_pool);
        assert_eq!(alert_types(&rules_over(&e, &config())), [MALICIOUS_CONTAINER_IMAGE]);

        let benign = r#"{"metadata":{"name":"m","namespace":"shop"},"spec":{"containers":[{"name":"w","image":"minio/minio","args":["server","/data"]}]}}"#;
        let e = with_request(event("create", "", "pods", "shop", "m", "alice"), benign);
        assert!(rules_over(&e, &config()).is_empty());
    }

    #[test]
    fn a_persistent_volume_on_a_sensitive_host_path_is_a_sensitive_mount() {
        let volume = r#"{"kind":"PersistentVolume","apiVersion":"v1","metadata":{"name":"host-root"},"spec":{
            "capacity":{"storage":"1Gi"},"accessModes":["ReadWriteOnce"],"hostPath":{"path":"/","type":""},"claimRef":{"namespace":"shop","name":"data"}}}"#;
        let e = with_response(event("create", "", "persistentvolumes", "", "host-root", "mallory"), volume);
        let findings = persistent_volume(&e, &config());
        assert_eq!(alert_types(&findings), [SENSITIVE_MOUNT]);
        let f = &findings[0];
        assert_eq!(evidence(f, "hostPath"), Some("spec.hostPath.path: /"));
        assert_eq!(evidence(f, "sensitivePath"), Some("/etc/kubernetes"));
        assert_eq!(evidence(f, "claimRef"), Some("shop/data"));
        assert_eq!(
            (f.entities.workload_kind.as_deref(), f.entities.workload_name.as_deref(), f.entities.namespace.as_deref()),
            (Some("PersistentVolume"), Some("host-root"), Some("shop"))
        );
        assert_eq!(
            f.summary,
            "PersistentVolume host-root gives the node's / to the pods that mount claim shop/data, created by mallory"
        );
        // Unclaimed: cluster-scoped, and whichever claim binds to it.
        let unclaimed = volume.replace(r#","claimRef":{"namespace":"shop","name":"data"}"#, "");
        let e = with_request(event("create", "", "persistentvolumes", "", "host-root", "mallory"), &unclaimed);
        let findings = persistent_volume(&e, &config());
        assert_eq!(findings[0].entities.namespace, None);
        assert!(findings[0].summary.contains("to the pods whose claim binds to it"), "{}", findings[0].summary);
        // The binder controller setting claimRef, a local volume, an ordinary host path.
        let e = with_response(
            event(
                "update",
                "",
                "persistentvolumes",
                "",
                "host-root",
                "system:serviceaccount:kube-system:persistent-volume-binder",
            ),
            volume,
        );
        assert!(persistent_volume(&e, &config()).is_empty());
        let local = volume.replace(r#""hostPath":{"path":"/","type":""}"#, r#""local":{"path":"/mnt/disks/ssd1"}"#);
        let e = with_response(event("create", "", "persistentvolumes", "", "host-root", "alice"), &local);
        assert!(persistent_volume(&e, &config()).is_empty());
        let data = volume.replace(r#""path":"/""#, r#""path":"/opt/local-path-provisioner/pvc-1""#);
        let e = with_response(event("create", "", "persistentvolumes", "", "pvc-1", "alice"), &data);
        assert!(persistent_volume(&e, &config()).is_empty());
    }

    #[test]
    fn status_and_scale_subresources_are_not_pod_specs() {
        let mut e = with_request(event("update", "", "pods", "shop", "debug", "system:node:node-1"), PRIVILEGED_POD);
        e.object_ref.as_mut().unwrap().subresource = "status".into();
        assert!(rules_over(&e, &config()).is_empty());
    }

    #[test]
    fn objects_as_the_cluster_holds_them_are_judged_like_writes_without_a_request() {
        let findings = observed(PRIVILEGED_POD, &config());
        assert_eq!(findings.len(), 1);
        let f = &findings[0];
        assert_eq!((f.alert_type, f.entities.pod.as_deref()), (PRIVILEGED_CONTAINER, Some("debug")));
        assert_eq!(f.entities.user, None);
        assert_eq!(evidence(f, "field"), Some("spec.containers[1].securityContext.privileged"));
        assert_eq!(evidence(f, "auditID"), None);
        assert!(f.summary.ends_with("in Pod shop/debug as the cluster holds it"), "{}", f.summary);
        // A pod a controller made is judged too: the watch decides what its owner covers.
        let owned = PRIVILEGED_POD.replace(
            r#""namespace":"shop"}"#,
            r#""namespace":"shop","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d4f","uid":"u","controller":true}]}"#,
        );
        assert_eq!(observed(&owned, &config()).len(), 1);
        let deployment = r#"{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"shop"},
            "spec":{"template":{"spec":{"volumes":[{"name":"root","hostPath":{"path":"/"}}],
              "containers":[{"name":"app","image":"nginx","volumeMounts":[{"name":"root","mountPath":"/host"}]}]}}}}"#;
        let findings = observed(deployment, &config());
        assert_eq!(findings.iter().map(|f| f.alert_type).collect::<Vec<_>>(), [SENSITIVE_MOUNT]);
        assert_eq!(findings[0].entities.workload_kind.as_deref(), Some("Deployment"));
        assert!(observed(r#"{"kind":"ConfigMap","metadata":{"name":"x"}}"#, &config()).is_empty());
        assert!(observed("not json", &config()).is_empty());
    }
}
