//! `kubectl riposte hunt` and `go-hunt`: queries sent to the operator's hunting API with the
//! kubeconfig's credentials (its bearer token, token file or exec plugin), which the API
//! checks with the apiserver.

use std::io::{IsTerminal, Read, Write};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cli::{GoHuntArgs, HuntArgs, HuntFormat, HuntLanguage, HuntingEndpoint};
use crate::cluster::Cluster;
use crate::error::Error;

/// What the API answers: the columns, the rows and whether they were cut at the row limit.
#[derive(Deserialize)]
struct HuntResult {
    columns: Vec<ResultColumn>,
    rows: Vec<Vec<Value>>,
    truncated: bool,
    engine: String,
    #[serde(rename = "elapsedMs", alias = "elapsed_ms")]
    elapsed_ms: u64,
}

#[derive(Deserialize)]
struct ResultColumn {
    name: String,
}

pub async fn hunt(cluster: &Cluster, args: HuntArgs) -> Result<(), Error> {
    let query = match (&args.query, &args.file) {
        (Some(query), _) => query.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).map_err(|e| Error::Hunt(format!("reading the query: {e}")))?;
            text
        }
        (None, Some(path)) => std::fs::read_to_string(path)
            .map_err(|e| Error::Hunt(format!("cannot read the query file {}: {e}", path.display())))?,
        (None, None) => unreachable!("clap requires a query or a file"),
    };
    let language = args.language.unwrap_or_else(|| language_of(&query));
    let to = match &args.to {
        Some(to) => parse_time(to)?,
        None => Timestamp::now(),
    };
    let from = match &args.from {
        Some(from) => parse_time(from)?,
        None => to
            .checked_sub(SignedDuration::try_from(args.since).map_err(|e| Error::Hunt(e.to_string()))?)
            .map_err(|e| Error::Hunt(e.to_string()))?,
    };
    let body = json!({
        "query": query,
        "language": match language { HuntLanguage::Sql => "sql", HuntLanguage::Kql => "kql" },
        "from": from.to_string(),
        "to": to.to_string(),
    });
    let result = call(cluster, &args.endpoint, "/v1/hunt", &body).await?;
    print_result(&result, args.endpoint.format)
}

pub async fn go_hunt(cluster: &Cluster, args: GoHuntArgs) -> Result<(), Error> {
    let body = json!({ "namespace": cluster.namespace, "alert": args.alert });
    let result = call(cluster, &args.endpoint, "/v1/go-hunt", &body).await?;
    print_result(&result, args.endpoint.format)
}

/// SQL begins with a statement's keyword (the API refuses all but queries, and says so);
/// anything else is taken as KQL, which begins with a table or `let`.
fn language_of(query: &str) -> HuntLanguage {
    const SQL_KEYWORDS: [&str; 14] = [
        "SELECT", "WITH", "VALUES", "EXPLAIN", "SHOW", "INSERT", "UPDATE", "DELETE", "DROP", "CREATE", "ALTER", "COPY",
        "SET", "TRUNCATE",
    ];
    let first = query.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
    if first.starts_with('(') || SQL_KEYWORDS.contains(&first.as_str()) { HuntLanguage::Sql } else { HuntLanguage::Kql }
}

fn parse_time(text: &str) -> Result<Timestamp, Error> {
    text.parse()
        .map_err(|_| Error::Hunt(format!("{text:?} is not a time: write it as RFC 3339, like 2026-12-01T10:00:00Z")))
}

/// Posts to the hunting API with the kubeconfig's credentials (or `--token`), showing the
/// time spent on a terminal while the hunt runs.
async fn call(cluster: &Cluster, endpoint: &HuntingEndpoint, path: &str, body: &Value) -> Result<HuntResult, Error> {
    let Some(url) = &endpoint.url else {
        return Err(Error::Hunt(
            "name the hunting API with --url or RIPOSTE_HUNT_URL (the chart's NOTES say how to reach it)".into(),
        ));
    };
    let mut config = cluster.config.clone();
    config.cluster_url =
        url.trim_end_matches('/').parse().map_err(|e| Error::Hunt(format!("--url {url:?} is not a URL: {e}")))?;
    config.tls_server_name = None;
    if let Some(ca) = &endpoint.ca_file {
        let certificates = CertificateDer::pem_file_iter(ca)
            .and_then(|certs| certs.map(|c| c.map(|c| c.to_vec())).collect::<Result<Vec<_>, _>>())
            .map_err(|e| Error::Hunt(format!("cannot read the CA {}: {e}", ca.display())))?;
        config.root_cert = Some(certificates);
    }
    if let Some(token) = &endpoint.token {
        config.auth_info.token = Some(token.clone().into());
        config.auth_info.token_file = None;
        config.auth_info.exec = None;
    }
    let client = Client::try_from(config).map_err(Error::Client)?;
    let request = http::Request::post(path)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(serde_json::to_vec(body).map_err(|e| Error::Hunt(e.to_string()))?))
        .map_err(|e| Error::Hunt(e.to_string()))?;
    let response = with_progress(client.send(request)).await.map_err(|e| match e {
        kube::Error::HyperError(_) | kube::Error::Service(_) => {
            Error::Hunt(format!("cannot reach the hunting API at {url}: {e}"))
        }
        other => Error::Hunt(format!("the hunting API request failed: {other}")),
    })?;
    let status = response.status();
    let bytes = response
        .into_body()
        .collect()
        .await
        .map_err(|e| Error::Hunt(format!("reading the hunting API's answer: {e}")))?
        .to_bytes();
    if !status.is_success() {
        let message = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).into_owned());
        return Err(Error::Hunt(format!("{} ({})", message.trim(), status.as_u16())));
    }
    serde_json::from_slice(&bytes).map_err(|e| Error::Hunt(format!("the hunting API's answer is not a result: {e}")))
}

