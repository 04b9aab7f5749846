//! Alerts list the ResponseActions that reference them, with their phases.

use std::sync::Arc;

use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use riposte_crds::{Alert, AlertStatus, LinkedAction, ResponseAction};
use serde_json::json;

use super::{Context, MANAGER, forget_failures};
use crate::error::{Error, Result};
use crate::metrics::KindLabels;

pub async fn reconcile(alert: Arc<Alert>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciliations.get_or_create(&KindLabels { kind: "Alert".into() }).inc();
    let namespace = alert.namespace().ok_or_else(|| Error::MissingNamespace(alert.name_any()))?;
    let name = alert.name_any();
    let result = sync(&alert, &ctx, &namespace, &name).await;
    if result.is_ok() {
        forget_failures(&ctx, "Alert", &format!("{namespace}/{name}"));
    }
    result
}

async fn sync(alert: &Alert, ctx: &Context, namespace: &str, name: &str) -> Result<Action> {
    let actions: Api<ResponseAction> = Api::namespaced(ctx.client.clone(), namespace);
    let status = linked_status(alert, &actions.list(&ListParams::default()).await?.items);
    if alert.status.as_ref() != Some(&status) {
        let patch = json!({ "apiVersion": "riposte.dev/v1alpha1", "kind": "Alert", "status": status });
        Api::<Alert>::namespaced(ctx.client.clone(), namespace)
            .patch_status(name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch))
            .await?;
    }
    Ok(Action::await_change())
}

/// The alert's status from the actions of its namespace, oldest action first.
fn linked_status(alert: &Alert, actions: &[ResponseAction]) -> AlertStatus {
    let mut linked: Vec<&ResponseAction> =
        actions.iter().filter(|a| a.spec.alert_ref.as_ref().is_some_and(|r| r.name == alert.name_any())).collect();
    linked.sort_by_key(|a| (a.creation_timestamp(), a.name_any()));
    let actions: Vec<LinkedAction> = linked
        .into_iter()
        .map(|a| LinkedAction {
            name: a.name_any(),
            action: a.spec.action,
            phase: a.status.as_ref().and_then(|s| s.phase),
        })
        .collect();
    AlertStatus { observed_generation: alert.metadata.generation, action_count: actions.len() as i32, actions }
}
