//! The few fields of Kubernetes objects that the rules read, as small serde types: parsing
//! only these out of a request or response body skips everything else without building it.
//!
//! Also the view of the cluster that the exposure rules need ([`ClusterView`]): which pods
//! and pod templates a Service selects.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::Error;

/// `null` reads as the empty value: merge patches use it to delete a field.
fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Option::<T>::deserialize(d).map(Option::unwrap_or_default)
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ObjectMeta {
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub namespace: String,
    #[serde(deserialize_with = "null_as_default")]
    pub labels: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
}

/// An owner reference; `controller: true` marks the owner that manages the object.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct OwnerReference {
    #[serde(deserialize_with = "null_as_default")]
    pub kind: String,
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    pub controller: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct PodSpec {
    #[serde(deserialize_with = "null_as_default")]
    pub containers: Vec<Container>,
    #[serde(deserialize_with = "null_as_default")]
    pub init_containers: Vec<Container>,
    #[serde(deserialize_with = "null_as_default")]
    pub ephemeral_containers: Vec<Container>,
    #[serde(deserialize_with = "null_as_default")]
    pub volumes: Vec<Volume>,
    pub host_network: Option<bool>,
    #[serde(deserialize_with = "null_as_default")]
    pub node_name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub service_account_name: String,
}

/// Which list of the pod spec a container is in, for field paths in evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ContainerList {
    Containers,
    InitContainers,
    EphemeralContainers,
}

impl ContainerList {
    pub fn field(self) -> &'static str {
        match self {
            ContainerList::Containers => "containers",
            ContainerList::InitContainers => "initContainers",
            ContainerList::EphemeralContainers => "ephemeralContainers",
        }
    }
}

