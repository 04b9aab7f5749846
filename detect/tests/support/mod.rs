//! What the detect crate's integration tests share.

use riposte_detect::Workload;
use riposte_detect::audit::Event;

/// Keeps `cluster` as an informer would: the workload a write stored (its response) replaces
/// the one of the same kind, namespace and name.
pub fn observe(event: &Event, cluster: &mut Vec<Workload>) {
    let (Some(object_ref), Some(object)) = (&event.object_ref, &event.response_object) else {
        return;
    };
    let written = matches!(event.verb.as_str(), "create" | "update" | "patch") && object_ref.subresource.is_empty();
    if !written || event.is_dry_run() {
        return;
    }
    if let Ok(workload) = serde_json::from_str::<Workload>(object.get()) {
        cluster.retain(|w| {
            (w.kind(), w.namespace(), w.name()) != (workload.kind(), workload.namespace(), workload.name())
        });
        cluster.push(workload);
    }
}
