//! Leader election on a coordination.k8s.io Lease, so that several replicas can run and only
//! one acts. Like client-go's, expiry is judged by how long this replica has seen the same
//! lease record unchanged on its own clock, never by comparing clocks across machines.

use std::future::Future;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tracing::{info, warn};

use crate::error::{Error, Result};

#[derive(Clone, Debug)]
pub struct Config {
    /// Name of the Lease, in the operator's namespace.
    pub lease_name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease that is not renewed stays with its holder.
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal before it gives up.
    pub renew_deadline: Duration,
    /// How often the lease is renewed, or tried for.
    pub retry_period: Duration,
}

impl Config {
    pub fn new(lease_name: impl Into<String>, identity: impl Into<String>) -> Self {
        Config {
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// What to do with the lease as it stands.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No lease yet: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Free or expired: take it over.
    Take,
    /// Another replica holds it and renews it.
    Wait { holder: String },
}

/// Decides from the lease and for how long this replica has seen it unchanged.
pub fn decide(lease: Option<&Lease>, identity: &str, unchanged_for: Duration, lease_duration: Duration) -> Decision {
    let Some(lease) = lease else { return Decision::Create };
    let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
    if holder == identity {
        Decision::Renew
    } else if holder.is_empty() || unchanged_for >= lease_duration {
        Decision::Take
    } else {
        Decision::Wait { holder }
    }
}

/// A lease record's holder and renew time: it changes with every renewal or change of holder.
type Record = (Option<String>, Option<String>);

fn record(lease: &Lease) -> Record {
    let spec = lease.spec.clone().unwrap_or_default();
    (spec.holder_identity, spec.renew_time.map(|t| t.0.to_string()))
}

/// The lease as written by `identity` now, keeping the transitions count up to date.
fn held_by(current: Option<&Lease>, config: &Config) -> Lease {
    let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let previous = current.and_then(|l| l.spec.clone()).unwrap_or_default();
    let keeps_holder = previous.holder_identity.as_deref() == Some(config.identity.as_str());
    Lease {
        metadata: ObjectMeta {
            name: Some(config.lease_name.clone()),
            resource_version: current.and_then(|l| l.metadata.resource_version.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(config.lease_duration.as_secs().max(1) as i32),
            acquire_time: if keeps_holder { previous.acquire_time.clone() } else { Some(now.clone()) },
            renew_time: Some(now),
            lease_transitions: Some(
                previous.lease_transitions.unwrap_or(0) + i32::from(!keeps_holder && current.is_some()),
            ),
            ..LeaseSpec::default()
        }),
    }
}

struct Elector {
    api: Api<Lease>,
    config: Config,
    /// The lease record last seen and since when, on our clock.
    observed: Option<(Record, Instant)>,
}

impl Elector {
    /// One attempt to acquire or renew; true when we hold the lease afterwards.
    async fn try_hold(&mut self) -> Result<bool> {
        let current = self.api.get_opt(&self.config.lease_name).await?;
        let unchanged_for = match (&current, &self.observed) {
            (Some(lease), Some((seen, since))) if record(lease) == *seen => since.elapsed(),
            (Some(lease), _) => {
                self.observed = Some((record(lease), Instant::now()));
                Duration::ZERO
            }
            (None, _) => Duration::ZERO,
        };
        let decision = decide(current.as_ref(), &self.config.identity, unchanged_for, self.config.lease_duration);
        let lease = held_by(current.as_ref(), &self.config);
        let written = match decision {
            Decision::Wait { .. } => return Ok(false),
            Decision::Create => self.api.create(&PostParams::default(), &lease).await,
            Decision::Renew | Decision::Take => {
                self.api.replace(&self.config.lease_name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(lease) => {
                self.observed = Some((record(&lease), Instant::now()));
                Ok(true)
            }
            // Someone else wrote first; they may hold it now.
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the lease up so that another replica takes over at once.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.lease_name).await else { return };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        if let Err(e) = self.api.replace(&self.config.lease_name, &PostParams::default(), &lease).await {
            warn!(error = %e, "could not release the leader lease");
        }
    }
}

/// Waits until this replica holds the lease, runs `work` while it keeps it, and returns when
/// `work` ends (the lease is then released) or with [`Error::LostLeadership`] when it could
/// not renew the lease within the renew deadline. `work` is stopped whenever leadership ends.
pub async fn run<W, F>(api: Api<Lease>, config: Config, work: W) -> Result<()>
where
    W: FnOnce() -> F,
    F: Future<Output = ()> + Send + 'static,
{
    let mut elector = Elector { api, config: config.clone(), observed: None };
    let mut waiting_logged = false;
    loop {
        match elector.try_hold().await {
            Ok(true) => break,
            Ok(false) if !waiting_logged => {
                info!(lease = %config.lease_name, "another replica leads; standing by");
                waiting_logged = true;
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "could not read or take the leader lease"),
        }
        tokio::time::sleep(config.retry_period).await;
    }
    info!(lease = %config.lease_name, identity = %config.identity, "became the leader");
    let mut work = AbortOnDrop(tokio::spawn(work()));
    let mut last_renewal = Instant::now();
    loop {
        tokio::select! {
            _ = &mut work.0 => {
                elector.release().await;
                return Ok(());
            }
            () = tokio::time::sleep(config.retry_period) => {}
        }
        match elector.try_hold().await {
            Ok(true) => last_renewal = Instant::now(),
            Ok(false) => warn!("the leader lease was taken by another replica"),
            Err(e) => warn!(error = %e, "could not renew the leader lease"),
        }
        if last_renewal.elapsed() >= config.renew_deadline {
            return Err(Error::LostLeadership(config.lease_name.clone()));
        }
    }
}

/// Stops the work when leadership ends in any way, including this future being dropped:
/// a replica that is no longer leading must never keep acting.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec { holder_identity: holder.map(str::to_owned), ..LeaseSpec::default() }),
        }
    }

    #[test]
    fn decisions_follow_the_lease_and_its_age_on_our_clock() {
        let d = Duration::from_secs(15);
        assert_eq!(decide(None, "a", Duration::ZERO, d), Decision::Create);
        assert_eq!(decide(Some(&lease(Some("a"))), "a", Duration::from_secs(99), d), Decision::Renew);
        assert_eq!(decide(Some(&lease(None)), "a", Duration::ZERO, d), Decision::Take);
        assert_eq!(decide(Some(&lease(Some(""))), "a", Duration::ZERO, d), Decision::Take);
        assert_eq!(
            decide(Some(&lease(Some("b"))), "a", Duration::from_secs(14), d),
            Decision::Wait { holder: "b".into() }
        );
        assert_eq!(decide(Some(&lease(Some("b"))), "a", Duration::from_secs(15), d), Decision::Take);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() {
        let config = Config::new("riposte-leader", "a");
        let first = held_by(None, &config);
        assert_eq!(first.spec.as_ref().unwrap().lease_transitions, Some(0));
        let renewed = held_by(Some(&first), &config);
        assert_eq!(renewed.spec.as_ref().unwrap().acquire_time, first.spec.as_ref().unwrap().acquire_time);
        assert_eq!(renewed.spec.as_ref().unwrap().lease_transitions, Some(0));
        let taken = held_by(Some(&renewed), &Config::new("riposte-leader", "b"));
        let spec = taken.spec.unwrap();
        assert_eq!((spec.holder_identity.as_deref(), spec.lease_transitions), (Some("b"), Some(1)));
        assert_eq!(spec.lease_duration_seconds, Some(15));
    }
}
