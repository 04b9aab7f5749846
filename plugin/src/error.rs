/// Why a command failed. Each message says what went wrong and, where there is one, what to
/// do about it; `main` prints it and exits with status 1.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no cluster configured: {0}; point KUBECONFIG or --kubeconfig at a kubeconfig file")]
    NoCluster(String),

    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(#[source] kube::config::KubeconfigError),

    #[error("context {0} is not in the kubeconfig; `kubectl config get-contexts` lists them")]
    UnknownContext(String),

    #[error("cannot create a client for the cluster: {0}")]
    Client(#[source] kube::Error),

    #[error("cannot reach the cluster: {0}; check the kubeconfig's server address and your network")]
    Unreachable(#[source] kube::Error),

    #[error("{kind} {name} not found in namespace {namespace}; {}", list_hint(.kind, .namespace))]
    NotFound { kind: &'static str, name: String, namespace: String },

    #[error("the cluster does not serve this ({0}); are Riposte's CRDs installed?")]
    NotServed(String),

    #[error("forbidden: {0}")]
    Forbidden(String),

    #[error("the apiserver refused the request: {0}")]
    Refused(String),

    #[error("the apiserver answered {code}: {message}")]
    Status { code: u16, message: String },

    #[error("Kubernetes API request failed: {0}")]
    Api(#[source] kube::Error),

    #[error("the apiserver did not say who you are: its SelfSubjectReview has no username")]
    NoIdentity,

    #[error("responseaction {namespace}/{name} does not require approval: it runs without one")]
    ApprovalNotRequired { namespace: String, name: String },

    #[error("responseaction {namespace}/{name} was already {decision} by {by}")]
    AlreadyDecided { namespace: String, name: String, decision: &'static str, by: String },

    #[error("responseaction {namespace}/{name} is a {kind} action; a release undoes an Isolate action")]
    NotAnIsolation { namespace: String, name: String, kind: String },

    #[error("responseaction {namespace}/{name} isolates pod {isolated}, not {pod}")]
    OtherTarget { namespace: String, name: String, isolated: String, pod: String },

    #[error("responseaction {namespace}/{name} ended {phase}: {message}")]
    ActionEnded { namespace: String, name: String, phase: &'static str, message: String },

    #[error(
        "responseaction {namespace}/{name} is still {phase} after {waited}; raise --timeout or look at it with `kubectl riposte show action {name} -n {namespace}`"
    )]
    WaitTimedOut { namespace: String, name: String, phase: &'static str, waited: String },

    #[error("invalid duration {input:?}: {reason}; write numbers with units, such as 45s, 30m, 2h, 7d or 1h30m")]
    InvalidDuration { input: String, reason: String },

    #[error("unknown alert type {input:?}{}", suggest(.suggestions))]
    UnknownAlertType { input: String, suggestions: Vec<String> },

    #[error("{0} kept changing under concurrent writers; try again")]
    Conflict(String),

    #[error("namespace {0} does not exist: is Riposte installed there? Name its namespace with --operator-namespace")]
    OperatorNamespace(String),

    #[error("cannot print the output: {0}")]
    Output(String),

    #[error("hunt: {0}")]
    Hunt(String),
}

fn list_hint(kind: &str, namespace: &str) -> String {
    match kind {
        "responseaction" => {
            format!("list them with `kubectl riposte actions -n {namespace}` (or -A for every namespace)")
        }
        "alert" => format!("list them with `kubectl riposte alerts -n {namespace}` (or -A for every namespace)"),
        _ => format!("list them with `kubectl get {kind}s -n {namespace}`, or pick another namespace with -n"),
    }
}

fn suggest(suggestions: &[String]) -> String {
    if suggestions.is_empty() {
        "; the types are the alert catalog's ids, such as K8S_PrivilegedContainer".to_owned()
    } else {
        format!("; did you mean {}?", suggestions.join(", "))
    }
}

impl Error {
    /// An API error of a request about one object: a 404 means that object does not exist.
    pub fn about(e: kube::Error, kind: &'static str, namespace: &str, name: &str) -> Error {
        match &e {
            kube::Error::Api(status) if status.code == 404 => {
                Error::NotFound { kind, name: name.to_owned(), namespace: namespace.to_owned() }
            }
            _ => Error::from(e),
        }
    }

    /// Whether the apiserver refused a write because the object changed since it was read:
    /// a resourceVersion precondition (409), or a JSON patch `test` that failed (422).
    pub fn is_stale_write(e: &kube::Error) -> bool {
        matches!(e, kube::Error::Api(status) if status.code == 409 || status.code == 422)
    }
}

/// Which of the chart's roles grants what RBAC refused. Admission policy denials are 403s
/// too, but about a name on the object rather than a missing right, and get no hint.
fn role_hint(status: &kube::core::Status) -> Option<&'static str> {
    let rbac = status.message.contains("User \"") && status.message.contains("\" cannot ");
    match status.details.as_ref().map(|d| d.kind.as_str()).filter(|_| rbac)? {
        "responseactions" => Some("acting on pods and approving actions needs the riposte-responder role"),
        "alerts" => Some("triaging and commenting on alerts needs the riposte-alert-manager or riposte-responder role"),
        "responsepolicies" => Some("reading ResponsePolicies needs the riposte-viewer role or above"),
        "configmaps" => {
            Some("pausing and resuming automation needs the riposte-automation-switch Role in the operator's namespace")
        }
        _ => None,
    }
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Error {
        match e {
            kube::Error::Api(status) => match status.code {
                403 => Error::Forbidden(match role_hint(&status) {
                    Some(hint) => format!("{}; {hint}", status.message),
                    None => status.message,
                }),
                404 => Error::NotServed(status.message),
                400 | 409 | 422 => Error::Refused(status.message),
                code => Error::Status { code, message: status.message },
            },
            kube::Error::HyperError(_) | kube::Error::Service(_) => Error::Unreachable(e),
            other => Error::Api(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api_error(code: u16, message: &str) -> kube::Error {
        let status = kube::core::Status { code, message: message.to_owned(), ..kube::core::Status::default() };
        kube::Error::Api(Box::new(status))
    }

    #[test]
    fn a_missing_object_is_named_with_where_to_look() {
        let e =
            Error::about(api_error(404, "responseactions.riposte.dev \"x\" not found"), "responseaction", "shop", "x");
        assert_eq!(
            e.to_string(),
            "responseaction x not found in namespace shop; list them with `kubectl riposte actions -n shop` (or -A for every namespace)"
        );
        let e = Error::about(api_error(404, "pods \"web\" not found"), "pod", "shop", "web");
        assert!(
            e.to_string().starts_with("pod web not found in namespace shop; list them with `kubectl get pods -n shop`")
        );
    }

    #[test]
    fn the_apiservers_message_is_passed_through() {
        let denied = "ValidatingAdmissionPolicy 'riposte-approval' denied request: the requester cannot approve";
        assert_eq!(
            Error::from(api_error(422, denied)).to_string(),
            format!("the apiserver refused the request: {denied}")
        );
        let rbac = "responseactions.riposte.dev is forbidden: User \"eve\" cannot create resource \"responseactions\"";
        assert_eq!(Error::from(api_error(403, rbac)).to_string(), format!("forbidden: {rbac}"));
        // A 403 is about permission, not about the object: `about` does not turn it into "not found".
        assert!(matches!(Error::about(api_error(403, rbac), "alert", "shop", "a"), Error::Forbidden(_)));
        assert!(matches!(Error::from(api_error(500, "etcd down")), Error::Status { code: 500, .. }));
    }

    #[test]
    fn rbac_denials_name_the_role_that_is_missing() {
        let message = "responseactions.riposte.dev is forbidden: User \"alice\" cannot create resource \"responseactions\" in API group \"riposte.dev\" in the namespace \"shop\"";
        let details: kube::core::response::StatusDetails =
            serde_json::from_value(serde_json::json!({ "kind": "responseactions" })).unwrap();
        let status = kube::core::Status {
            code: 403,
            message: message.into(),
            details: Some(details.clone()),
            ..Default::default()
        };
        assert_eq!(
            Error::from(kube::Error::Api(Box::new(status))).to_string(),
            format!("forbidden: {message}; acting on pods and approving actions needs the riposte-responder role")
        );
        let denied = "responseactions.riposte.dev \"x\" is forbidden: ValidatingAdmissionPolicy 'riposte-provenance' denied request: an action cannot be approved or rejected by the identity that requested it";
        let status =
            kube::core::Status { code: 403, message: denied.into(), details: Some(details), ..Default::default() };
        assert_eq!(Error::from(kube::Error::Api(Box::new(status))).to_string(), format!("forbidden: {denied}"));
    }

    #[test]
    fn stale_writes_are_conflicts_and_failed_tests() {
        assert!(Error::is_stale_write(&api_error(409, "the object has been modified")));
        assert!(Error::is_stale_write(&api_error(422, "testing value /metadata/resourceVersion failed")));
        assert!(!Error::is_stale_write(&api_error(403, "forbidden")));
    }

    #[test]
    fn unknown_alert_types_suggest_close_ids() {
        let e = Error::UnknownAlertType { input: "reverse".into(), suggestions: vec!["K8S.NODE_ReverseShell".into()] };
        assert_eq!(e.to_string(), "unknown alert type \"reverse\"; did you mean K8S.NODE_ReverseShell?");
        let e = Error::UnknownAlertType { input: "zzz".into(), suggestions: vec![] };
        assert!(e.to_string().ends_with("such as K8S_PrivilegedContainer"));
    }
}
