//! Reconciles against a mocked API server (kube's `tower-test` pattern): every test states
//! the exact sequence of requests a reconcile makes, answers them, and checks what is written.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc::unbounded;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector;
use prometheus_client::registry::Registry;
use riposte_crds::{ActionKind, Alert, ResponseAction, ResponseActionSpec, ResponsePolicy, Target, TerminateOptions};
use serde_json::{Value, json};
use tower_test::mock::{self, SendResponse};

use super::{Context, FINALIZER, Settings, action_error_policy, reconcile_action};
use crate::error::Error;
use crate::guard::Guardrails;
use crate::metrics::{Metrics, OutcomeLabels};

type Handle = mock::Handle<Request<Body>, Response<Body>>;

const NS: &str = "shop";
const POD: &str = "web-1";
const POD_UID: &str = "4f1c2a9e-0000-4000-8000-000000000001";
/// How long any single step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(5);

// ===== fixtures =====

fn context(client: Client) -> Arc<Context> {
    let (actions, _writer) = reflector::store::<ResponseAction>();
    let (alerts, _writer) = reflector::store::<Alert>();
    let (policies, _writer) = reflector::store::<ResponsePolicy>();
    let (wake, _woken) = unbounded();
    Arc::new(Context {
        client: client.clone(),
        settings: Settings {
            guardrails: Guardrails { protected_namespaces: ["kube-system".to_owned()].into(), own_pod: None },
            namespace: "riposte-system".into(),
            identity: "system:serviceaccount:riposte-system:riposte".into(),
            alert_dedup_window: Duration::from_secs(3600),
        },
        recorder: Recorder::new(client, Reporter { controller: "riposte".into(), instance: None }),
        metrics: Metrics::register(&mut Registry::default()),
        actions,
        alerts,
        policies,
        automated: Mutex::default(),
        wake,
        failures: Mutex::default(),
        enforcer: Mutex::default(),
    })
}

fn action(namespace: &str, name: &str, kind: ActionKind) -> ResponseAction {
    let mut action = ResponseAction::new(
        name,
        ResponseActionSpec {
            action: kind,
            target: Target { pod: POD.into() },
            requested_by: "carol".into(),
            policy_ref: None,
            approval_required: false,
            approval: None,
            comment: None,
            alert_ref: None,
            dry_run: false,
            isolation: None,
            terminate: None,
            release: None,
            comments: Vec::new(),
        },
    );
    action.metadata.namespace = Some(namespace.into());
    action.metadata.uid = Some(format!("uid-of-{name}"));
    action.metadata.resource_version = Some("1".into());
    action.metadata.generation = Some(1);
    action
}

fn terminate(name: &str, grace: Option<i64>) -> ResponseAction {
    let mut action = action(NS, name, ActionKind::Terminate);
    action.spec.terminate = Some(TerminateOptions { grace_period_seconds: grace, evidence: None });
    action
}

fn pod(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": POD,
            "namespace": namespace,
            "uid": POD_UID,
            "resourceVersion": "100",
            "ownerReferences": [{
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-5d8f",
                "uid": "rs-uid",
                "controller": true,
            }],
        },
        "spec": {
            "nodeName": "node-a",
            "containers": [{ "name": "web", "image": "nginx" }],
        },
    })
}

/// The object the API server returns for a status apply: `object` with the applied status
/// and a new resourceVersion.
fn status_applied(object: &Value, applied: &Value, resource_version: &str) -> Value {
    let mut object = object.clone();
    object["status"] = applied["status"].clone();
    object["metadata"]["resourceVersion"] = json!(resource_version);
    object
}

fn history_events(body: &Value) -> Vec<String> {
    body["status"]["history"]
        .as_array()
        .expect("status.history")
        .iter()
        .map(|h| h["event"].as_str().expect("history event").to_owned())
        .collect()
}

fn action_path(namespace: &str, name: &str) -> String {
    format!("/apis/riposte.dev/v1alpha1/namespaces/{namespace}/responseactions/{name}")
}

fn status_path(namespace: &str, name: &str) -> String {
    format!("{}/status", action_path(namespace, name))
}

