//! The verification of Pub/Sub push requests: GKE's audit log reaches Riposte as HTTPS POSTs
//! from a push subscription whose `Authorization: Bearer` is an OIDC token Google signed
//! (RS256) for the subscription's service account.
//!
//! ```no_run
//! use riposte_streams::oidc::{Expected, JwksSettings, Verifier};
//!
//! # async fn handle(authorization: Option<&str>) -> Result<(), riposte_streams::Error> {
//! let verifier = Verifier::new(
//!     Expected::new("https://riposte.example.com/pubsub/audit", "audit-push@my-project.iam.gserviceaccount.com"),
//!     JwksSettings::google(),
//! )?;
//! let identity = verifier.verify_authorization(authorization).await?;
//! println!("push from {}", identity.email);
//! # Ok(())
//! # }
//! ```
//!
//! [`verify`] is the check itself, pure (a token, a key set, what is expected, the time);
//! [`Verifier`] adds the key set, fetched from Google and cached.

mod jwks;
mod token;

pub use jwks::{GOOGLE_JWKS_URL, JwksSettings, Verifier};
pub use token::{Expected, GOOGLE_ISSUERS, KeySet, PushIdentity, bearer_token, verify};
