//! Approval: an action that requires it waits, doing nothing, until a responder other than
//! the requester approves or rejects it. Who decided is the identity the apiserver
//! authenticated (the chart's admission policy checks `spec.approval.by`).

use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use riposte_crds::{ApprovalDecision, Phase, ResponseAction};

use super::{Context, now, update_status};
use crate::error::Result;
use crate::status::{self, condition};

/// Holds an action until it is approved: `Some` when the reconcile ends here, `None` when
/// the action may proceed.
pub async fn gate(action: &ResponseAction, ctx: &Context) -> Result<Option<Action>> {
    let phase = action.status.as_ref().and_then(|s| s.phase);
    if phase == Some(Phase::Rejected) {
        // Rejected is final: only comments are still recorded.
        update_status(ctx, action, |_| {}).await?;
        return Ok(Some(Action::await_change()));
    }
    if !action.spec.approval_required || phase.is_some_and(Phase::is_terminal) {
        return Ok(None);
    }
    let now = now();
    let generation = action.metadata.generation;
    let Some(approval) = &action.spec.approval else {
        if phase == Some(Phase::AwaitingApproval) {
            update_status(ctx, action, |_| {}).await?;
            return Ok(Some(Action::await_change()));
        }
        let message = format!(
            "waiting for a responder other than {} to approve: kubectl riposte approve {} -n {}",
            action.spec.requested_by,
            action.name_any(),
            action.namespace().unwrap_or_default()
        );
        update_status(ctx, action, |s| {
            status::append(&mut s.history, "ApprovalRequested", message.clone(), Some(&action.spec.requested_by), &now);
            status::set_condition(
                &mut s.conditions,
                condition::APPROVED,
                "Unknown",
                "AwaitingApproval",
                &message,
                generation,
                &now,
            );
            status::transition(s, Phase::AwaitingApproval, message.clone(), &now);
        })
        .await?;
        ctx.publish_both(action, None, EventType::Normal, "AwaitingApproval", message).await;
        return Ok(Some(Action::await_change()));
    };
    let reason = approval.comment.as_deref().map(|c| format!(": {c}")).unwrap_or_default();
    match approval.decision {
        ApprovalDecision::Rejected => {
            let message = format!("rejected by {}{reason}; nothing was done", approval.by);
            update_status(ctx, action, |s| {
                status::append(&mut s.history, "Rejected", message.clone(), Some(&approval.by), &now);
                status::set_condition(
                    &mut s.conditions,
                    condition::APPROVED,
                    "False",
                    "Rejected",
                    &message,
                    generation,
                    &now,
                );
                status::set_condition(
                    &mut s.conditions,
                    condition::COMPLETED,
                    "False",
                    "Rejected",
                    &message,
                    generation,
                    &now,
                );
                status::transition(s, Phase::Rejected, message.clone(), &now);
            })
            .await?;
            ctx.publish_both(action, None, EventType::Normal, "Rejected", message).await;
            Ok(Some(Action::await_change()))
        }
        ApprovalDecision::Approved => {
            let recorded = action.status.as_ref().is_some_and(|s| s.history.iter().any(|h| h.event == "Approved"));
            if !recorded {
                let message = format!("approved by {}{reason}", approval.by);
                update_status(ctx, action, |s| {
                    status::append(&mut s.history, "Approved", message.clone(), Some(&approval.by), &now);
                    status::set_condition(
                        &mut s.conditions,
                        condition::APPROVED,
                        "True",
                        "Approved",
                        &message,
                        generation,
                        &now,
                    );
                    status::transition(s, Phase::Pending, message.clone(), &now);
                })
                .await?;
                ctx.publish_both(action, None, EventType::Normal, "Approved", message).await;
                // Our own status write brings the action back, approved, to be carried out.
                return Ok(Some(Action::await_change()));
            }
            Ok(None)
        }
    }
}