fn pod_path(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{POD}")
}

// ===== the mocked API server =====

/// One request received by the mocked API server, waiting for its answer.
struct Call {
    method: Method,
    path: String,
    query: BTreeMap<String, String>,
    content_type: Option<String>,
    body: Value,
    respond: SendResponse<Response<Body>>,
}

impl Call {
    fn reply(self, code: u16, body: &Value) {
        let response = Response::builder()
            .status(StatusCode::from_u16(code).expect("status code"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(body).expect("response body")))
            .expect("response");
        self.respond.send_response(response);
    }

    fn ok(self, body: &Value) {
        self.reply(200, body);
    }

    /// A failure, as the API server reports it: a `Status` object.
    fn fail(self, code: u16, reason: &str, message: &str) {
        self.reply(
            code,
            &json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            }),
        );
    }

    /// A server-side apply of a status under Riposte's field manager.
    fn assert_status_apply(&self, namespace: &str, name: &str) {
        assert_eq!((&self.method, self.path.as_str()), (&Method::PATCH, status_path(namespace, name).as_str()));
        assert_eq!(self.query.get("fieldManager").map(String::as_str), Some("riposte"));
        assert_eq!(self.query.get("force").map(String::as_str), Some("true"));
        assert_eq!(self.content_type.as_deref(), Some("application/apply-patch+yaml"));
        assert_eq!(self.body["apiVersion"], "riposte.dev/v1alpha1");
        assert_eq!(self.body["kind"], "ResponseAction");
        assert_eq!(self.body["metadata"]["name"], name);
    }
}

struct ApiServer {
    handle: Handle,
    /// Every request received, as "METHOD path", in order.
    log: Vec<String>,
}

impl ApiServer {
    async fn next(&mut self) -> Call {
        let (request, respond) = tokio::time::timeout(STEP, self.handle.next_request())
            .await
            .unwrap_or_else(|_| panic!("no further request came within {STEP:?}; requests so far: {:#?}", self.log))
            .unwrap_or_else(|| panic!("the client was dropped; requests so far: {:#?}", self.log));
        let (parts, body) = request.into_parts();
        let query = parts
            .uri
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (pair.to_owned(), String::new()),
            })
            .collect();
        let bytes = body.collect_bytes().await.expect("request body");
        let body =
            if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("request body is JSON") };
        let call = Call {
            method: parts.method,
            path: parts.uri.path().to_owned(),
            query,
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().expect("content type").to_owned()),
            body,
            respond,
        };
        self.log.push(format!("{} {}", call.method, call.path));
        call
    }

    /// The next request, which must be `method path`.
    async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "unexpected request; requests so far: {:#?}",
            self.log
        );
        call
    }

    /// The next request, which must publish an Event in `namespace` about `kind` `name`;
    /// answered with the Event echoed. Returns the Event.
    async fn expect_event(&mut self, namespace: &str, kind: &str, name: &str) -> Value {
        let call = self.expect(Method::POST, &format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events")).await;
        let event = call.body.clone();
        assert_eq!(event["regarding"]["kind"], kind, "{event:#}");
        assert_eq!(event["regarding"]["name"], name, "{event:#}");
        assert_eq!(event["reportingController"], "riposte");
        call.reply(201, &event);
        event
    }

    /// No request comes after those already answered: waits until every client is dropped.
    async fn done(mut self) -> Vec<String> {
        match tokio::time::timeout(STEP, self.handle.next_request()).await {
            Ok(None) => self.log,
            Ok(Some((request, _))) => {
                panic!("unexpected request {} {} after {:#?}", request.method(), request.uri(), self.log)
            }
            Err(_) => panic!("the client was never dropped; is a Context still alive?"),
        }
    }
}

/// A client whose requests go to the returned mocked API server, and a context around it.
fn mocked() -> (Arc<Context>, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    (context(client), ApiServer { handle, log: Vec::new() })
}

