//! Exposure rules: K8S_ExposedDashboard, K8S_ExposedKubeflow, K8S_ExposedRedis,
//! K8S_ExposedService, K8S_ExposedPostgresTrustAuth and K8S_ExposedPostgresBroadIPRange.
//!
//! A Service exposes an application when it is reachable from outside the cluster (type
//! LoadBalancer or NodePort, or external IPs; not an internal load balancer), it selects
//! pods or pod templates that run the application, and one of its ports reaches the
//! application's port. [`evaluate_service`] decides that for one Service against the
//! cluster's current workloads; it serves both the audit path (a Service written) and the
//! configuration scan of the Services that exist when Riposte starts.
//!
//! Not seen: Services without a selector (their endpoints are managed by hand), Ingresses
//! and Gateways, environment values taken from ConfigMaps or Secrets, and a workload that
//! appears behind an existing Service after the Service was checked (until the next scan).

use crate::audit::Event;
use crate::config::{ExposedApp, Exposure};
use crate::image;
use crate::objects::{ClusterView, Container, Service, TargetPort, Workload};
use crate::rules::{
    EXPOSED_DASHBOARD, EXPOSED_KUBEFLOW, EXPOSED_POSTGRES_BROAD_IP_RANGE, EXPOSED_POSTGRES_TRUST_AUTH, EXPOSED_REDIS,
    EXPOSED_SERVICE, Entities, Finding, acting_user, non_empty, past_tense, request_evidence, took_effect,
    written_object,
};
use crate::{Config, ExposureConfig};

const LEGACY_SOURCE_RANGES_ANNOTATION: &str = "service.beta.kubernetes.io/load-balancer-source-ranges";

/// The exposure findings of one Service, given the pods and workloads of its namespace.
pub fn evaluate_service(service: &Service, cluster: &dyn ClusterView, config: &Config) -> Vec<Finding> {
    let exposure = &config.exposure;
    let Some(reachable_by) = reachable_from_outside(service, exposure) else {
        return Vec::new();
    };
    let namespace = &service.metadata.namespace;
    let mut selected: Vec<&Workload> =
        cluster.workloads(namespace).into_iter().filter(|w| w.selected_by(&service.spec.selector)).collect();
    // A workload names what runs better than one of its pods does.
    selected.sort_by_key(|w| w.kind == "Pod");
    let mut findings = Vec::new();
    for app in &exposure.apps {
        let Some(exposed) = selected.iter().find_map(|w| exposed_app(service, w, app, exposure)) else {
            continue;
        };
        let alert_types: Vec<(&'static str, Option<String>)> = match app.exposure {
            Exposure::Dashboard => vec![(EXPOSED_DASHBOARD, None)],
            Exposure::Kubeflow => vec![(EXPOSED_KUBEFLOW, None)],
            Exposure::KubeflowIngress => {
                if cluster.workloads(&exposure.kubeflow_namespace).is_empty() {
                    continue;
                }
                vec![(EXPOSED_KUBEFLOW, Some(format!("Kubeflow runs in namespace {}", exposure.kubeflow_namespace)))]
            }
            Exposure::Redis => vec![(EXPOSED_REDIS, None)],
            Exposure::Sensitive => vec![(EXPOSED_SERVICE, None)],
            Exposure::Postgres => {
                let trust = exposed.container.env.iter().find_map(|env| {
                    let setting = format!("{}={}", env.name, env.value.as_deref()?);
                    exposure.postgres_trust_env.contains(&setting).then_some(setting)
                });
                let broad = broad_source_range(service, exposure);
                trust
                    .map(|t| (EXPOSED_POSTGRES_TRUST_AUTH, Some(format!("trust authentication: {t}"))))
                    .into_iter()
                    .chain(broad.map(|b| (EXPOSED_POSTGRES_BROAD_IP_RANGE, Some(b))))
                    .collect()
            }
        };
        for (alert_type, detail) in alert_types {
            findings.push(exposure_finding(service, &reachable_by, app, &exposed, alert_type, detail));
        }
    }
    findings
}

