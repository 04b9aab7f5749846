//! ResponsePolicies report what they did: alerts matched, actions created, their latest
//! decisions. The status is derived from the Alerts and ResponseActions, so it has one
//! writer and stays right across restarts and changes of leader.

use std::sync::Arc;

use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use riposte_crds::ResponsePolicy;

use super::{Context, forget_failures, now, write_status};
use crate::error::Result;
use crate::metrics::KindLabels;
use crate::policy;

pub async fn reconcile(policy: Arc<ResponsePolicy>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciliations.get_or_create(&KindLabels { kind: "ResponsePolicy".into() }).inc();
    let api: Api<ResponsePolicy> = Api::all(ctx.client.clone());
    let alerts = ctx.alerts.state();
    let actions = ctx.actions.state();
    let now = now();
    write_status(&api, (*policy).clone(), |current| {
        policy::policy_status(current, alerts.iter().map(AsRef::as_ref), actions.iter().map(AsRef::as_ref), &now)
    })
    .await?;
    forget_failures(&ctx, "ResponsePolicy", &policy.name_any());
    Ok(Action::await_change())
}