/// Runs the reconcile of `action` while `scenario` plays the API server, then checks that the
/// reconcile made no request beyond the scenario. Returns the reconcile's result and the
/// log of requests.
async fn run<F, Fut>(
    ctx: Arc<Context>,
    server: ApiServer,
    action: ResponseAction,
    scenario: F,
) -> (Result<Action, Error>, Vec<String>)
where
    F: FnOnce(ApiServer) -> Fut,
    Fut: Future<Output = ApiServer> + Send + 'static,
{
    let scenario = tokio::spawn(scenario(server));
    let result =
        tokio::time::timeout(STEP * 2, reconcile_action(Arc::new(action), ctx)).await.expect("the reconcile finished");
    let server = match scenario.await {
        Ok(server) => server,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let log = server.done().await;
    (result, log)
}

fn expect_log(log: &[String], expected: &[(Method, String)]) {
    let expected: Vec<String> = expected.iter().map(|(method, path)| format!("{method} {path}")).collect();
    assert_eq!(log, expected.as_slice());
}

fn events_path(namespace: &str) -> String {
    format!("/apis/events.k8s.io/v1/namespaces/{namespace}/events")
}

// ===== the tests =====

/// The first reconcile of a Terminate action pins the pod's UID in the status before it
/// deletes exactly that pod, then records the outcome on top of that status.
#[tokio::test]
async fn terminate_pins_the_uid_then_deletes_exactly_that_pod() {
    let (ctx, server) = mocked();
    let action = terminate("kill-web", Some(5));
    let object = serde_json::to_value(&action).unwrap();
    // Shares its counters with the context's.
    let outcomes = ctx.metrics.outcomes.clone();

    let (result, log) = run(ctx, server, action, |mut server| async move {
        server.expect(Method::GET, &pod_path(NS)).await.ok(&pod(NS));

        let running = server.expect(Method::PATCH, &status_path(NS, "kill-web")).await;
        running.assert_status_apply(NS, "kill-web");
        let body = running.body.clone();
        assert_eq!(body["metadata"]["resourceVersion"], "1");
        assert_eq!(body["status"]["phase"], "Running");
        assert_eq!(body["status"]["target"]["uid"], POD_UID);
        assert_eq!(body["status"]["target"]["pod"], POD);
        assert_eq!(body["status"]["target"]["node"], "node-a");
        assert_eq!(body["status"]["target"]["owner"]["kind"], "ReplicaSet");
        assert_eq!(body["status"]["observedGeneration"], 1);
        assert_eq!(history_events(&body), ["TargetResolved"]);
        let object = status_applied(&object, &body, "2");
        running.ok(&object);

        let delete = server.expect(Method::DELETE, &pod_path(NS)).await;
        assert_eq!(delete.body["preconditions"]["uid"], POD_UID);
        assert_eq!(delete.body["gracePeriodSeconds"], 5);
        let mut deleted = pod(NS);
        deleted["metadata"]["deletionTimestamp"] = json!("2025-01-01T00:00:00Z");
        delete.ok(&deleted);

        let done = server.expect(Method::PATCH, &status_path(NS, "kill-web")).await;
        done.assert_status_apply(NS, "kill-web");
        let body = done.body.clone();
        // Written on top of the status the first write returned, not the stale one.
        assert_eq!(body["metadata"]["resourceVersion"], "2");
        assert_eq!(body["status"]["phase"], "Succeeded");
        assert_eq!(body["status"]["target"]["uid"], POD_UID);
        assert_eq!(history_events(&body), ["TargetResolved", "PodDeleted"]);
        let message = body["status"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("deleted pod {POD} (uid {POD_UID}) on node node-a")), "{message}");
        assert!(
            message.ends_with("with a grace period of 5s; its ReplicaSet web-5d8f will create a replacement"),
            "{message}"
        );
        let conditions = body["status"]["conditions"].as_array().unwrap();
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0]["type"], "Completed");
        assert_eq!(conditions[0]["status"], "True");
        assert_eq!(conditions[0]["reason"], "PodDeleted");
        assert!(body["status"]["completionTime"].is_string());
        done.ok(&status_applied(&object, &body, "3"));

        let event = server.expect_event(NS, "ResponseAction", "kill-web").await;
        assert_eq!(event["reason"], "Terminated");
        assert_eq!(event["type"], "Normal");
        assert_eq!(event["action"], "Terminate");
        assert_eq!(event["note"], message);
        server
    })
    .await;

    assert_eq!(result.unwrap(), Action::await_change());
    expect_log(
        &log,
        &[
            (Method::GET, pod_path(NS)),
            (Method::PATCH, status_path(NS, "kill-web")),
            (Method::DELETE, pod_path(NS)),
            (Method::PATCH, status_path(NS, "kill-web")),
            (Method::POST, events_path(NS)),
        ],
    );
    let outcome =
        outcomes.get_or_create(&OutcomeLabels { action: "Terminate".into(), phase: "Succeeded".into() }).get();
    assert_eq!(outcome, 1);
}