/// The Service of a write, evaluated (K8S_Exposed* from the audit stream).
pub(crate) fn service_write(event: &Event, cluster: &dyn ClusterView, config: &Config) -> Vec<Finding> {
    if !matches!(&*event.verb, "create" | "update" | "patch") || !took_effect(event) {
        return Vec::new();
    }
    let Some(mut service) = written_object(event).and_then(|o| Service::from_json(o).ok()) else {
        return Vec::new();
    };
    if service.metadata.namespace.is_empty() {
        service.metadata.namespace = event.object_ref.as_ref().map(|o| o.namespace.clone()).unwrap_or_default();
    }
    let mut findings = evaluate_service(&service, cluster, config);
    for finding in &mut findings {
        let mut evidence = request_evidence(event);
        evidence.append(&mut finding.evidence);
        finding.evidence = evidence;
        finding.entities.user = acting_user(event);
        finding.summary =
            format!("{}, {} by {}", finding.summary, past_tense(&event.verb), event.effective_user().username);
    }
    findings
}

/// Whether a write made a Service reachable from outside the cluster: only then can it
/// expose anything, and only then is the cluster view worth fetching.
pub(crate) fn service_write_may_expose(event: &Event, config: &Config) -> bool {
    matches!(&*event.verb, "create" | "update" | "patch")
        && took_effect(event)
        && written_object(event).and_then(|o| Service::from_json(o).ok()).is_some_and(|s| may_expose(&s, config))
}

/// Whether a Service is reachable from outside the cluster, so that it may expose what it
/// selects.
pub(crate) fn may_expose(service: &Service, config: &Config) -> bool {
    reachable_from_outside(service, &config.exposure).is_some()
}

/// How the Service can be reached from outside, or `None` if it cannot.
fn reachable_from_outside(service: &Service, exposure: &ExposureConfig) -> Option<String> {
    let spec = &service.spec;
    let type_ = if spec.type_.is_empty() { "ClusterIP" } else { spec.type_.as_str() };
    let internal = type_ == "LoadBalancer"
        && service.metadata.annotations.iter().any(|(key, value)| {
            exposure
                .internal_load_balancer_annotations
                .get(key)
                .is_some_and(|values| values.iter().any(|v| v.eq_ignore_ascii_case(value)))
        });
    if exposure.service_types.iter().any(|t| t == type_) && !internal {
        Some(type_.to_owned())
    } else if !spec.external_ips.is_empty() {
        Some(format!("externalIPs {}", spec.external_ips.join(", ")))
    } else {
        None
    }
}

/// An application found behind a Service port.
struct ExposedWorkload<'w> {
    workload: &'w Workload,
    container: &'w Container,
    service_port: i32,
    target_port: i32,
    recognised_by: String,
}

fn exposed_app<'w>(
    service: &Service,
    workload: &'w Workload,
    app: &ExposedApp,
    exposure: &ExposureConfig,
) -> Option<ExposedWorkload<'w>> {
    if app.host_network && workload.spec.host_network != Some(true) {
        return None;
    }
    let containers = &workload.spec.containers;
    let by_image: Vec<(&Container, String)> = containers
        .iter()
        .filter_map(|c| {
            let repository = image::repository(&c.image);
            image::matches_any(&app.images, &repository).map(|_| (c, format!("image {repository}")))
        })
        .collect();
    let candidates = if !by_image.is_empty() {
        by_image
    } else if let Some(label) = app_label(workload, app, exposure) {
        containers.iter().map(|c| (c, format!("label {label}"))).collect()
    } else if app.images.is_empty() && app.labels.is_empty() {
        containers.iter().map(|c| (c, "host network".to_owned())).collect()
    } else {
        return None;
    };
    candidates.into_iter().filter(|(c, _)| has_required_env(c, app)).find_map(|(container, recognised_by)| {
        service.spec.ports.iter().find_map(|port| {
            let target_port = reached_port(workload, container, &port.target(), app)?;
            Some(ExposedWorkload {
                workload,
                container,
                service_port: port.port,
                target_port,
                recognised_by: recognised_by.clone(),
            })
        })
    })
}

