//! Rules on what a pod runs: K8S_PrivilegedContainer, K8S_SensitiveMount,
//! K8S_KubeSystemContainer and K8S_MaliciousContainerImage.
//!
//! They read pods and the pod templates of Deployments, DaemonSets, StatefulSets,
//! ReplicaSets, ReplicationControllers, Jobs and CronJobs, written by `create`, `update` or
//! `patch` (an attacker does not have to `create pod`), and ephemeral containers added to a
//! pod (`kubectl debug`). Every container counts: regular, init and ephemeral.
//!
//! Not seen again: the pods and ReplicaSets that kube-controller-manager derives from a
//! workload already checked when it was written, and the mirror pods that kubelets publish
//! for their static pods; a patch that does not touch the field a rule is about (a rollout
//! restart of a DaemonSet that was privileged all along).

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
    Some(match (group, resource) {
        ("", "pods") => ("Pod", "spec"),
        ("apps", "deployments") => ("Deployment", "spec.template.spec"),
        ("apps", "daemonsets") => ("DaemonSet", "spec.template.spec"),
        ("apps", "statefulsets") => ("StatefulSet", "spec.template.spec"),
        ("apps", "replicasets") => ("ReplicaSet", "spec.template.spec"),
        ("", "replicationcontrollers") => ("ReplicationController", "spec.template.spec"),
        ("batch", "jobs") => ("Job", "spec.template.spec"),
        ("batch", "cronjobs") => ("CronJob", "spec.jobTemplate.spec.template.spec"),
        _ => return None,
    })
}

/// A pod spec as written by one request.
struct PodSpecWrite<'a> {
    event: &'a Event,
    kind: &'static str,
    field_prefix: &'static str,
    namespace: String,
    name: String,
    spec: PodSpec,
}

/// All four rules over one write of a pod or pod template. The engine calls it for the
/// resources of [`pod_spec_location`].
pub fn evaluate(event: &Event, config: &Config) -> Vec<Finding> {
    let Some(write) = pod_spec_write(event, config) else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    if write_touches(event, &["privileged"]) {
        privileged_containers(&write, config, &mut findings);
    }
    if write_touches(event, &["hostPath", "volumeMounts"]) {
        sensitive_mounts(&write, config, &mut findings);
    }
    if write_touches(event, &["image", "command", "args"]) {
        kube_system_containers(&write, config, &mut findings);
        mining_containers(&write, config, &mut findings);
    }
    findings
}

fn pod_spec_write<'a>(event: &'a Event, config: &Config) -> Option<PodSpecWrite<'a>> {
    let object_ref = event.object_ref.as_ref()?;
    let (kind, field_prefix) = pod_spec_location(&object_ref.api_group, &object_ref.resource)?;
    let subresource_allowed =
        object_ref.subresource.is_empty() || (kind == "Pod" && object_ref.subresource == "ephemeralcontainers");
    if !matches!(&*event.verb, "create" | "update" | "patch") || !subresource_allowed || !took_effect(event) {
        return None;
    }
    let object = written_object(event)?;
    if derived_before_reading(event, kind, object, config) {
        return None;
    }
    // A body that is not this kind of object (a JSON patch without the recorded result) is
    // not read: there is nothing to say about fields it does not show.
    let (metadata, spec) = match kind {
        "Pod" => serde_json::from_str::<PodDocument>(object).ok().map(|d| (d.metadata, d.spec))?,
        "CronJob" => serde_json::from_str::<CronJobDocument>(object)
            .ok()
            .map(|d| (d.metadata, d.spec.job_template.spec.template.spec))?,
        _ => serde_json::from_str::<TemplatedDocument>(object).ok().map(|d| (d.metadata, d.spec.template.spec))?,
    };
    let namespace = if metadata.namespace.is_empty() { object_ref.namespace.clone() } else { metadata.namespace };
    let name = if metadata.name.is_empty() { object_ref.name.clone() } else { metadata.name };
    Some(PodSpecWrite { event, kind, field_prefix, namespace, name, spec })
}

/// Objects that the control plane derives from others: their owner was checked when it was
/// written, so they would only repeat its findings. Decided from the metadata alone, before
/// the spec is read: controllers write most pods, and a kubelet every mirror pod.
fn derived_before_reading(event: &Event, kind: &str, object: &str, config: &Config) -> bool {
    let user = &event.user.username;
    let controller = config.workload_controllers.iter().any(|c| c == user);
    let node = kind == "Pod" && user.starts_with("system:node:");
    if !controller && !node {
        return false;
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
        annotations: BTreeMap<String, serde::de::IgnoredAny>,
    }
    let Ok(Owners { metadata }) = serde_json::from_str::<Owners>(object) else {
        return false;
    };
    let owned = metadata.owner_references.iter().any(|o| o.controller == Some(true));
    (controller && owned) || (node && metadata.annotations.contains_key(MIRROR_POD_ANNOTATION))
}

