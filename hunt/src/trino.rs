//! A client for Trino's HTTP statement protocol (`POST /v1/statement`, then `GET nextUri`
//! until the query is done), for running hunts on a Trino cluster that reads the same
//! Hive-partitioned Parquet files as DataFusion.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;

/// Where Trino is and whom to run as.
#[derive(Debug, Clone)]
pub struct TrinoSettings {
    /// `http://host:port` or `https://host:port` of the coordinator.
    pub endpoint: String,
    pub user: String,
    pub catalog: String,
    pub schema: String,
    /// A PEM file of CA certificates to trust besides Mozilla's roots (a private CA).
    pub ca_file: Option<PathBuf>,
}

/// One column of a result: its name and Trino's type, e.g. `timestamp(6) with time zone`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TrinoColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub type_name: String,
}

/// The rows of a query, each value as Trino's JSON encodes it (timestamps and decimals are
/// strings, arrays are arrays, SQL NULL is `null`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrinoResult {
    pub columns: Vec<TrinoColumn>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

#[derive(Debug, thiserror::Error)]
pub enum TrinoError {
    #[error("invalid Trino settings: {0}")]
    InvalidSettings(String),
    #[error("could not reach Trino at {uri}: {reason} (check the endpoint and that the coordinator is up)")]
    Connect { uri: String, reason: String },
    #[error("Trino answered HTTP {status} to {uri}: {body}")]
    HttpStatus { status: u16, uri: String, body: String },
    #[error("Trino's answer to {uri} is not its statement protocol: {reason}")]
    Decode { uri: String, reason: String },
    #[error("Trino failed the query ({error_name}): {message}")]
    Query { message: String, error_name: String },
    #[error("the query did not finish within {0:?} and was cancelled; narrow its time range or raise the timeout")]
    Timeout(Duration),
}