/// The well-known label (`key=value`) that names the application on the pods.
fn app_label(workload: &Workload, app: &ExposedApp, exposure: &ExposureConfig) -> Option<String> {
    workload.labels.iter().find_map(|(key, value)| {
        (exposure.app_label_keys.contains(key) && app.labels.contains(value)).then(|| format!("{key}={value}"))
    })
}

fn has_required_env(container: &Container, app: &ExposedApp) -> bool {
    app.required_env.is_empty()
        || app.required_env.iter().any(|setting| {
            let (name, value) = setting.split_once('=').unwrap_or((setting, ""));
            container.env_value(name).is_some_and(|v| v.eq_ignore_ascii_case(value))
        })
}

/// The container port a Service port's target reaches on this container, if it is one of
/// the application's: a port the container declares (by name or number), or an undeclared
/// well-known port of the application that no other container of the pod declares.
fn reached_port(workload: &Workload, container: &Container, target: &TargetPort, app: &ExposedApp) -> Option<i32> {
    let number = match target {
        TargetPort::Number(n) => *n,
        TargetPort::Name(name) => container.ports.iter().find(|p| &p.name == name)?.container_port,
    };
    let listed = app.ports.is_empty() || app.ports.iter().any(|&p| i32::from(p) == number);
    if app.only_listed_ports && !listed {
        return None;
    }
    let declared_here = container.ports.iter().any(|p| p.container_port == number);
    let declared_elsewhere = workload
        .spec
        .containers
        .iter()
        .filter(|c| !std::ptr::eq(*c, container))
        .any(|c| c.ports.iter().any(|p| p.container_port == number));
    (declared_here || (!declared_elsewhere && listed)).then_some(number)
}

/// Why the Service's allowed sources are broad, or `None` if they are narrow.
fn broad_source_range(service: &Service, exposure: &ExposureConfig) -> Option<String> {
    let spec = &service.spec;
    if spec.type_ != "LoadBalancer" {
        return Some(format!(
            "a {} Service accepts every source address",
            if spec.type_.is_empty() { "ClusterIP" } else { &spec.type_ }
        ));
    }
    let legacy: Vec<String> = service
        .metadata
        .annotations
        .get(LEGACY_SOURCE_RANGES_ANNOTATION)
        .map(|v| v.split(',').map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()).collect())
        .unwrap_or_default();
    let ranges = if spec.load_balancer_source_ranges.is_empty() { &legacy } else { &spec.load_balancer_source_ranges };
    if ranges.is_empty() {
        return Some("no loadBalancerSourceRanges: every source address is allowed".to_owned());
    }
    ranges.iter().find_map(|range| {
        let net: ipnet::IpNet = range.trim().parse().ok()?;
        let minimum = match net {
            ipnet::IpNet::V4(_) => exposure.min_ipv4_prefix,
            ipnet::IpNet::V6(_) => exposure.min_ipv6_prefix,
        };
        (net.prefix_len() < minimum)
            .then(|| format!("loadBalancerSourceRanges allows {range} (prefix shorter than /{minimum})"))
    })
}

