//! What the rules look for: image patterns, host paths, address feeds, allow-lists and
//! thresholds, with defaults that suit a typical cluster. Deserialisable from YAML or JSON
//! (camelCase keys, every key optional, unknown keys refused so that a typo does not
//! silently switch a list back to its default).
//!
//! Image patterns are globs (`*` matches anything, `/` included) over the image's canonical
//! repository, without tag or digest: `nginx:1.27` is `docker.io/library/nginx`.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Config {
    /// Namespaces where only the cluster's own components run (K8S_KubeSystemContainer).
    pub system_namespaces: Vec<String>,
    /// The images of the cluster's own components. In a system namespace they raise no
    /// K8S_KubeSystemContainer, and their privileges and host mounts are expected
    /// (K8S_PrivilegedContainer and K8S_SensitiveMount stay silent for them there only).
    pub system_images: Vec<String>,
    /// Host paths whose mount gives a container the node (K8S_SensitiveMount). Mounting a
    /// listed path, anything below it, or any folder above it (`/`, `/var/run`) counts.
    pub sensitive_host_paths: Vec<String>,
    /// Images of digital currency miners (K8S_MaliciousContainerImage).
    pub mining_images: Vec<String>,
    /// Substrings of a container's command or arguments that only miners use, such as a
    /// stratum pool URL (K8S_MaliciousContainerImage for a miner in a generic image).
    pub mining_arguments: Vec<String>,
    /// Users whose pod and pod-template writes derive from a workload already checked when
    /// it was written: kube-controller-manager's controllers creating Pods, ReplicaSets and
    /// Jobs from their owners. Only objects with a controller owner reference are skipped.
    pub workload_controllers: Vec<String>,
    /// Users that are the apiserver itself, writing its bootstrap roles and bindings.
    pub control_plane_users: Vec<String>,
    /// ClusterRoles that kube-controller-manager aggregates from others (admin, edit, view):
    /// its updates of them raise no K8S_HighPrivilegesRole.
    pub aggregated_cluster_roles: Vec<String>,
    /// Users allowed to delete Events: the namespace controller and garbage collector.
    /// Anyone else, service accounts included, raises K8S_DeleteEvents.
    pub event_deleters: Vec<String>,
    /// The CoreDNS ConfigMaps, as `namespace/name` (K8S_CoreDnsModification when changed or
    /// deleted; their creation is CoreDNS being installed).
    pub coredns_config_maps: Vec<String>,
    /// ConfigMaps whose `*.override` and `*.server` entries CoreDNS imports on top of its
    /// Corefile, as `namespace/name`: AKS's and Gardener's `kube-system/coredns-custom`.
    /// Creating one changes DNS as much as changing it does (K8S_CoreDnsModification).
    pub coredns_custom_config_maps: Vec<String>,
    /// Addresses of proxies and TOR exit nodes (K8S_TI_Proxy): the user's feed, as CIDRs
    /// (`192.0.2.7/32`, `2001:db8::/48`). Empty by default: there is no built-in feed.
    pub proxy_networks: Vec<IpNet>,
    pub pentest: PenTestConfig,
    pub exposure: ExposureConfig,
    /// Service accounts (`system:serviceaccount:<namespace>:<name>`) left out of the
    /// baseline (K8S_ServiceAccountRareOperation): the operator adds its own, whose every
    /// response is recorded in the action center, so that its first isolation after the
    /// learning period is not reported as unusual.
    pub baseline_exempt_service_accounts: Vec<String>,
    /// How many once-only findings are remembered (a client seen using a pentest tool, or
    /// coming from a proxy address, is reported once); the oldest are forgotten first.
    pub once_only_memory: usize,
    /// How many workloads (Deployments, ReplicaSets, Jobs...) are remembered as having had
    /// their pod template read, so that the ReplicaSets and pods their controllers make from
    /// it are not read again (one alert, not one per replica); the oldest are forgotten
    /// first, and the next pod of a forgotten one is read again.
    pub template_memory: usize,
    /// The runtime rules (K8S.NODE_*).
    pub runtime: crate::runtime::RuntimeConfig,
}