/// A target that does not exist is no error: the action fails with a message saying so and
/// waits for a change.
#[tokio::test]
async fn terminate_of_a_missing_pod_fails_the_action_without_error() {
    let (ctx, server) = mocked();
    let action = terminate("kill-web", None);
    let object = serde_json::to_value(&action).unwrap();

    let (result, log) = run(ctx, server, action, |mut server| async move {
        server.expect(Method::GET, &pod_path(NS)).await.fail(404, "NotFound", &format!("pods \"{POD}\" not found"));

        let failed = server.expect(Method::PATCH, &status_path(NS, "kill-web")).await;
        failed.assert_status_apply(NS, "kill-web");
        let body = failed.body.clone();
        assert_eq!(body["metadata"]["resourceVersion"], "1");
        assert_eq!(body["status"]["phase"], "Failed");
        assert_eq!(body["status"]["message"], format!("pod {POD} not found in namespace {NS}"));
        assert!(body["status"].get("target").is_none());
        assert_eq!(history_events(&body), ["TargetNotFound"]);
        assert_eq!(body["status"]["conditions"][0]["type"], "Completed");
        assert_eq!(body["status"]["conditions"][0]["status"], "False");
        assert_eq!(body["status"]["conditions"][0]["reason"], "TargetNotFound");
        failed.ok(&status_applied(&object, &body, "2"));

        let event = server.expect_event(NS, "ResponseAction", "kill-web").await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "TargetNotFound");
        server
    })
    .await;

    assert_eq!(result.unwrap(), Action::await_change());
    expect_log(
        &log,
        &[(Method::GET, pod_path(NS)), (Method::PATCH, status_path(NS, "kill-web")), (Method::POST, events_path(NS))],
    );
}