/// Awaits `work`, writing the seconds spent to a terminal's standard error meanwhile.
async fn with_progress<T>(work: impl std::future::Future<Output = T>) -> T {
    let mut stderr = std::io::stderr();
    if !stderr.is_terminal() {
        return work.await;
    }
    let started = Instant::now();
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let done = loop {
        tokio::select! {
            done = &mut work => break done,
            _ = tick.tick() => {
                let _ = write!(stderr, "\rhunting… {}s", started.elapsed().as_secs());
            }
        }
    };
    if started.elapsed() >= Duration::from_secs(1) {
        let _ = write!(stderr, "\r\x1b[K");
    }
    done
}

fn print_result(result: &HuntResult, format: HuntFormat) -> Result<(), Error> {
    let headers: Vec<&str> = result.columns.iter().map(|c| c.name.as_str()).collect();
    let out = match format {
        HuntFormat::Json => {
            let rows: Vec<serde_json::Map<String, Value>> = result
                .rows
                .iter()
                .map(|row| headers.iter().map(|h| (*h).to_owned()).zip(row.iter().cloned()).collect())
                .collect();
            let whole =
                json!({ "columns": headers, "rows": rows, "truncated": result.truncated, "engine": result.engine });
            serde_json::to_string_pretty(&whole).map_err(|e| Error::Output(e.to_string()))? + "\n"
        }
        HuntFormat::Csv => {
            let mut text = csv_line(headers.iter().map(|h| (*h).to_owned()));
            for row in &result.rows {
                text.push_str(&csv_line(row.iter().map(cell)));
            }
            text
        }
        HuntFormat::Table => {
            let rows: Vec<Vec<String>> = result.rows.iter().map(|row| row.iter().map(cell).collect()).collect();
            crate::table::render_headed(&headers, &rows)
        }
    };
    // A reader that stops early (`| head`) is not an error.
    match std::io::stdout().write_all(out.as_bytes()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        other => other.map_err(|e| Error::Output(e.to_string()))?,
    }
    if format == HuntFormat::Table || result.truncated {
        eprintln!(
            "{} row{} in {} ms ({}){}",
            result.rows.len(),
            if result.rows.len() == 1 { "" } else { "s" },
            result.elapsed_ms,
            result.engine,
            if result.truncated { "; more rows matched: the first ones are shown (narrow the hunt)" } else { "" }
        );
    }
    Ok(())
}

/// A cell as text: strings as they are, arrays and objects as JSON, null as nothing.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// A CSV record (RFC 4180): fields with a comma, a quote or a line break are quoted.
fn csv_line(fields: impl Iterator<Item = String>) -> String {
    let quoted: Vec<String> =
        fields
            .map(|field| {
                if field.contains([',', '"', '\n', '\r']) {
                    format!("\"{}\"", field.replace('"', "\"\""))
                } else {
                    field
                }
            })
            .collect();
    quoted.join(",") + "\r\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_is_told_from_the_first_word() {
        assert_eq!(language_of("  select 1"), HuntLanguage::Sql);
        assert_eq!(language_of("WITH x AS (SELECT 1) SELECT * FROM x"), HuntLanguage::Sql);
        assert_eq!(language_of("drop table x"), HuntLanguage::Sql);
        assert_eq!(language_of("CloudAuditEvents | take 1"), HuntLanguage::Kql);
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        assert_eq!(
            csv_line(["a".into(), "b,c".into(), "say \"hi\"".into(), String::new()].into_iter()),
            "a,\"b,c\",\"say \"\"hi\"\"\",\r\n"
        );
        assert_eq!(cell(&json!(["x", "y"])), r#"["x","y"]"#);
        assert_eq!(cell(&Value::Null), "");
    }
}