/// K8S_PenTestToolsKubeHunter: tools recognised by their user agent, and the probing pattern
/// of tools that hide behind a generic HTTP library.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct PenTestConfig {
    /// User agent names of penetration testing tools, matched as whole words,
    /// case-insensitively (client-go tools send `<program>/<version> (...)`).
    pub tools: Vec<String>,
    /// User agents of generic HTTP libraries and command-line clients. No Kubernetes client
    /// sends them; alone they prove nothing, with the probing pattern they do.
    pub generic_clients: Vec<String>,
    /// Resources (`resource` or `resource/subresource`) whose denial reveals probing.
    pub sensitive_resources: Vec<String>,
    /// The probing pattern: this many distinct sensitive (verb, resource) requests denied
    /// (401 or 403) within `probe_window_seconds`, from one user and address, with a
    /// generic client's user agent or as `system:anonymous`.
    pub probe_threshold: usize,
    pub probe_window_seconds: i64,
    /// At most this many (user, address) pairs are followed at once; when full, clients
    /// whose window has passed are forgotten, and new ones are not followed until then.
    pub max_probing_clients: usize,
}

/// The exposure rules: which Services expose which applications.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ExposureConfig {
    /// Service types that expose outside the cluster. ClusterIP Services with externalIPs
    /// count too.
    pub service_types: Vec<String>,
    /// Annotations that make a LoadBalancer internal (cloud providers'), key to values.
    pub internal_load_balancer_annotations: BTreeMap<String, Vec<String>>,
    /// Label keys whose values name the application of a pod (`app`, `app.kubernetes.io/name`...).
    pub app_label_keys: Vec<String>,
    /// Source ranges with a shorter prefix are broad (K8S_ExposedPostgresBroadIPRange);
    /// so is a LoadBalancer with no source range at all, and any NodePort.
    pub min_ipv4_prefix: u8,
    pub min_ipv6_prefix: u8,
    /// Environment settings (`NAME=value`) that make Postgres trust every client
    /// (K8S_ExposedPostgresTrustAuth).
    pub postgres_trust_env: Vec<String>,
    /// A cluster runs Kubeflow when this namespace has workloads (K8S_ExposedKubeflow for
    /// its Istio ingress gateway).
    pub kubeflow_namespace: String,
    pub apps: Vec<ExposedApp>,
}

/// Which alert an exposed application raises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Exposure {
    /// K8S_ExposedDashboard.
    Dashboard,
    /// K8S_ExposedKubeflow: Kubeflow's own dashboard.
    Kubeflow,
    /// K8S_ExposedKubeflow: the Istio ingress gateway, when the cluster runs Kubeflow.
    KubeflowIngress,
    /// K8S_ExposedRedis.
    Redis,
    /// K8S_ExposedPostgresTrustAuth and K8S_ExposedPostgresBroadIPRange.
    Postgres,
    /// K8S_ExposedService: another application that runs processes or containers.
    Sensitive,
}

/// An application recognised behind a Service: by image, or by a well-known label value
/// (then every container of the pod is taken as the application, unless one matches by
/// image). A Service exposes it when one of its ports reaches a port that the application's
/// container declares, or one of `ports` when the container declares none that matches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct ExposedApp {
    pub name: String,
    pub exposure: Exposure,
    pub images: Vec<String>,
    pub labels: Vec<String>,
    /// Well-known ports; empty means any port.
    pub ports: Vec<u16>,
    /// Only `ports` count, even if the container declares others (the Docker daemon's TLS
    /// port 2376 is not an exposure, 2375 is).
    pub only_listed_ports: bool,
    /// `NAME=value` settings of which at least one must be present (Elasticsearch without
    /// security); empty means none is needed.
    pub required_env: Vec<String>,
    /// Only pods on the host's network (they expose the node's own ports, such as the kubelet's).
    pub host_network: bool,
}

