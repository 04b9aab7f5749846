use std::time::{Duration, SystemTime};

/// What failed, in the Kafka consumer or in the verification of a Pub/Sub push request.
/// [`Error::kind`] says what a caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A setting is out of range or inconsistent with another.
    #[error("Kafka settings: {0}")]
    InvalidSettings(String),
    /// An Event Hubs connection string that is not `Endpoint=sb://<namespace>/;SharedAccessKeyName=…;SharedAccessKey=…`
    /// for the namespace and hub given.
    #[error("Event Hubs connection string: {0}")]
    ConnectionString(String),
    /// librdkafka refused the configuration or could not create its client.
    #[error("creating the Kafka consumer: {0}")]
    CreateConsumer(#[source] rdkafka::error::KafkaError),
    /// librdkafka refused the subscription (an invalid topic name).
    #[error("subscribing to {topics:?}: {source}")]
    Subscribe {
        /// The topics of the settings.
        topics: Vec<String>,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// No broker answered a metadata request within the connect timeout: the network, DNS
    /// or the brokers themselves.
    #[error("no Kafka broker of {brokers} answered within {waited:?}: {last_error}")]
    BrokersUnreachable {
        /// The bootstrap brokers of the settings.
        brokers: String,
        /// How long the consumer waited.
        waited: Duration,
        /// librdkafka's latest explanation, such as `Connection refused`.
        last_error: String,
    },
    /// The brokers refused the credentials (SASL) or the TLS handshake (certificate).
    #[error("Kafka authentication with {brokers} failed: {reason}")]
    Authentication {
        /// The bootstrap brokers of the settings.
        brokers: String,
        /// librdkafka's explanation, such as `Invalid username or password` or
        /// `certificate verify failed`.
        reason: String,
    },
    /// The credentials are valid but may not read a topic or join the group.
    #[error("Kafka authorization failed: {0}")]
    Authorization(String),
    /// librdkafka reported an error it cannot recover from; the consumer must be made anew.
    #[error("Kafka consumer failed: {0}")]
    Fatal(String),

    /// The JWKS URL is not an `https://` URL with a host.
    #[error("JWKS URL {url:?}: {reason}")]
    JwksUrl {
        /// The URL of the settings.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An extra CA certificate given for the JWKS endpoint could not be used.
    #[error("JWKS CA certificates: {0}")]
    JwksRoots(String),
    /// Fetching the key set failed (network, TLS, HTTP status, size, time).
    #[error("fetching the JWKS from {url}: {reason}")]
    JwksFetch {
        /// The key set's URL.
        url: String,
        /// What failed, with its causes.
        reason: String,
    },
    /// The key set is not a JWKS (`{"keys":[…]}`).
    #[error("the JWKS is not valid: {0}")]
    JwksInvalid(String),

    /// A push request without an `Authorization: Bearer <token>` header.
    #[error("no bearer token in the Authorization header")]
    BearerMissing,
    /// The token is not three base64url parts of JSON, or its claims lack `iss`, `aud`,
    /// `exp` or `iat`.
    #[error("the bearer token is not a JWT: {0}")]
    TokenMalformed(String),
    /// The token is not signed with RS256 (`none` included), which Google's tokens are.
    #[error("the token is signed with {0:?}, not RS256")]
    TokenAlgorithm(String),
    /// The token's header has no `kid`, so no key can verify it.
    #[error("the token's header names no key (kid)")]
    TokenKeyIdMissing,
    /// The token names a key the key set does not have (after a refresh, when one was
    /// allowed).
    #[error("the token's key {0:?} is not in the key set")]
    TokenKeyUnknown(String),
    /// The signature is not the named key's over the token's header and claims.
    #[error("the token's signature does not verify")]
    TokenSignature,
    /// The token was not issued by Google.
    #[error("the token was issued by {0:?}, not Google (accounts.google.com)")]
    TokenIssuer(String),
    /// The token is for another endpoint.
    #[error("the token is for the audience {got:?}, not {expected:?}")]
    TokenAudience {
        /// The token's `aud`.
        got: Vec<String>,
        /// The audience expected.
        expected: String,
    },
    /// The token's `exp` is past (beyond the leeway).
    #[error("the token expired at {expired_at:?}")]
    TokenExpired {
        /// The token's `exp`.
        expired_at: SystemTime,
    },
    /// The token's `iat` is ahead of this clock (beyond the leeway).
    #[error("the token claims to be issued in the future, at {issued_at:?}")]
    TokenIssuedInFuture {
        /// The token's `iat`.
        issued_at: SystemTime,
    },
    /// The token's `email_verified` is not `true`.
    #[error("the token's email is not verified")]
    TokenEmailNotVerified,
    /// The token is for another account than the subscription's service account.
    #[error("the token is for {got:?}, not the push service account {expected:?}")]
    TokenEmail {
        /// The token's `email`.
        got: Option<String>,
        /// The service account expected.
        expected: String,
    },
}

/// What a caller does about an [`Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// It may go away by itself: retry with backoff (for a push request, answer 503 so that
    /// Pub/Sub redelivers it).
    Transient,
    /// It will not go away without a change of settings or credentials: report it.
    Configuration,
    /// The push request is not from the expected Pub/Sub subscription: answer 401 (or 403).
    Unauthenticated,
}

impl Error {
    /// Whether retrying can help, the settings must change, or the request is refused.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BrokersUnreachable { .. } | Error::Fatal(_) | Error::JwksFetch { .. } | Error::JwksInvalid(_) => {
                ErrorKind::Transient
            }
            Error::InvalidSettings(_)
            | Error::ConnectionString(_)
            | Error::CreateConsumer(_)
            | Error::Subscribe { .. }
            | Error::Authentication { .. }
            | Error::Authorization(_)
            | Error::JwksUrl { .. }
            | Error::JwksRoots(_) => ErrorKind::Configuration,
            Error::BearerMissing
            | Error::TokenMalformed(_)
            | Error::TokenAlgorithm(_)
            | Error::TokenKeyIdMissing
            | Error::TokenKeyUnknown(_)
            | Error::TokenSignature
            | Error::TokenIssuer(_)
            | Error::TokenAudience { .. }
            | Error::TokenExpired { .. }
            | Error::TokenIssuedInFuture { .. }
            | Error::TokenEmailNotVerified
            | Error::TokenEmail { .. } => ErrorKind::Unauthenticated,
        }
    }
}
