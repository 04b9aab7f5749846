//! Two replicas with leader election against a real kube-apiserver: only the leader acts;
//! when it dies mid-way the other finishes the work, nothing is done twice, no history lost.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::ListParams;
use riposte_crds::Phase;
use riposte_e2e::Env;
use serde_json::json;

const ACTIONS: usize = 30;

async fn holder(env: &Env) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(env.client.clone(), "riposte-system");
    leases.get_opt("riposte-leader").await.ok()??.spec?.holder_identity
}

#[tokio::test]
async fn the_standby_replica_takes_over_a_dead_leaders_work_without_doing_anything_twice() {
    let env = Env::start().await;
    env.namespace("riposte-system").await;
    env.namespace("shop").await;
    for i in 0..ACTIONS {
        env.pod("shop", &format!("web-{i}"), &[("app", "web")]).await;
    }
    let first = env.spawn_replica(env.client.clone(), "replica-a");
    env.until("replica-a to lead", || async { (holder(&env).await.as_deref() == Some("replica-a")).then_some(()) })
        .await;
    let second = env.spawn_replica(env.client.clone(), "replica-b");

    for i in 0..ACTIONS {
        env.action(
            "shop",
            &format!("iso-{i}"),
            json!({ "action": "Isolate", "target": { "pod": format!("web-{i}") } }),
        )
        .await;
    }
    env.until("the leader to be mid-way", || async {
        let actions = env.actions("shop").list(&ListParams::default()).await.ok()?.items;
        let done = actions.iter().filter(|a| a.status.as_ref().and_then(|s| s.phase) == Some(Phase::Succeeded)).count();
        (done >= 3).then_some(())
    })
    .await;
    first.abort();
    let killed_at = k8s_openapi::jiff::Timestamp::now();
    assert_eq!(holder(&env).await.as_deref(), Some("replica-a"), "a crashed leader does not release its lease");

    // The actions the leader finished well before it died: it had time to publish their Events.
    let mut finished_long_before = Vec::new();
    for i in 0..ACTIONS {
        let status = env.wait_for_phase("shop", &format!("iso-{i}"), Phase::Succeeded).await.status.unwrap();
        let events: Vec<_> = status.history.iter().map(|h| h.event.as_str()).collect();
        assert_eq!(events, vec!["TargetResolved", "PodLabelled", "PolicyApplied"], "each step once, none lost");
        let applied = status.history.last().unwrap().time.0;
        if applied < killed_at - Duration::from_secs(3) {
            finished_long_before.push(format!("iso-{i}"));
        }
    }
    assert_eq!(holder(&env).await.as_deref(), Some("replica-b"));
    let lease: Lease = Api::namespaced(env.client.clone(), "riposte-system").get("riposte-leader").await.unwrap();
    assert!(lease.spec.unwrap().lease_transitions.unwrap_or_default() >= 1);
    assert_eq!(env.policies("shop").list(&ListParams::default()).await.unwrap().items.len(), ACTIONS, "no orphans");

    // Events are best-effort: a leader killed between a status write and its Event leaves
    // that action without one (every action in flight at that moment may be one), and the
    // standby rightly does not redo a finished step. What must hold: the actions finished
    // long before the crash have theirs, no action has two, and the standby published
    // nothing before the leader died.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let events: Vec<Event> = Api::<Event>::namespaced(env.client.clone(), "shop")
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Isolated"))
        .filter(|e| e.regarding.as_ref().and_then(|r| r.kind.as_deref()) == Some("ResponseAction"))
        .collect();
    let mut per_action: BTreeMap<String, usize> = BTreeMap::new();
    for event in &events {
        *per_action.entry(event.regarding.as_ref().unwrap().name.clone().unwrap()).or_default() += 1;
        if event.reporting_instance.as_deref() == Some("replica-b") {
            let at = event
                .event_time
                .as_ref()
                .map(|t| t.0)
                .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0))
                .unwrap();
            assert!(
                at >= killed_at - Duration::from_secs(1),
                "replica-b acted at {at}, before the leader died at {killed_at}"
            );
        }
    }
    assert!(per_action.values().all(|n| *n == 1), "one Isolated Event per action at most: {per_action:?}");
    for name in &finished_long_before {
        assert!(per_action.contains_key(name), "{name}, finished long before the crash, has its Event: {per_action:?}");
    }
    assert!(events.len() > ACTIONS / 2, "most isolations have their Event: {}", events.len());
    let instances: std::collections::BTreeSet<_> = events.iter().filter_map(|e| e.reporting_instance.clone()).collect();
    assert_eq!(instances.into_iter().collect::<Vec<_>>(), vec!["replica-a".to_string(), "replica-b".to_string()]);
    second.abort();
}
