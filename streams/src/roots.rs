//! The CA roots both inputs trust by default: Mozilla's, built in, since the operator's image
//! is an empty base with no system store.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Mozilla's root certificates as one PEM bundle (librdkafka's `ssl.ca.pem` takes several).
pub(crate) fn mozilla_pem() -> String {
    let mut pem = String::new();
    for certificate in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let encoded = STANDARD.encode(certificate.as_ref());
        // PEM lines are at most 64 characters (RFC 7468), which OpenSSL's reader enforces.
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    pem
}

/// Mozilla's root certificates as a rustls root store.
pub(crate) fn mozilla_root_store() -> rustls::RootCertStore {
    let mut store = rustls::RootCertStore::empty();
    store.add_parsable_certificates(webpki_root_certs::TLS_SERVER_ROOT_CERTS.iter().cloned());
    store
}

#[cfg(test)]
mod tests {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    #[test]
    fn the_pem_bundle_reads_back_as_every_mozilla_root() {
        let pem = super::mozilla_pem();
        let read: Vec<CertificateDer<'_>> =
            CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().unwrap();
        assert_eq!(read, webpki_root_certs::TLS_SERVER_ROOT_CERTS);
        assert!(pem.lines().all(|line| line.len() <= 64));
        assert_eq!(super::mozilla_root_store().len(), read.len());
    }
}