pub struct TrinoClient {
    settings: TrinoSettings,
    statement_uri: String,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// One page of Trino's answer (`QueryResults`); only the fields this client uses.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryResults {
    next_uri: Option<String>,
    columns: Option<Vec<TrinoColumn>>,
    data: Option<Vec<Vec<serde_json::Value>>>,
    error: Option<QueryError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryError {
    message: String,
    error_name: String,
}

/// How long cancelling a timed-out query may take: the caller is already late.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);
/// Trino asks clients to retry a page answered 502, 503 or 504 (a busy or restarting
/// coordinator); this is the pause between tries.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

impl TrinoClient {
    pub fn new(settings: TrinoSettings) -> Result<Self, TrinoError> {
        let endpoint: http::Uri = settings
            .endpoint
            .parse()
            .map_err(|error| TrinoError::InvalidSettings(format!("endpoint {:?}: {error}", settings.endpoint)))?;
        if !matches!(endpoint.scheme_str(), Some("http" | "https")) || endpoint.host().is_none() {
            return Err(TrinoError::InvalidSettings(format!(
                "endpoint {:?} is not an http:// or https:// URL with a host",
                settings.endpoint
            )));
        }
        if settings.user.is_empty() {
            return Err(TrinoError::InvalidSettings("user is empty; Trino needs one for every query".to_string()));
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| TrinoError::InvalidSettings(error.to_string()))?
            .with_root_certificates(root_store(settings.ca_file.as_ref())?)
            .with_no_client_auth();
        let connector =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().build();
        Ok(TrinoClient {
            statement_uri: format!("{}/v1/statement", settings.endpoint.trim_end_matches('/')),
            settings,
            http: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Runs `sql` to the end and returns all its rows. A query still running after `timeout`
    /// is cancelled on the coordinator, so that it stops using the cluster.
    pub async fn query(&self, sql: &str, timeout: Duration) -> Result<TrinoResult, TrinoError> {
        // The URI of the page to fetch next, kept outside the timed future so that, when
        // time runs out, it names the query to cancel.
        let mut next_uri = None;
        match tokio::time::timeout(timeout, self.run(sql, &mut next_uri)).await {
            Ok(result) => result,
            Err(_elapsed) => {
                if let Some(uri) = next_uri {
                    // Best effort: the query also dies by itself once no client polls it.
                    let _ = tokio::time::timeout(CANCEL_TIMEOUT, self.send(http::Method::DELETE, &uri, None)).await;
                }
                Err(TrinoError::Timeout(timeout))
            }
        }
    }

    /// Runs a statement whose rows do not matter (DDL, `CALL`), to the end.
    pub async fn execute(&self, sql: &str, timeout: Duration) -> Result<(), TrinoError> {
        self.query(sql, timeout).await.map(drop)
    }

    async fn run(&self, sql: &str, next_uri: &mut Option<String>) -> Result<TrinoResult, TrinoError> {
        let mut result = TrinoResult::default();
        let mut page = self.page(http::Method::POST, &self.statement_uri, Some(sql)).await?;
        loop {
            if let Some(error) = page.error {
                return Err(TrinoError::Query { message: error.message, error_name: error.error_name });
            }
            if let Some(columns) = page.columns
                && result.columns.is_empty()
            {
                result.columns = columns;
            }
            result.rows.extend(page.data.unwrap_or_default());
            *next_uri = page.next_uri;
            let Some(uri) = next_uri.as_deref() else { return Ok(result) };
            page = self.page(http::Method::GET, uri, None).await?;
        }
    }

    /// Fetches one page, trying again while Trino answers that it is briefly unavailable.
    async fn page(&self, method: http::Method, uri: &str, sql: Option<&str>) -> Result<QueryResults, TrinoError> {
        loop {
            let (status, body) = self.send(method.clone(), uri, sql).await?;
            match status {
                http::StatusCode::OK => {
                    return serde_json::from_slice(&body)
                        .map_err(|error| TrinoError::Decode { uri: uri.to_string(), reason: error.to_string() });
                }
                http::StatusCode::BAD_GATEWAY
                | http::StatusCode::SERVICE_UNAVAILABLE
                | http::StatusCode::GATEWAY_TIMEOUT => tokio::time::sleep(RETRY_PAUSE).await,
                _ => {
                    return Err(TrinoError::HttpStatus {
                        status: status.as_u16(),
                        uri: uri.to_string(),
                        body: String::from_utf8_lossy(&body).chars().take(500).collect(),
                    });
                }
            }
        }
    }

    async fn send(
        &self,
        method: http::Method,
        uri: &str,
        sql: Option<&str>,
    ) -> Result<(http::StatusCode, Bytes), TrinoError> {
        let connect_error = |reason: String| TrinoError::Connect { uri: uri.to_string(), reason };
        let request = http::Request::builder()
            .method(method)
            .uri(uri)
            .header("X-Trino-User", &self.settings.user)
            .header("X-Trino-Catalog", &self.settings.catalog)
            .header("X-Trino-Schema", &self.settings.schema)
            // Riposte's timestamps are UTC; so are the session's, whatever the server's zone,
            // so that Trino renders and compares them as DataFusion does.
            .header("X-Trino-Time-Zone", "UTC")
            .header("X-Trino-Source", "riposte")
            // Without it Trino rounds every timestamp to milliseconds and calls its type
            // `timestamp`, as clients older than parametric precision expect.
            .header("X-Trino-Client-Capabilities", "PARAMETRIC_DATETIME")
            .body(Full::new(Bytes::from(sql.unwrap_or_default().to_string())))
            .map_err(|error| TrinoError::InvalidSettings(format!("request to {uri}: {error}")))?;
        let response = self.http.request(request).await.map_err(|error| connect_error(crate::error::chain(&error)))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|error| connect_error(crate::error::chain(&error)))?;
        Ok((status, body.to_bytes()))
    }
}

/// Mozilla's roots, and the certificates of `ca_file` when given.
fn root_store(ca_file: Option<&PathBuf>) -> Result<rustls::RootCertStore, TrinoError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    let Some(path) = ca_file else { return Ok(roots) };
    let invalid = |reason: String| TrinoError::InvalidSettings(format!("CA file {}: {reason}", path.display()));
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|error| invalid(error.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| invalid(error.to_string()))?;
    if certificates.is_empty() {
        return Err(invalid("no PEM certificate in it".to_string()));
    }
    for certificate in certificates {
        roots.add(certificate).map_err(|error| invalid(error.to_string()))?;
    }
    Ok(roots)
}