impl PodSpec {
    /// Every container with its list and index: regular, init and ephemeral alike, since
    /// each runs with the pod's volumes and may be privileged.
    pub fn all_containers(&self) -> impl Iterator<Item = (ContainerList, usize, &Container)> {
        fn list(
            kind: ContainerList,
            containers: &[Container],
        ) -> impl Iterator<Item = (ContainerList, usize, &Container)> {
            containers.iter().enumerate().map(move |(i, c)| (kind, i, c))
        }
        list(ContainerList::Containers, &self.containers)
            .chain(list(ContainerList::InitContainers, &self.init_containers))
            .chain(list(ContainerList::EphemeralContainers, &self.ephemeral_containers))
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Container {
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub image: String,
    #[serde(deserialize_with = "null_as_default")]
    pub command: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub args: Vec<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub ports: Vec<ContainerPort>,
    #[serde(deserialize_with = "null_as_default")]
    pub env: Vec<EnvVar>,
    pub security_context: Option<SecurityContext>,
    #[serde(deserialize_with = "null_as_default")]
    pub volume_mounts: Vec<VolumeMount>,
}

impl Container {
    pub fn privileged(&self) -> bool {
        self.security_context.as_ref().and_then(|s| s.privileged) == Some(true)
    }

    /// The literal value of an environment variable (values from ConfigMaps and Secrets are
    /// not in the object).
    pub fn env_value(&self, name: &str) -> Option<&str> {
        self.env.iter().find(|e| e.name == name).and_then(|e| e.value.as_deref())
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct SecurityContext {
    pub privileged: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ContainerPort {
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    pub container_port: i32,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct EnvVar {
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    pub value: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct Volume {
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    pub host_path: Option<HostPathSource>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct HostPathSource {
    #[serde(deserialize_with = "null_as_default")]
    pub path: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct VolumeMount {
    #[serde(deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(deserialize_with = "null_as_default")]
    pub mount_path: String,
}

/// A Pod as a request or response body.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PodDocument {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct PodTemplate {
    pub metadata: ObjectMeta,
    pub spec: PodSpec,
}

/// A Deployment, DaemonSet, StatefulSet, ReplicaSet, ReplicationController or Job.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TemplatedDocument {
    pub metadata: ObjectMeta,
    pub spec: TemplatedSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct TemplatedSpec {
    pub template: PodTemplate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct CronJobDocument {
    pub metadata: ObjectMeta,
    pub spec: CronJobSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct CronJobSpec {
    pub job_template: JobTemplate,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct JobTemplate {
    pub spec: TemplatedSpec,
}

/// A pod or a workload's pod template, as the exposure rules see it: what runs, with which
/// labels. Deserialise it from the JSON of a Pod, Deployment, DaemonSet, StatefulSet,
/// ReplicaSet, ReplicationController, Job or CronJob (for example
/// `serde_json::from_value(serde_json::to_value(&deployment)?)`).
#[derive(Clone, Debug)]
pub struct Workload {
    pub(crate) kind: String,
    pub(crate) namespace: String,
    pub(crate) name: String,
    /// The pod's labels, or the pod template's.
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) spec: PodSpec,
}

impl Workload {
    pub fn kind(&self) -> &str {
        &self.kind
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether a Service selector (equality on every key) selects this workload's pods.
    pub(crate) fn selected_by(&self, selector: &BTreeMap<String, String>) -> bool {
        !selector.is_empty() && selector.iter().all(|(k, v)| self.labels.get(k) == Some(v))
    }
}

impl<'de> Deserialize<'de> for Workload {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Document {
            kind: String,
            #[serde(default)]
            metadata: ObjectMeta,
            #[serde(default)]
            spec: serde_json::Value,
        }
        let document = Document::deserialize(deserializer)?;
        workload_from(document.kind, document.metadata, document.spec).map_err(serde::de::Error::custom)
    }
}

fn workload_from(kind: String, metadata: ObjectMeta, spec: serde_json::Value) -> Result<Workload, Error> {
    let (labels, spec) = match kind.as_str() {
        "Pod" => (metadata.labels, serde_json::from_value(spec).map_err(Error::MalformedWorkload)?),
        "Deployment" | "DaemonSet" | "StatefulSet" | "ReplicaSet" | "ReplicationController" | "Job" => {
            let spec: TemplatedSpec = serde_json::from_value(spec).map_err(Error::MalformedWorkload)?;
            (spec.template.metadata.labels, spec.template.spec)
        }
        "CronJob" => {
            let spec: CronJobSpec = serde_json::from_value(spec).map_err(Error::MalformedWorkload)?;
            let template = spec.job_template.spec.template;
            (template.metadata.labels, template.spec)
        }
        _ => return Err(Error::NotAWorkload(kind)),
    };
    Ok(Workload { kind, namespace: metadata.namespace, name: metadata.name, labels, spec })
}

/// What the exposure rules need to know about the cluster: the pods and workloads of a
/// namespace. The operator implements it over its informer caches; a `Vec` of
/// [`Workload`]s implements it too, for tests and offline scans.
pub trait ClusterView {
    /// The pods and workloads (with their pod templates) of `namespace`.
    fn workloads(&self, namespace: &str) -> Vec<&Workload>;
}

impl ClusterView for Vec<Workload> {
    fn workloads(&self, namespace: &str) -> Vec<&Workload> {
        self.iter().filter(|w| w.namespace == namespace).collect()
    }
}

/// A Service, as the exposure rules see it. Deserialise it from the JSON of a Service.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Service {
    pub(crate) metadata: ObjectMeta,
    pub(crate) spec: ServiceSpec,
}

impl Service {
    /// Parses the JSON of a Service.
    pub fn from_json(json: &str) -> Result<Service, Error> {
        serde_json::from_str(json).map_err(Error::MalformedService)
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ServiceSpec {
    #[serde(rename = "type", deserialize_with = "null_as_default")]
    pub type_: String,
    #[serde(deserialize_with = "null_as_default")]
    pub selector: BTreeMap<String, String>,
    #[serde(deserialize_with = "null_as_default")]
    pub ports: Vec<ServicePort>,
    #[serde(deserialize_with = "null_as_default")]
    pub load_balancer_source_ranges: Vec<String>,
    #[serde(rename = "externalIPs", deserialize_with = "null_as_default")]
    pub external_ips: Vec<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(crate) struct ServicePort {
    pub port: i32,
    pub target_port: Option<TargetPort>,
}

/// A Service's targetPort: a number, or the name of a container port.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum TargetPort {
    Number(i32),
    Name(String),
}

impl ServicePort {
    /// The port traffic is sent to on the pods; `targetPort` defaults to `port`.
    pub fn target(&self) -> TargetPort {
        self.target_port.clone().unwrap_or(TargetPort::Number(self.port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_take_their_template_labels_and_spec() {
        let cron: Workload = serde_json::from_str(
            r#"{"kind":"CronJob","metadata":{"name":"backup","namespace":"db","labels":{"team":"x"}},
               "spec":{"schedule":"@daily","jobTemplate":{"spec":{"template":{"metadata":{"labels":{"app":"backup"}},
               "spec":{"containers":[{"name":"b","image":"postgres:16"}]}}}}}}"#,
        )
        .unwrap();
        assert_eq!((cron.kind(), cron.namespace(), cron.name()), ("CronJob", "db", "backup"));
        assert_eq!(cron.labels.get("app").map(String::as_str), Some("backup"));
        assert_eq!(cron.spec.containers[0].image, "postgres:16");
        assert!(cron.selected_by(&BTreeMap::from([("app".into(), "backup".into())])));
        assert!(!cron.selected_by(&BTreeMap::new()), "an empty selector selects nothing through a Service");

        let err = serde_json::from_str::<Workload>(r#"{"kind":"ConfigMap","metadata":{}}"#).unwrap_err();
        assert!(err.to_string().contains("ConfigMap is not a Pod or a workload kind"), "{err}");
    }

    #[test]
    fn null_fields_of_merge_patches_read_as_empty() {
        let pod: PodDocument =
            serde_json::from_str(r#"{"metadata":{"labels":null},"spec":{"containers":[{"name":"a","env":null}]}}"#)
                .unwrap();
        assert!(pod.metadata.labels.is_empty());
        assert_eq!(pod.spec.containers[0].name, "a");
    }

    #[test]
    fn service_target_ports_default_to_the_port() {
        let service = Service::from_json(
            r#"{"metadata":{"name":"r"},"spec":{"type":"LoadBalancer","ports":[{"port":6379},{"port":80,"targetPort":"http"}]}}"#,
        )
        .unwrap();
        assert_eq!(service.spec.ports[0].target(), TargetPort::Number(6379));
        assert_eq!(service.spec.ports[1].target(), TargetPort::Name("http".into()));
    }
}