/// A status write that conflicts with a concurrent writer is recomputed on the fresh object:
/// the history that writer added survives, and later writes build on it.
#[tokio::test]
async fn status_conflict_reapplies_on_the_fresh_object_without_losing_history() {
    let (ctx, server) = mocked();
    let action = terminate("kill-web", Some(0));
    let stale = serde_json::to_value(&action).unwrap();

    let (result, log) = run(ctx, server, action, |mut server| async move {
        server.expect(Method::GET, &pod_path(NS)).await.ok(&pod(NS));

        let first = server.expect(Method::PATCH, &status_path(NS, "kill-web")).await;
        first.assert_status_apply(NS, "kill-web");
        assert_eq!(first.body["metadata"]["resourceVersion"], "1");
        first.fail(
            409,
            "Conflict",
            "Operation cannot be fulfilled on responseactions.riposte.dev \"kill-web\": the object has been modified; please apply your changes to the latest version and try again",
        );

        // Meanwhile an analyst commented and another writer recorded two history entries.
        let history = json!([
            { "time": "2025-01-01T10:00:00Z", "event": "Comment", "message": "looks like a miner" },
            { "time": "2025-01-01T10:00:05Z", "event": "Escalated", "message": "paged the on-call" },
        ]);
        let mut fresh = stale.clone();
        fresh["metadata"]["resourceVersion"] = json!("7");
        fresh["spec"]["comments"] =
            json!([{ "message": "looks like a miner", "author": "alice", "time": "2025-01-01T10:00:00Z" }]);
        fresh["status"] = json!({ "history": history });
        server
            .expect(Method::GET, &action_path(NS, "kill-web"))
            .await
            .ok(&fresh);

        let again = server.expect(Method::PATCH, &status_path(NS, "kill-web")).await;
        again.assert_status_apply(NS, "kill-web");
        let body = again.body.clone();
        assert_eq!(body["metadata"]["resourceVersion"], "7");
        assert_eq!(body["status"]["phase"], "Running");
        assert_eq!(body["status"]["target"]["uid"], POD_UID);
        let applied = body["status"]["history"].as_array().unwrap();
        assert_eq!(applied.len(), 3, "{applied:#?}");
        assert_eq!(applied[..2], history.as_array().unwrap()[..]);
        assert_eq!(applied[2]["event"], "TargetResolved");
        let object = status_applied(&fresh, &body, "8");
        again.ok(&object);

        let delete = server.expect(Method::DELETE, &pod_path(NS)).await;
        assert_eq!(delete.body["preconditions"]["uid"], POD_UID);
        assert_eq!(delete.body["gracePeriodSeconds"], 0);
        delete.ok(&pod(NS));

        let done = server.expect(Method::PATCH, &status_path(NS, "kill-web")).await;
        done.assert_status_apply(NS, "kill-web");
        let body = done.body.clone();
        assert_eq!(body["metadata"]["resourceVersion"], "8");
        assert_eq!(body["status"]["phase"], "Succeeded");
        assert_eq!(
            history_events(&body),
            ["Comment", "Escalated", "TargetResolved", "PodDeleted"]
        );
        assert_eq!(
            body["status"]["history"].as_array().unwrap()[..2],
            history.as_array().unwrap()[..]
        );
        done.ok(&status_applied(&object, &body, "9"));

        server.expect_event(NS, "ResponseAction", "kill-web").await;
        server
    })
    .await;

    assert_eq!(result.unwrap(), Action::await_change());
    expect_log(
        &log,
        &[
            (Method::GET, pod_path(NS)),
            (Method::PATCH, status_path(NS, "kill-web")),
            (Method::GET, action_path(NS, "kill-web")),
            (Method::PATCH, status_path(NS, "kill-web")),
            (Method::DELETE, pod_path(NS)),
            (Method::PATCH, status_path(NS, "kill-web")),
            (Method::POST, events_path(NS)),
        ],
    );
}

/// Answers one GET of the pod with an internal error.
async fn pod_get_fails(mut server: ApiServer) -> ApiServer {
    server.expect(Method::GET, &pod_path(NS)).await.fail(500, "InternalError", "etcdserver: request timed out");
    server
}

fn assert_transient(result: &Result<Action, Error>) {
    match result {
        Err(Error::Kube(kube::Error::Api(status))) => assert_eq!(status.code, 500),
        other => panic!("expected the API error, got {other:?}"),
    }
}