impl Default for ExposedApp {
    fn default() -> Self {
        ExposedApp {
            name: String::new(),
            exposure: Exposure::Sensitive,
            images: Vec::new(),
            labels: Vec::new(),
            ports: Vec::new(),
            only_listed_ports: false,
            required_env: Vec::new(),
            host_network: false,
        }
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn app(name: &str, exposure: Exposure, images: &[&str], labels: &[&str], ports: &[u16]) -> ExposedApp {
    ExposedApp {
        name: name.to_owned(),
        exposure,
        images: strings(images),
        labels: strings(labels),
        ports: ports.to_vec(),
        ..ExposedApp::default()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            system_namespaces: strings(&["kube-system"]),
            system_images: strings(&[
                "registry.k8s.io/*",
                "k8s.gcr.io/*",
                "docker.io/coredns/coredns",
                "docker.io/kindest/*",
                // CNI plugins.
                "docker.io/calico/*",
                "quay.io/calico/*",
                "quay.io/tigera/*",
                "quay.io/cilium/*",
                "ghcr.io/flannel-io/*",
                "docker.io/flannel/*",
                "docker.io/weaveworks/weave-kube",
                "docker.io/weaveworks/weave-npc",
                "docker.io/antrea/*",
                // Managed clusters and distributions.
                "mcr.microsoft.com/oss/kubernetes/*",
                "mcr.microsoft.com/oss/v2/kubernetes/*",
                "mcr.microsoft.com/aks/*",
                "mcr.microsoft.com/containernetworking/*",
                "mcr.microsoft.com/oss/calico/*",
                "mcr.microsoft.com/oss/cilium/*",
                "602401143452.dkr.ecr.*.amazonaws.com/*",
                "public.ecr.aws/eks/*",
                "public.ecr.aws/eks-distro/*",
                "gke.gcr.io/*",
                "gcr.io/gke-release/*",
                "docker.io/rancher/mirrored-*",
                "docker.io/rancher/klipper-*",
                "docker.io/rancher/local-path-provisioner",
            ]),
            sensitive_host_paths: strings(&[
                "/etc/kubernetes",
                "/etc/shadow",
                "/etc/passwd",
                "/etc/sudoers",
                "/etc/sudoers.d",
                "/etc/ssh",
                "/etc/crontab",
                "/etc/cron.d",
                "/etc/systemd",
                "/etc/ld.so.preload",
                "/root",
                "/home",
                "/proc",
                "/sys/kernel",
                "/dev",
                "/boot",
                "/var/lib/kubelet",
                "/var/lib/etcd",
                "/var/run/docker.sock",
                "/run/docker.sock",
                "/var/run/containerd",
                "/run/containerd",
                "/var/run/crio",
                "/run/crio",
                "/var/run/cri-dockerd.sock",
                "/run/cri-dockerd.sock",
            ]),
            mining_images: strings(&[
                "*xmrig*",
                "*cryptominer*",
                "*xmr-stak*",
                "*minergate*",
                "*nicehash*",
                "*cpuminer*",
                "*cgminer*",
                "*bfgminer*",
                "*ethminer*",
                "*phoenixminer*",
                "*nbminer*",
                "*lolminer*",
                "*teamredminer*",
                "*srbminer*",
                "*nanominer*",
                "*claymore*",
                "*coinhive*",
                "*minerd*",
                "*monero*",
                "*cryptonight*",
            ]),
            mining_arguments: strings(&[
                "stratum+tcp://",
                "stratum+ssl://",
                "stratum+tls://",
                "stratum2+tcp://",
                "--donate-level",
            ]),
            workload_controllers: strings(&[
                "system:serviceaccount:kube-system:replicaset-controller",
                "system:serviceaccount:kube-system:deployment-controller",
                "system:serviceaccount:kube-system:daemon-set-controller",
                "system:serviceaccount:kube-system:statefulset-controller",
                "system:serviceaccount:kube-system:job-controller",
                "system:serviceaccount:kube-system:cronjob-controller",
                "system:serviceaccount:kube-system:replication-controller",
                "system:kube-controller-manager",
            ]),
            control_plane_users: strings(&["system:apiserver"]),
            aggregated_cluster_roles: strings(&["admin", "edit", "view"]),
            event_deleters: strings(&[
                "system:serviceaccount:kube-system:namespace-controller",
                "system:serviceaccount:kube-system:generic-garbage-collector",
                "system:kube-controller-manager",
                "system:apiserver",
            ]),
            coredns_config_maps: strings(&["kube-system/coredns"]),
            coredns_custom_config_maps: strings(&["kube-system/coredns-custom"]),
            proxy_networks: Vec::new(),
            pentest: PenTestConfig::default(),
            exposure: ExposureConfig::default(),
            baseline_exempt_service_accounts: Vec::new(),
            once_only_memory: 10_000,
            template_memory: 20_000,
            runtime: crate::runtime::RuntimeConfig::default(),
        }
    }
}

impl Default for PenTestConfig {
    fn default() -> Self {
        PenTestConfig {
            tools: strings(&[
                "kube-hunter",
                "kubehunter",
                "kubiscan",
                "peirates",
                "kubesploit",
                "kdigger",
                "cdk",
                "botb",
                "kubestroyer",
                "kubeletmein",
                "red-kube",
            ]),
            generic_clients: strings(&[
                "python-requests",
                "python-urllib",
                "python-httpx",
                "aiohttp",
                "curl",
                "wget",
                "go-http-client",
                "libwww-perl",
                "node-fetch",
                "axios",
                "postmanruntime",
            ]),
            sensitive_resources: strings(&[
                "secrets",
                "pods",
                "pods/exec",
                "pods/attach",
                "pods/portforward",
                "pods/ephemeralcontainers",
                "nodes",
                "nodes/proxy",
                "namespaces",
                "serviceaccounts",
                "serviceaccounts/token",
                "configmaps",
                "roles",
                "rolebindings",
                "clusterroles",
                "clusterrolebindings",
                "deployments",
                "daemonsets",
                "certificatesigningrequests",
                "mutatingwebhookconfigurations",
                "validatingwebhookconfigurations",
                "persistentvolumes",
            ]),
            probe_threshold: 4,
            probe_window_seconds: 60,
            max_probing_clients: 10_000,
        }
    }
}

impl Default for ExposureConfig {
    fn default() -> Self {
        let internal = |values: &[&str]| strings(values);
        ExposureConfig {
            service_types: strings(&["LoadBalancer", "NodePort"]),
            internal_load_balancer_annotations: BTreeMap::from([
                ("service.beta.kubernetes.io/azure-load-balancer-internal".to_owned(), internal(&["true"])),
                ("service.beta.kubernetes.io/aws-load-balancer-internal".to_owned(), internal(&["true", "0.0.0.0/0"])),
                ("service.beta.kubernetes.io/aws-load-balancer-scheme".to_owned(), internal(&["internal"])),
                ("networking.gke.io/load-balancer-type".to_owned(), internal(&["Internal"])),
                ("cloud.google.com/load-balancer-type".to_owned(), internal(&["Internal", "internal"])),
                ("service.beta.kubernetes.io/oci-load-balancer-internal".to_owned(), internal(&["true"])),
                ("service.beta.kubernetes.io/openstack-internal-load-balancer".to_owned(), internal(&["true"])),
            ]),
            app_label_keys: strings(&[
                "app.kubernetes.io/name",
                "app.kubernetes.io/part-of",
                "app.kubernetes.io/instance",
                "app",
                "k8s-app",
                "istio",
            ]),
            min_ipv4_prefix: 8,
            min_ipv6_prefix: 32,
            postgres_trust_env: strings(&["POSTGRES_HOST_AUTH_METHOD=trust"]),
            kubeflow_namespace: "kubeflow".to_owned(),
            apps: vec![
                app(
                    "Kubernetes dashboard",
                    Exposure::Dashboard,
                    &[
                        "*/kubernetesui/dashboard",
                        "*/kubernetesui/dashboard-web",
                        "*/kubernetesui/dashboard-api",
                        "*/kubernetesui/dashboard-auth",
                        "*/kubernetes-dashboard-amd64",
                        "*/kubernetes-dashboard-arm64",
                    ],
                    &["kubernetes-dashboard"],
                    &[8443, 9090, 8000],
                ),
                app(
                    "Kubeflow central dashboard",
                    Exposure::Kubeflow,
                    &["*/centraldashboard"],
                    &["centraldashboard"],
                    &[8082],
                ),
                app(
                    "Istio ingress gateway",
                    Exposure::KubeflowIngress,
                    &[],
                    &["ingressgateway", "istio-ingressgateway"],
                    &[],
                ),
                app(
                    "Redis",
                    Exposure::Redis,
                    &[
                        "*/redis",
                        "*/redis-stack",
                        "*/redis-stack-server",
                        "*/redis-cluster",
                        "*/valkey",
                        "*/valkey-cluster",
                        "*/keydb",
                    ],
                    &["redis", "valkey"],
                    &[6379],
                ),
                app(
                    "Postgres",
                    Exposure::Postgres,
                    &[
                        "*/postgres",
                        "*/postgresql",
                        "*/postgresql-repmgr",
                        "*/postgis",
                        "*/timescaledb",
                        "*/timescaledb-ha",
                        "*/spilo-*",
                        "*/pgvector",
                    ],
                    &["postgres", "postgresql"],
                    &[5432],
                ),
                app(
                    "Jupyter",
                    Exposure::Sensitive,
                    &["*/jupyter/*", "*/jupyterhub/*", "*/jupyter-*"],
                    &["jupyter", "jupyterhub"],
                    &[8888],
                ),
                ExposedApp {
                    only_listed_ports: true,
                    ..app("Docker daemon API without TLS", Exposure::Sensitive, &["*/docker"], &[], &[2375])
                },
                ExposedApp {
                    only_listed_ports: true,
                    ..app("etcd", Exposure::Sensitive, &["*/etcd"], &["etcd"], &[2379])
                },
                ExposedApp {
                    required_env: strings(&["xpack.security.enabled=false"]),
                    ..app(
                        "Elasticsearch without security",
                        Exposure::Sensitive,
                        &["*/elasticsearch"],
                        &["elasticsearch"],
                        &[9200],
                    )
                },
                ExposedApp {
                    required_env: strings(&["plugins.security.disabled=true", "DISABLE_SECURITY_PLUGIN=true"]),
                    ..app(
                        "OpenSearch without security",
                        Exposure::Sensitive,
                        &["*/opensearch"],
                        &["opensearch"],
                        &[9200],
                    )
                },
                ExposedApp {
                    only_listed_ports: true,
                    ..app("Ray dashboard and jobs API", Exposure::Sensitive, &["*/rayproject/ray*"], &[], &[8265])
                },
                app(
                    "Weave Scope",
                    Exposure::Sensitive,
                    &["*/weaveworks/scope"],
                    &["weave-scope", "weave-scope-app"],
                    &[4040],
                ),
                ExposedApp {
                    only_listed_ports: true,
                    host_network: true,
                    ..app("kubelet API (through a host-network pod)", Exposure::Sensitive, &[], &[], &[10250, 10255])
                },
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_yaml_config_keeps_the_other_defaults() {
        let config: Config = serde_yaml::from_str(
            "proxyNetworks: [192.0.2.0/24, '2001:db8::/48']\npentest:\n  probeThreshold: 6\nsystemImages: [my.registry/*]\n",
        )
        .unwrap();
        assert_eq!(config.proxy_networks.len(), 2);
        assert_eq!(config.pentest.probe_threshold, 6);
        assert_eq!(config.pentest.tools, PenTestConfig::default().tools);
        assert_eq!(config.system_images, vec!["my.registry/*".to_owned()]);
        assert_eq!(config.sensitive_host_paths, Config::default().sensitive_host_paths);
    }

    #[test]
    fn typos_and_bad_cidrs_are_refused() {
        assert!(serde_yaml::from_str::<Config>("systemImage: [x]").unwrap_err().to_string().contains("unknown field"));
        assert!(serde_json::from_str::<Config>(r#"{"proxyNetworks":["10.0.0.0/33"]}"#).is_err());
    }

    #[test]
    fn the_default_config_round_trips_through_json() {
        let json = serde_json::to_string(&Config::default()).unwrap();
        assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), Config::default());
    }
}