fn exposure_finding(
    service: &Service,
    reachable_by: &str,
    app: &ExposedApp,
    exposed: &ExposedWorkload,
    alert_type: &'static str,
    detail: Option<String>,
) -> Finding {
    let workload = exposed.workload;
    let service_name = format!("Service {}/{}", service.metadata.namespace, service.metadata.name);
    let workload_name = format!("{} {}/{}", workload.kind, workload.namespace, workload.name);
    let mut evidence = vec![
        ("service".to_owned(), service_name.clone()),
        ("exposedBy".to_owned(), reachable_by.to_owned()),
        ("application".to_owned(), app.name.clone()),
        ("recognisedBy".to_owned(), exposed.recognised_by.clone()),
        ("workload".to_owned(), workload_name.clone()),
        (
            "port".to_owned(),
            format!("{} -> {} (container {})", exposed.service_port, exposed.target_port, exposed.container.name),
        ),
    ];
    if let Some(detail) = &detail {
        evidence.push(("detail".to_owned(), detail.clone()));
    }
    let is_pod = workload.kind == "Pod";
    Finding {
        alert_type,
        entities: Entities {
            namespace: non_empty(&workload.namespace),
            pod: is_pod.then(|| workload.name.clone()),
            container: non_empty(&exposed.container.name),
            image: non_empty(&exposed.container.image),
            node: non_empty(&workload.spec.node_name),
            service_account: non_empty(&workload.spec.service_account_name),
            workload_kind: (!is_pod).then(|| workload.kind.clone()),
            workload_name: (!is_pod).then(|| workload.name.clone()),
            user: None,
        },
        evidence,
        summary: format!(
            "{service_name} ({reachable_by}) exposes {} of {workload_name} on port {}{}",
            app.name,
            exposed.service_port,
            detail.map(|d| format!(": {d}")).unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::test_support::{event, evidence, with_response};

    fn workload(json: &str) -> Workload {
        serde_json::from_str(json).unwrap()
    }

    fn service(type_: &str, extra_spec: &str, selector: &str, ports: &str) -> Service {
        Service::from_json(&format!(
            r#"{{"metadata":{{"name":"front","namespace":"shop"}},"spec":{{"type":"{type_}","selector":{selector},"ports":{ports}{extra_spec}}}}}"#
        ))
        .unwrap()
    }

    fn redis() -> Workload {
        workload(
            r#"{"kind":"Deployment","metadata":{"name":"cache","namespace":"shop"},"spec":{"template":{"metadata":{"labels":{"app":"cache"}},
               "spec":{"containers":[{"name":"redis","image":"redis:7.2","ports":[{"containerPort":6379,"name":"redis"}]},
               {"name":"metrics","image":"oliver006/redis_exporter","ports":[{"containerPort":9121,"name":"metrics"}]}]}}}}"#,
        )
    }

    fn types(findings: &[Finding]) -> Vec<&str> {
        findings.iter().map(|f| f.alert_type).collect()
    }

    #[test]
    fn a_load_balancer_in_front_of_redis_is_an_exposure_and_a_cluster_ip_is_not() {
        let cluster = vec![redis()];
        let lb = service("LoadBalancer", "", r#"{"app":"cache"}"#, r#"[{"port":6379,"targetPort":"redis"}]"#);
        let findings = evaluate_service(&lb, &cluster, &Config::default());
        assert_eq!(types(&findings), [EXPOSED_REDIS]);
        assert_eq!(evidence(&findings[0], "port"), Some("6379 -> 6379 (container redis)"));
        assert_eq!(evidence(&findings[0], "recognisedBy"), Some("image docker.io/library/redis"));
        assert_eq!(findings[0].entities.workload_name.as_deref(), Some("cache"));

        let internal = service("ClusterIP", "", r#"{"app":"cache"}"#, r#"[{"port":6379}]"#);
        assert!(evaluate_service(&internal, &cluster, &Config::default()).is_empty());
        let metrics_only = service("LoadBalancer", "", r#"{"app":"cache"}"#, r#"[{"port":80,"targetPort":9121}]"#);
        assert!(evaluate_service(&metrics_only, &cluster, &Config::default()).is_empty());
        let other_selector = service("NodePort", "", r#"{"app":"web"}"#, r#"[{"port":6379}]"#);
        assert!(evaluate_service(&other_selector, &cluster, &Config::default()).is_empty());
    }

    #[test]
    fn internal_load_balancers_are_not_exposed_but_external_ips_are() {
        let cluster = vec![redis()];
        let mut lb = service("LoadBalancer", "", r#"{"app":"cache"}"#, r#"[{"port":6379}]"#);
        lb.metadata.annotations.insert("service.beta.kubernetes.io/azure-load-balancer-internal".into(), "true".into());
        assert!(evaluate_service(&lb, &cluster, &Config::default()).is_empty());
        let external =
            service("ClusterIP", r#","externalIPs":["203.0.113.5"]"#, r#"{"app":"cache"}"#, r#"[{"port":6379}]"#);
        assert_eq!(types(&evaluate_service(&external, &cluster, &Config::default())), [EXPOSED_REDIS]);
    }

    fn postgres(env: &str) -> Workload {
        workload(&format!(
            r#"{{"kind":"StatefulSet","metadata":{{"name":"db","namespace":"shop"}},"spec":{{"template":{{"metadata":{{"labels":{{"app.kubernetes.io/name":"postgresql"}}}},
               "spec":{{"containers":[{{"name":"postgres","image":"docker.io/bitnami/postgresql:16","env":{env}}}]}}}}}}}}"#
        ))
    }

    #[test]
    fn postgres_trust_and_broad_ranges_are_two_findings() {
        let trusting = vec![postgres(r#"[{"name":"POSTGRES_HOST_AUTH_METHOD","value":"trust"}]"#)];
        let selector = r#"{"app.kubernetes.io/name":"postgresql"}"#;
        let open = service("LoadBalancer", "", selector, r#"[{"port":5432}]"#);
        let findings = evaluate_service(&open, &trusting, &Config::default());
        assert_eq!(types(&findings), [EXPOSED_POSTGRES_TRUST_AUTH, EXPOSED_POSTGRES_BROAD_IP_RANGE]);
        assert_eq!(evidence(&findings[0], "detail"), Some("trust authentication: POSTGRES_HOST_AUTH_METHOD=trust"));
        assert_eq!(
            evidence(&findings[1], "detail"),
            Some("no loadBalancerSourceRanges: every source address is allowed")
        );

        let password =
            vec![postgres(r#"[{"name":"POSTGRES_PASSWORD","valueFrom":{"secretKeyRef":{"name":"db","key":"pw"}}}]"#)];
        let narrow = service(
            "LoadBalancer",
            r#","loadBalancerSourceRanges":["198.51.100.0/24"]"#,
            selector,
            r#"[{"port":5432}]"#,
        );
        assert!(evaluate_service(&narrow, &password, &Config::default()).is_empty());
        let wide = service(
            "LoadBalancer",
            r#","loadBalancerSourceRanges":["198.51.100.0/24","0.0.0.0/1"]"#,
            selector,
            r#"[{"port":5432}]"#,
        );
        let findings = evaluate_service(&wide, &password, &Config::default());
        assert_eq!(types(&findings), [EXPOSED_POSTGRES_BROAD_IP_RANGE]);
        assert_eq!(
            evidence(&findings[0], "detail"),
            Some("loadBalancerSourceRanges allows 0.0.0.0/1 (prefix shorter than /8)")
        );
    }

    #[test]
    fn the_dashboard_and_kubeflow_ingress_are_recognised() {
        let dashboard = workload(
            r#"{"kind":"Deployment","metadata":{"name":"kubernetes-dashboard","namespace":"kubernetes-dashboard"},"spec":{"template":
               {"metadata":{"labels":{"k8s-app":"kubernetes-dashboard"}},"spec":{"containers":[{"name":"kubernetes-dashboard",
               "image":"kubernetesui/dashboard:v2.7.0","ports":[{"containerPort":8443,"protocol":"TCP"}]}]}}}}"#,
        );
        let mut lb =
            service("LoadBalancer", "", r#"{"k8s-app":"kubernetes-dashboard"}"#, r#"[{"port":443,"targetPort":8443}]"#);
        lb.metadata.namespace = "kubernetes-dashboard".into();
        assert_eq!(types(&evaluate_service(&lb, &vec![dashboard], &Config::default())), [EXPOSED_DASHBOARD]);

        let gateway = workload(
            r#"{"kind":"Deployment","metadata":{"name":"istio-ingressgateway","namespace":"istio-system"},"spec":{"template":
               {"metadata":{"labels":{"istio":"ingressgateway","app":"istio-ingressgateway"}},"spec":{"containers":[{"name":"istio-proxy",
               "image":"docker.io/istio/proxyv2:1.22.0","ports":[{"containerPort":8080},{"containerPort":8443}]}]}}}}"#,
        );
        let central = workload(
            r#"{"kind":"Deployment","metadata":{"name":"centraldashboard","namespace":"kubeflow"},"spec":{"template":
               {"metadata":{"labels":{"app":"centraldashboard"}},"spec":{"containers":[{"name":"centraldashboard","image":"docker.io/kubeflownotebookswg/centraldashboard:v1.9.0"}]}}}}"#,
        );
        let mut ingress =
            service("LoadBalancer", "", r#"{"istio":"ingressgateway"}"#, r#"[{"port":80,"targetPort":8080}]"#);
        ingress.metadata.namespace = "istio-system".into();
        let with_kubeflow = vec![gateway.clone(), central];
        let findings = evaluate_service(&ingress, &with_kubeflow, &Config::default());
        assert_eq!(types(&findings), [EXPOSED_KUBEFLOW]);
        assert_eq!(evidence(&findings[0], "detail"), Some("Kubeflow runs in namespace kubeflow"));
        assert!(
            evaluate_service(&ingress, &vec![gateway], &Config::default()).is_empty(),
            "an Istio gateway without Kubeflow"
        );
    }

    #[test]
    fn sensitive_applications_need_their_insecure_settings_or_ports() {
        let docker = |port: i32| {
            workload(&format!(
                r#"{{"kind":"Pod","metadata":{{"name":"dind","namespace":"shop","labels":{{"app":"dind"}}}},"spec":{{"containers":[{{"name":"docker","image":"docker:27-dind","ports":[{{"containerPort":{port}}}]}}]}}}}"#
            ))
        };
        let lb = |port: i32| service("NodePort", "", r#"{"app":"dind"}"#, &format!(r#"[{{"port":{port}}}]"#));
        let findings = evaluate_service(&lb(2375), &vec![docker(2375)], &Config::default());
        assert_eq!(types(&findings), [EXPOSED_SERVICE]);
        assert_eq!(findings[0].entities.pod.as_deref(), Some("dind"));
        assert!(evaluate_service(&lb(2376), &vec![docker(2376)], &Config::default()).is_empty(), "TLS port");

        let elastic = |security: &str| {
            workload(&format!(
                r#"{{"kind":"StatefulSet","metadata":{{"name":"es","namespace":"shop"}},"spec":{{"template":{{"metadata":{{"labels":{{"app":"es"}}}},
                   "spec":{{"containers":[{{"name":"es","image":"docker.elastic.co/elasticsearch/elasticsearch:8.14.0",
                   "env":[{{"name":"xpack.security.enabled","value":"{security}"}}]}}]}}}}}}}}"#
            ))
        };
        let es_lb = service("LoadBalancer", "", r#"{"app":"es"}"#, r#"[{"port":9200}]"#);
        assert_eq!(types(&evaluate_service(&es_lb, &vec![elastic("false")], &Config::default())), [EXPOSED_SERVICE]);
        assert!(evaluate_service(&es_lb, &vec![elastic("true")], &Config::default()).is_empty());
    }

    #[test]
    fn a_service_write_adds_who_created_it() {
        let cluster = vec![redis()];
        let body = r#"{"kind":"Service","metadata":{"name":"front","namespace":"shop"},"spec":{"type":"LoadBalancer","selector":{"app":"cache"},"ports":[{"port":6379}]}}"#;
        let e = with_response(event("create", "", "services", "shop", "front", "mallory"), body);
        let findings = service_write(&e, &cluster, &Config::default());
        assert_eq!(types(&findings), [EXPOSED_REDIS]);
        assert_eq!(findings[0].entities.user.as_deref(), Some("mallory"));
        assert_eq!(evidence(&findings[0], "verb"), Some("create"));
        assert!(findings[0].summary.ends_with("created by mallory"), "{}", findings[0].summary);
    }
}