impl PodSpecWrite<'_> {
    fn field(&self, list: ContainerList, index: usize, rest: &str) -> String {
        format!("{}.{}[{index}]{rest}", self.field_prefix, list.field())
    }

    fn object(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    fn finding(&self, alert_type: &'static str, container: &Container, field: String, summary: String) -> Finding {
        let mut evidence = request_evidence(self.event);
        evidence.push(("object".to_owned(), self.object()));
        evidence.push(("field".to_owned(), field));
        evidence.push(("image".to_owned(), container.image.clone()));
        let is_pod = self.kind == "Pod";
        Finding {
            alert_type,
            entities: Entities {
                namespace: non_empty(&self.namespace),
                pod: is_pod.then(|| self.name.clone()),
                container: non_empty(&container.name),
                image: non_empty(&container.image),
                node: non_empty(&self.spec.node_name),
                service_account: non_empty(&self.spec.service_account_name),
                workload_kind: (!is_pod).then(|| self.kind.to_owned()),
                workload_name: (!is_pod).then(|| self.name.clone()),
                user: acting_user(self.event),
            },
            evidence,
            summary: format!(
                "{summary}, in {} {} by {}",
                self.object(),
                past_tense(&self.event.verb),
                self.event.effective_user().username
            ),
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
        let findings = evaluate(&e, &config());
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
        let findings = evaluate(&e, &config());
        assert_eq!(alert_types(&findings), [PRIVILEGED_CONTAINER]);
        assert_eq!(
            evidence(&findings[0], "field"),
            Some("spec.jobTemplate.spec.template.spec.initContainers[0].securityContext.privileged")
        );
        assert_eq!(findings[0].entities.workload_kind.as_deref(), Some("CronJob"));
    }

    #[test]
    fn failed_dry_run_and_derived_writes_are_not_findings() {
        let mut forbidden = with_request(event("create", "", "pods", "shop", "debug", "mallory"), PRIVILEGED_POD);
        forbidden.response_status.as_mut().unwrap().code = Some(403);
        assert!(evaluate(&forbidden, &config()).is_empty());

        let mut dry_run = with_request(event("create", "", "pods", "shop", "debug", "mallory"), PRIVILEGED_POD);
        dry_run.request_uri.push_str("?dryRun=All");
        assert!(evaluate(&dry_run, &config()).is_empty());

        let owned = PRIVILEGED_POD.replace(
            r#""namespace":"shop"}"#,
            r#""namespace":"shop","ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-5d4f","uid":"u","controller":true}]}"#,
        );
        let from_replicaset = with_request(
            event("create", "", "pods", "shop", "", "system:serviceaccount:kube-system:replicaset-controller"),
            &owned,
        );
        assert!(evaluate(&from_replicaset, &config()).is_empty());
        // The same pod, owned but created by someone else, is theirs.
        let impostor = with_request(event("create", "", "pods", "shop", "", "mallory"), &owned);
        assert_eq!(alert_types(&evaluate(&impostor, &config())), [PRIVILEGED_CONTAINER]);
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
        assert!(evaluate(&e, &config()).is_empty(), "a rollout restart of an already privileged DaemonSet");

        let escalate =
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"agent","securityContext":{"privileged":true}}]}}}}"#;
        let e = with_response(
            with_request(event("patch", "apps", "daemonsets", "monitoring", "agent", "alice"), escalate),
            daemonset,
        );
        assert_eq!(alert_types(&evaluate(&e, &config())), [PRIVILEGED_CONTAINER]);
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
        let findings = evaluate(&e, &config());
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
        assert!(evaluate(&e, &config()).is_empty());
        // The same image outside a system namespace is not exempt.
        let e = with_request(
            event("create", "apps", "daemonsets", "shop", "kube-proxy", "mallory"),
            &kube_proxy.replace("kube-system", "shop"),
        );
        assert_eq!(alert_types(&evaluate(&e, &config())), [PRIVILEGED_CONTAINER, SENSITIVE_MOUNT]);
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
        let findings = evaluate(&e, &config());
        assert_eq!(alert_types(&findings), [KUBE_SYSTEM_CONTAINER]);
        assert_eq!(evidence(&findings[0], "field"), Some("spec.ephemeralContainers[0].image"));
        assert_eq!(evidence(&findings[0], "repository"), Some("docker.io/library/alpine"));
    }

    #[test]
    fn miners_are_recognised_by_image_or_pool_argument() {
        let by_image = r#"{"metadata":{"name":"m","namespace":"shop"},"spec":{"template":{"spec":{"containers":[{"name":"w","image":"metal3d/xmrig:latest"}]}}}}"#;
        let e = with_request(event("create", "apps", "deployments", "shop", "m", "mallory"), by_image);
        let findings = evaluate(&e, &config());
        assert_eq!(alert_types(&findings), [MALICIOUS_CONTAINER_IMAGE]);
        assert_eq!(evidence(&findings[0], "reason"), Some("image matches *xmrig*"));

        let by_pool = r#"{"metadata":{"name":"m","namespace":"shop"},"spec":{"containers":[{"name":"w","image":"ubuntu",
            "command":["/tmp/x"],"args":["-o","stratum+tcp://pool.example:3333"]}]}}"#;
        let e = with_request(event("create", "", "pods", "shop", "m", "mallory"), by_pool);
        assert_eq!(alert_types(&evaluate(&e, &config())), [MALICIOUS_CONTAINER_IMAGE]);

        let benign = r#"{"metadata":{"name":"m","namespace":"shop"},"spec":{"containers":[{"name":"w","image":"minio/minio","args":["server","/data"]}]}}"#;
        let e = with_request(event("create", "", "pods", "shop", "m", "alice"), benign);
        assert!(evaluate(&e, &config()).is_empty());
    }

    #[test]
    fn status_and_scale_subresources_are_not_pod_specs() {
        let mut e = with_request(event("update", "", "pods", "shop", "debug", "system:node:node-1"), PRIVILEGED_POD);
        e.object_ref.as_mut().unwrap().subresource = "status".into();
        assert!(evaluate(&e, &config()).is_empty());
    }
}
