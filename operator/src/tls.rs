//! The operator's HTTPS listeners (the webhooks, the hunting API): their TLS configuration
//! and the accept loop that hands each connection to an axum router.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, warn};

/// A client that has not finished its TLS handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is on the other end of a connection, as its TLS handshake established: in every
/// request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// A client certificate was presented and verified against the client CA.
    pub certified: bool,
}

/// A server configuration from PEM files; with `client_ca`, clients may present a
/// certificate it signed (and one that does not verify fails the handshake). The error names
/// the file at fault.
pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certificates: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("cannot read the certificate {}: {e}", cert.display()))?;
    if certificates.is_empty() {
        return Err(format!("{} holds no PEM certificate", cert.display()));
    }
    let private_key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("cannot read the private key {}: {e}", key.display()))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for certificate in CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("cannot read the client CA {}: {e}", ca.display()))?
            {
                let certificate =
                    certificate.map_err(|e| format!("cannot read the client CA {}: {e}", ca.display()))?;
                roots.add(certificate).map_err(|e| format!("the client CA {} is not usable: {e}", ca.display()))?;
            }
            // A client without a certificate may still present a bearer token.
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| format!("the client CA {} is not usable: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certificates, private_key)
        .map_err(|e| format!("the key {} does not suit the certificate {}: {e}", key.display(), cert.display()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Accepts connections until the process ends, each served by `app` over TLS (HTTP/1.1 or
/// h2), with the [`Peer`] in every request's extensions. `what` names the listener in logs.
pub async fn serve(listener: TcpListener, acceptor: TlsAcceptor, app: Router, what: &'static str) {
    loop {
        let (tcp, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                warn!("{what}: cannot accept a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    debug!(%remote, "{what}: TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    debug!(%remote, "{what}: TLS handshake timed out");
                    return;
                }
            };
            let peer = Peer { certified: tls.get_ref().1.peer_certificates().is_some_and(|c| !c.is_empty()) };
            let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
                request.extensions_mut().insert(peer);
                app.clone().oneshot(request.map(axum::body::Body::new))
            });
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await
            {
                debug!(%remote, "{what}: connection ended with an error: {e}");
            }
        });
    }
}
