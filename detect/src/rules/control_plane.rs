//! Rules on the cluster's own machinery: K8S_DeleteEvents, K8S_CoreDnsModification and
//! K8S_AdmissionController.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::Config;
use crate::audit::{Event, Timestamp};
use crate::rules::{
    ADMISSION_CONTROLLER, CORE_DNS_MODIFICATION, DELETE_EVENTS, Entities, Finding, acting_user, non_empty, past_tense,
    request_evidence, took_effect, write_touches, written_object,
};

fn finding(event: &Event, alert_type: &'static str, object: String, summary: String) -> Finding {
    let object_ref = event.object_ref.as_ref();
    let mut evidence = request_evidence(event);
    evidence.push(("object".to_owned(), object));
    Finding {
        alert_type,
        entities: Entities {
            namespace: object_ref.and_then(|o| non_empty(&o.namespace)),
            user: acting_user(event),
            ..Entities::default()
        },
        evidence,
        summary,
    }
}

/// K8S_DeleteEvents: Events (core or events.k8s.io) deleted one by one or by collection, by
/// anyone but the namespace controller and the garbage collector. (Events that expire are
/// removed by etcd, not through the API, and are not seen.)
pub fn deleted_events(event: &Event, config: &Config) -> Vec<Finding> {
    if !matches!(&*event.verb, "delete" | "deletecollection")
        || !took_effect(event)
        || config.event_deleters.contains(&event.user.username)
    {
        return Vec::new();
    }
    let object_ref = event.object_ref.as_ref();
    let namespace = object_ref.map_or("", |o| o.namespace.as_str());
    let scope = if namespace.is_empty() { "every namespace".to_owned() } else { format!("namespace {namespace}") };
    let what = match object_ref.map(|o| o.name.as_str()) {
        Some(name) if !name.is_empty() => format!("Event {name} in {scope}"),
        _ => format!("the Events of {scope}"),
    };
    let summary = format!("{what} {} by {}", past_tense(&event.verb), event.effective_user().username);
    vec![finding(event, DELETE_EVENTS, what, summary)]
}

/// K8S_CoreDnsModification: the CoreDNS ConfigMap updated, patched or deleted (also by
/// deleting every ConfigMap of its namespace), or a ConfigMap that CoreDNS imports
/// (`coredns-custom`) created too: on AKS that is how CoreDNS is overridden. A patch that
/// changes only labels or annotations is not a modification of DNS. The ConfigMap's data keys
/// (`Corefile`, `*.override`, `*.server`) are evidence: they say which part of the
/// configuration the entries go to.
pub fn coredns_modified(event: &Event, config: &Config) -> Vec<Finding> {
    let Some(object_ref) = &event.object_ref else {
        return Vec::new();
    };
    let names = |list: &[String]| {
        list.iter().any(|qualified| {
            let (namespace, name) = qualified.split_once('/').unwrap_or(("kube-system", qualified));
            namespace == object_ref.namespace && (name == object_ref.name || event.verb == "deletecollection")
        })
    };
    let custom = names(&config.coredns_custom_config_maps);
    let changes_dns = match &*event.verb {
        "update" | "patch" | "delete" | "deletecollection" => custom || names(&config.coredns_config_maps),
        "create" => custom,
        _ => false,
    };
    if !changes_dns || !took_effect(event) || !write_touches(event, &["data", "binaryData"]) {
        return Vec::new();
    }
    let keys = written_object(event).map(data_keys);
    // An empty one, as AKS creates it, imports nothing.
    if event.verb == "create" && keys == Some(None) {
        return Vec::new();
    }
    let object = if object_ref.name.is_empty() {
        format!("every ConfigMap of namespace {}", object_ref.namespace)
    } else {
        format!("ConfigMap {}/{}", object_ref.namespace, object_ref.name)
    };
    let summary =
        format!("CoreDNS configuration: {object} {} by {}", past_tense(&event.verb), event.effective_user().username);
    let mut found = finding(event, CORE_DNS_MODIFICATION, object, summary);
    if let Some(Some(keys)) = keys {
        found.evidence.push(("dataKeys".to_owned(), keys));
    }
    vec![found]
}