/// A transient API error fails the reconcile; it is retried after 1s, then 2s.
#[tokio::test]
async fn transient_errors_are_retried_with_a_growing_delay() {
    let (ctx, server) = mocked();
    let action = terminate("kill-web", None);
    let keep = ctx.clone();

    let scenario = tokio::spawn(async move {
        let server = pod_get_fails(server).await;
        pod_get_fails(server).await
    });
    let first = reconcile_action(Arc::new(action.clone()), ctx.clone()).await;
    assert_transient(&first);
    assert_eq!(
        action_error_policy(Arc::new(action.clone()), &first.unwrap_err(), ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    let second = reconcile_action(Arc::new(action.clone()), ctx.clone()).await;
    assert_transient(&second);
    assert_eq!(
        action_error_policy(Arc::new(action), &second.unwrap_err(), ctx),
        Action::requeue(Duration::from_secs(2))
    );
    let server = match scenario.await {
        Ok(server) => server,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    let failures = keep
        .metrics
        .failures
        .get_or_create(&crate::metrics::ErrorLabels { kind: "ResponseAction".into(), error: "kube".into() })
        .get();
    assert_eq!(failures, 2);
    drop(keep);
    expect_log(&server.done().await, &[(Method::GET, pod_path(NS)), (Method::GET, pod_path(NS))]);
}

/// Once an action reconciles successfully, its next failure is retried quickly again.
#[tokio::test]
async fn a_successful_reconcile_resets_the_retry_delay() {
    let (ctx, server) = mocked();
    let action = terminate("kill-web", None);
    let object = serde_json::to_value(&action).unwrap();

    let scenario = tokio::spawn(async move {
        let server = pod_get_fails(server).await;
        let mut server = pod_get_fails(server).await;
        // Then the pod turns out to be gone: the action fails, the reconcile succeeds.
        server.expect(Method::GET, &pod_path(NS)).await.fail(404, "NotFound", "pods \"web-1\" not found");
        let failed = server.expect(Method::PATCH, &status_path(NS, "kill-web")).await;
        let body = failed.body.clone();
        failed.ok(&status_applied(&object, &body, "2"));
        server.expect_event(NS, "ResponseAction", "kill-web").await;
        pod_get_fails(server).await
    });
    let reconcile = || reconcile_action(Arc::new(action.clone()), ctx.clone());
    let retry = |e: &Error| action_error_policy(Arc::new(action.clone()), e, ctx.clone());

    assert_eq!(retry(&reconcile().await.unwrap_err()), Action::requeue(Duration::from_secs(1)));
    assert_eq!(retry(&reconcile().await.unwrap_err()), Action::requeue(Duration::from_secs(2)));
    assert_eq!(reconcile().await.unwrap(), Action::await_change());
    assert_eq!(retry(&reconcile().await.unwrap_err()), Action::requeue(Duration::from_secs(1)));

    let server = match scenario.await {
        Ok(server) => server,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    drop(ctx);
    assert_eq!(server.done().await.len(), 6);
}

/// Pods of protected namespaces are never isolated: the action fails at once and the pod
/// is left untouched.
#[tokio::test]
async fn isolate_in_a_protected_namespace_is_refused_without_touching_the_pod() {
    let (ctx, server) = mocked();
    let mut action = action("kube-system", "cut-dns", ActionKind::Isolate);
    action.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let object = serde_json::to_value(&action).unwrap();

    let (result, log) = run(ctx, server, action, |mut server| async move {
        server.expect(Method::GET, &pod_path("kube-system")).await.ok(&pod("kube-system"));

        let failed = server.expect(Method::PATCH, &status_path("kube-system", "cut-dns")).await;
        failed.assert_status_apply("kube-system", "cut-dns");
        let body = failed.body.clone();
        assert_eq!(body["metadata"]["resourceVersion"], "1");
        assert_eq!(body["status"]["phase"], "Failed");
        let message = body["status"]["message"].as_str().unwrap();
        assert!(message.starts_with("refused: namespace kube-system is protected"), "{message}");
        assert!(body["status"].get("target").is_none());
        assert_eq!(history_events(&body), ["Refused"]);
        assert_eq!(body["status"]["conditions"][0]["reason"], "Refused");
        failed.ok(&status_applied(&object, &body, "2"));

        // On the action, and on the pod it refused to touch.
        let event = server.expect_event("kube-system", "ResponseAction", "cut-dns").await;
        assert_eq!(event["type"], "Warning");
        assert_eq!(event["reason"], "Refused");
        let event = server.expect_event("kube-system", "Pod", POD).await;
        assert_eq!(event["reason"], "Refused");
        server
    })
    .await;

    assert_eq!(result.unwrap(), Action::await_change());
    // In particular no PATCH of the pod (its label) and no NetworkPolicy.
    expect_log(
        &log,
        &[
            (Method::GET, pod_path("kube-system")),
            (Method::PATCH, status_path("kube-system", "cut-dns")),
            (Method::POST, events_path("kube-system")),
            (Method::POST, events_path("kube-system")),
        ],
    );
}

/// An isolation is first made undeletable until released: the first reconcile adds the
/// finalizer and does nothing else.
#[tokio::test]
async fn isolate_first_adds_its_finalizer_and_nothing_else() {
    let (ctx, server) = mocked();
    let action = action(NS, "cut-web", ActionKind::Isolate);
    let object = serde_json::to_value(&action).unwrap();

    let (result, log) = run(ctx, server, action, |mut server| async move {
        let patch = server.expect(Method::PATCH, &action_path(NS, "cut-web")).await;
        assert_eq!(patch.content_type.as_deref(), Some("application/json-patch+json"));
        assert_eq!(
            patch.body,
            json!([
                { "op": "test", "path": "/metadata/finalizers", "value": null },
                { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
            ])
        );
        let mut patched = object.clone();
        patched["metadata"]["finalizers"] = json!([FINALIZER]);
        patched["metadata"]["resourceVersion"] = json!("2");
        patch.ok(&patched);
        server
    })
    .await;

    assert_eq!(FINALIZER, "riposte.dev/release-isolation");
    assert_eq!(result.unwrap(), Action::await_change());
    expect_log(&log, &[(Method::PATCH, action_path(NS, "cut-web"))]);
}

fn policy_path(name: &str) -> String {
    format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies/{name}")
}

/// The first isolation pass after the finalizer: pin the pod, label it, apply its policy,
/// keep an existing allowing policy from selecting it, and record all of it on top of the
/// status written first.
#[tokio::test]
async fn isolate_labels_the_pod_applies_its_policy_and_excludes_allowing_policies() {
    let (ctx, server) = mocked();
    let mut action = action(NS, "cut-web", ActionKind::Isolate);
    action.metadata.finalizers = Some(vec![FINALIZER.into()]);
    let object = serde_json::to_value(&action).unwrap();
    let mut web = pod(NS);
    web["metadata"]["labels"] = json!({ "app": "web" });
    let allow_web = json!({
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": { "name": "allow-web", "namespace": NS, "resourceVersion": "50" },
        "spec": {
            "podSelector": { "matchLabels": { "app": "web" } },
            "policyTypes": ["Ingress"],
            "ingress": [{}],
        },
    });

    let (result, log) = run(ctx, server, action, |mut server| async move {
        server.expect(Method::GET, &pod_path(NS)).await.ok(&web);

        let running = server.expect(Method::PATCH, &status_path(NS, "cut-web")).await;
        running.assert_status_apply(NS, "cut-web");
        let body = running.body.clone();
        assert_eq!(body["metadata"]["resourceVersion"], "1");
        assert_eq!(body["status"]["phase"], "Running");
        assert_eq!(body["status"]["target"]["uid"], POD_UID);
        let object = status_applied(&object, &body, "2");
        running.ok(&object);

        // Every pass reads the pinned pod again, the first one included.
        server.expect(Method::GET, &pod_path(NS)).await.ok(&web);

        // The pod's UID rides in the label patch as a precondition.
        let label = server.expect(Method::PATCH, &pod_path(NS)).await;
        assert_eq!(label.content_type.as_deref(), Some("application/merge-patch+json"));
        assert_eq!(
            label.body,
            json!({ "metadata": { "uid": POD_UID, "labels": { "riposte.dev/isolated": "cut-web" } } })
        );
        let mut labelled = web.clone();
        labelled["metadata"]["labels"]["riposte.dev/isolated"] = json!("cut-web");
        label.ok(&labelled);

        server.expect(Method::GET, &policy_path("riposte-isolate-cut-web")).await.fail(
            404,
            "NotFound",
            "networkpolicies.networking.k8s.io \"riposte-isolate-cut-web\" not found",
        );
        let apply = server.expect(Method::PATCH, &policy_path("riposte-isolate-cut-web")).await;
        assert_eq!(apply.query.get("fieldManager").map(String::as_str), Some("riposte"));
        assert_eq!(apply.query.get("force").map(String::as_str), Some("true"));
        let policy = apply.body.clone();
        assert_eq!(policy["kind"], "NetworkPolicy");
        assert_eq!(policy["spec"]["podSelector"]["matchLabels"]["riposte.dev/isolated"], "cut-web");
        assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(policy["metadata"]["ownerReferences"][0]["uid"], "uid-of-cut-web");
        apply.ok(&policy);

        server.expect(Method::GET, &format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies")).await.ok(
            &json!({
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicyList",
                "metadata": { "resourceVersion": "60" },
                "items": [allow_web, policy],
            }),
        );

        let exclude = server.expect(Method::PATCH, &policy_path("allow-web")).await;
        assert_eq!(
            exclude.body,
            json!({
                "metadata": {
                    "resourceVersion": "50",
                    "annotations": { "riposte.dev/excluded-for": "cut-web" },
                },
                "spec": { "podSelector": { "matchExpressions": [
                    { "key": "riposte.dev/isolated", "operator": "DoesNotExist" },
                ] } },
            })
        );
        let mut excluded = allow_web.clone();
        excluded["metadata"]["annotations"] = exclude.body["metadata"]["annotations"].clone();
        excluded["spec"]["podSelector"]["matchExpressions"] =
            exclude.body["spec"]["podSelector"]["matchExpressions"].clone();
        exclude.ok(&excluded);

        server.expect(Method::GET, "/apis/apps/v1/daemonsets").await.ok(&json!({
            "apiVersion": "apps/v1",
            "kind": "DaemonSetList",
            "metadata": { "resourceVersion": "61" },
            "items": [{
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": { "name": "calico-node", "namespace": "kube-system" },
                "spec": {
                    "selector": { "matchLabels": { "k8s-app": "calico-node" } },
                    "template": { "spec": { "containers": [
                        { "name": "calico-node", "image": "calico/node" },
                    ] } },
                },
                "status": { "currentNumberScheduled": 3, "desiredNumberScheduled": 3, "numberMisscheduled": 0, "numberReady": 3 },
            }],
        }));

        let done = server.expect(Method::PATCH, &status_path(NS, "cut-web")).await;
        done.assert_status_apply(NS, "cut-web");
        let body = done.body.clone();
        assert_eq!(body["metadata"]["resourceVersion"], "2");
        assert_eq!(body["status"]["phase"], "Succeeded");
        assert_eq!(body["status"]["target"]["uid"], POD_UID);
        assert_eq!(body["status"]["excludedPolicies"], json!(["allow-web"]));
        assert_eq!(body["status"]["createdObjects"][0]["name"], "riposte-isolate-cut-web");
        assert_eq!(history_events(&body), ["TargetResolved", "PodLabelled", "PolicyApplied", "PolicyExcluded"]);
        let conditions: BTreeMap<String, (String, String)> = body["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap().to_owned(),
                    (c["status"].as_str().unwrap().to_owned(), c["reason"].as_str().unwrap().to_owned()),
                )
            })
            .collect();
        let expected: BTreeMap<String, (String, String)> = [
            ("Completed", ("True", "Isolated")),
            ("Degraded", ("False", "Whole")),
            ("Isolated", ("True", "PolicyApplied")),
            ("NetworkPolicyEnforcement", ("True", "EnforcerFound")),
        ]
        .into_iter()
        .map(|(t, (s, r))| (t.to_owned(), (s.to_owned(), r.to_owned())))
        .collect();
        assert_eq!(conditions, expected);
        done.ok(&status_applied(&object, &body, "3"));

        let event = server.expect_event(NS, "ResponseAction", "cut-web").await;
        assert_eq!(event["reason"], "Isolated");
        let event = server.expect_event(NS, "Pod", POD).await;
        assert_eq!(event["reason"], "Isolated");
        server
    })
    .await;

    assert_eq!(result.unwrap(), Action::requeue(super::ISOLATION_RESYNC));
    expect_log(
        &log,
        &[
            (Method::GET, pod_path(NS)),
            (Method::PATCH, status_path(NS, "cut-web")),
            (Method::GET, pod_path(NS)),
            (Method::PATCH, pod_path(NS)),
            (Method::GET, policy_path("riposte-isolate-cut-web")),
            (Method::PATCH, policy_path("riposte-isolate-cut-web")),
            (Method::GET, format!("/apis/networking.k8s.io/v1/namespaces/{NS}/networkpolicies")),
            (Method::PATCH, policy_path("allow-web")),
            (Method::GET, "/apis/apps/v1/daemonsets".to_owned()),
            (Method::PATCH, status_path(NS, "cut-web")),
            (Method::POST, events_path(NS)),
            (Method::POST, events_path(NS)),
        ],
    );
}