/// The keys of a ConfigMap's `data` and `binaryData`, comma-separated; `None` for a body
/// that is not a ConfigMap (a JSON patch) or has no data.
fn data_keys(object: &str) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        #[serde(default)]
        data: Option<BTreeMap<String, IgnoredAny>>,
        #[serde(default)]
        binary_data: Option<BTreeMap<String, IgnoredAny>>,
    }
    let Data { data, binary_data } = serde_json::from_str(object).ok()?;
    let keys: Vec<String> = data.into_iter().chain(binary_data).flat_map(BTreeMap::into_keys).collect();
    (!keys.is_empty()).then(|| keys.join(", "))
}

/// The fields of a webhook whose change alters what is sent where; refreshing `caBundle`
/// (cert-manager, istiod) does not.
const WEBHOOK_FIELDS: &[&str] = &[
    "url",
    "service",
    "rules",
    "namespaceSelector",
    "objectSelector",
    "matchConditions",
    "failurePolicy",
    "sideEffects",
    "matchPolicy",
    "reinvocationPolicy",
    "timeoutSeconds",
    "admissionReviewVersions",
];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WebhookConfiguration {
    metadata: WebhookMetadata,
    webhooks: Option<Vec<Webhook>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct WebhookMetadata {
    name: String,
    managed_fields: Option<Vec<ManagedFields>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct ManagedFields {
    time: Option<Timestamp>,
    fields_v1: Option<serde_json::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct Webhook {
    name: String,
    client_config: ClientConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ClientConfig {
    url: Option<String>,
    service: Option<ServiceReference>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ServiceReference {
    namespace: String,
    name: String,
    path: Option<String>,
}

/// K8S_AdmissionController: a MutatingWebhookConfiguration or ValidatingWebhookConfiguration
/// created, or changed in where it sends requests or which it receives. A change of
/// `caBundle` alone is certificate rotation: for a patch, the patch says so; for an update,
/// the object's managed fields do (the fields owned by the managers that changed it now).
pub fn webhook_configuration(event: &Event, config: &Config) -> Vec<Finding> {
    if !matches!(&*event.verb, "create" | "update" | "patch")
        || !took_effect(event)
        || config.control_plane_users.contains(&event.user.username)
        || !write_touches(event, WEBHOOK_FIELDS)
    {
        return Vec::new();
    }
    let configuration = written_object(event).and_then(|o| serde_json::from_str::<WebhookConfiguration>(o).ok());
    if event.verb == "update" && configuration.as_ref().is_some_and(|c| only_ca_bundle_changed(c, event)) {
        return Vec::new();
    }
    let object_ref = event.object_ref.as_ref();
    let kind = match object_ref.map(|o| o.resource.as_str()) {
        Some("mutatingwebhookconfigurations") => "MutatingWebhookConfiguration",
        _ => "ValidatingWebhookConfiguration",
    };
    let name = configuration
        .as_ref()
        .and_then(|c| non_empty(&c.metadata.name))
        .or_else(|| object_ref.map(|o| o.name.clone()))
        .unwrap_or_default();
    let object = format!("{kind} {name}");
    let summary = format!("{object} {} by {}", past_tense(&event.verb), event.effective_user().username);
    let mut found = finding(event, ADMISSION_CONTROLLER, object, summary);
    found.entities.workload_kind = Some(kind.to_owned());
    found.entities.workload_name = non_empty(&name);
    for (i, webhook) in configuration.iter().flat_map(|c| c.webhooks.iter().flatten()).enumerate() {
        let target = match (&webhook.client_config.url, &webhook.client_config.service) {
            (Some(url), _) => url.clone(),
            (None, Some(s)) => format!("service {}/{}{}", s.namespace, s.name, s.path.as_deref().unwrap_or_default()),
            (None, None) => "no destination".to_owned(),
        };
        found.evidence.push((format!("webhooks[{i}]"), format!("{} -> {target}", webhook.name)));
    }
    vec![found]
}

/// Whether the managers that changed the object in this request (managed-fields entries
/// stamped at or after its receipt, to the second) own nothing but CA bundles.
fn only_ca_bundle_changed(configuration: &WebhookConfiguration, event: &Event) -> bool {
    let (Some(received), Some(entries)) = (event.timestamp(), &configuration.metadata.managed_fields) else {
        return false;
    };
    let second = Timestamp::from_unix_micros(received.unix_micros() - received.unix_micros().rem_euclid(1_000_000));
    let changed: Vec<&ManagedFields> = entries.iter().filter(|e| e.time.is_some_and(|t| t >= second)).collect();
    !changed.is_empty()
        && changed.iter().all(|e| e.fields_v1.as_ref().is_some_and(|fields| owns_only(fields, &["caBundle", "name"])))
}

/// Whether a managed-fields set (`f:field`, `k:{list key}`, `v:value`, `.` for the element
/// itself) has no leaf field but those named, metadata aside.
fn owns_only(fields: &serde_json::Value, allowed: &[&str]) -> bool {
    let Some(map) = fields.as_object() else {
        return true;
    };
    map.iter().all(|(key, inner)| {
        let leaf = inner.as_object().is_none_or(serde_json::Map::is_empty);
        match key.split_at_checked(2) {
            _ if key == "." || key == "f:metadata" => true,
            Some(("f:", name)) if leaf => allowed.contains(&name),
            Some(("f:" | "k:" | "i:", _)) => owns_only(inner, allowed),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::test_support::{event, evidence, with_request, with_response};

    #[test]
    fn deleting_events_is_reported_unless_the_control_plane_does_it() {
        let e = event("deletecollection", "", "events", "shop", "", "mallory");
        let findings = deleted_events(&e, &Config::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].summary, "the Events of namespace shop deleted by mallory");
        let e = event("delete", "events.k8s.io", "events", "shop", "web.17f3", "system:serviceaccount:shop:ci");
        assert_eq!(
            deleted_events(&e, &Config::default())[0].summary,
            "Event web.17f3 in namespace shop deleted by system:serviceaccount:shop:ci"
        );
        let e = event(
            "deletecollection",
            "",
            "events",
            "gone",
            "",
            "system:serviceaccount:kube-system:namespace-controller",
        );
        assert!(deleted_events(&e, &Config::default()).is_empty());
        let mut denied = event("delete", "", "events", "shop", "web.17f3", "mallory");
        denied.response_status.as_mut().unwrap().code = Some(403);
        assert!(deleted_events(&denied, &Config::default()).is_empty());
    }

    #[test]
    fn coredns_changes_to_data_are_reported() {
        let corefile = r#"{"data":{"Corefile":".:53 {\n    forward . 198.51.100.1\n}\n"}}"#;
        let e = with_request(event("patch", "", "configmaps", "kube-system", "coredns", "mallory"), corefile);
        let findings = coredns_modified(&e, &Config::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(evidence(&findings[0], "object"), Some("ConfigMap kube-system/coredns"));
        let labels = r#"{"metadata":{"labels":{"owner":"platform"}}}"#;
        let e = with_request(event("patch", "", "configmaps", "kube-system", "coredns", "alice"), labels);
        assert!(coredns_modified(&e, &Config::default()).is_empty());
        let e = event("update", "", "configmaps", "kube-system", "kube-proxy", "alice");
        assert!(coredns_modified(&e, &Config::default()).is_empty());
        let e = event("delete", "", "configmaps", "kube-system", "coredns", "mallory");
        assert_eq!(coredns_modified(&e, &Config::default()).len(), 1);
        let e = event("get", "", "configmaps", "kube-system", "coredns", "mallory");
        assert!(coredns_modified(&e, &Config::default()).is_empty());
    }

    #[test]
    fn creating_coredns_custom_overrides_dns_and_creating_coredns_installs_it() {
        let custom = r#"{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"coredns-custom","namespace":"kube-system"},
            "data":{"internal.server":"corp.example:53 {\n    forward . 203.0.113.53\n}\n","log.override":"log\n"}}"#;
        let e = with_response(event("create", "", "configmaps", "kube-system", "coredns-custom", "mallory"), custom);
        let findings = coredns_modified(&e, &Config::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(
            findings[0].summary,
            "CoreDNS configuration: ConfigMap kube-system/coredns-custom created by mallory"
        );
        assert_eq!(evidence(&findings[0], "dataKeys"), Some("internal.server, log.override"));
        let e = with_request(event("update", "", "configmaps", "kube-system", "coredns-custom", "mallory"), custom);
        assert_eq!(coredns_modified(&e, &Config::default()).len(), 1);
        let empty = r#"{"kind":"ConfigMap","metadata":{"name":"coredns-custom","namespace":"kube-system"}}"#;
        let e = with_response(event("create", "", "configmaps", "kube-system", "coredns-custom", "aks"), empty);
        assert!(coredns_modified(&e, &Config::default()).is_empty());
        // The same name elsewhere is an application's ConfigMap.
        let e = event("create", "", "configmaps", "shop", "coredns-custom", "alice");
        assert!(coredns_modified(&e, &Config::default()).is_empty());
        let corefile = r#"{"kind":"ConfigMap","metadata":{"name":"coredns","namespace":"kube-system"},"data":{"Corefile":".:53 {}"}}"#;
        let e = with_response(event("create", "", "configmaps", "kube-system", "coredns", "alice"), corefile);
        assert!(coredns_modified(&e, &Config::default()).is_empty(), "CoreDNS being installed");
        let e = with_response(event("update", "", "configmaps", "kube-system", "coredns", "mallory"), corefile);
        assert_eq!(evidence(&coredns_modified(&e, &Config::default())[0], "dataKeys"), Some("Corefile"));
    }

    const WEBHOOK: &str = r#"{"kind":"MutatingWebhookConfiguration","metadata":{"name":"inject","managedFields":[
        {"manager":"kubectl-create","operation":"Update","time":"2025-05-01T08:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:webhooks":{".":{},"k:{\"name\":\"inject.example.com\"}":{".":{},"f:clientConfig":{".":{},"f:url":{}},"f:name":{},"f:rules":{}}}}},
        {"manager":"pilot-discovery","operation":"Update","time":"2025-06-01T12:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:webhooks":{"k:{\"name\":\"inject.example.com\"}":{"f:clientConfig":{"f:caBundle":{}}}}}}]},
        "webhooks":[{"name":"inject.example.com","clientConfig":{"url":"https://203.0.113.9/mutate","caBundle":"LS0t"}}]}"#;

    #[test]
    fn a_new_webhook_configuration_names_its_destinations() {
        let e = with_request(
            event("create", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "inject", "mallory"),
            WEBHOOK,
        );
        let findings = webhook_configuration(&e, &Config::default());
        assert_eq!(findings.len(), 1);
        assert_eq!(evidence(&findings[0], "webhooks[0]"), Some("inject.example.com -> https://203.0.113.9/mutate"));
        assert_eq!(findings[0].entities.workload_kind.as_deref(), Some("MutatingWebhookConfiguration"));
    }

    #[test]
    fn certificate_rotation_is_not_a_new_webhook() {
        let e = with_response(
            event(
                "update",
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                "",
                "inject",
                "system:serviceaccount:istio-system:istiod",
            ),
            WEBHOOK,
        );
        assert!(webhook_configuration(&e, &Config::default()).is_empty());
        let rotation = r#"{"webhooks":[{"name":"inject.example.com","clientConfig":{"caBundle":"LS0tLS1"}}]}"#;
        let e = with_response(
            with_request(
                event(
                    "patch",
                    "admissionregistration.k8s.io",
                    "mutatingwebhookconfigurations",
                    "",
                    "inject",
                    "cainjector",
                ),
                rotation,
            ),
            WEBHOOK,
        );
        assert!(webhook_configuration(&e, &Config::default()).is_empty());
        // The same manager changing the destination is reported.
        let redirected = WEBHOOK
            .replace(r#""f:clientConfig":{"f:caBundle":{}}"#, r#""f:clientConfig":{"f:caBundle":{},"f:url":{}}"#);
        let e = with_response(
            event(
                "update",
                "admissionregistration.k8s.io",
                "mutatingwebhookconfigurations",
                "",
                "inject",
                "system:serviceaccount:istio-system:istiod",
            ),
            &redirected,
        );
        assert_eq!(webhook_configuration(&e, &Config::default()).len(), 1);
    }
}
