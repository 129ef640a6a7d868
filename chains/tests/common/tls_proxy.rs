//! An HTTPS reverse proxy for tests, as an operator puts one in front of a node: a test CA made
//! here (rcgen), a server certificate for `127.0.0.1` and `localhost` signed by it, and a rustls
//! listener on loopback that hands each connection's plaintext to an upstream (anvil, arlocal,
//! the Bitcoin test node) byte for byte. Also shared by the confirmer's tests (`#[path]`).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A certificate authority of the test's own, with its certificate written as a PEM file.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
    /// The CA certificate (PEM): what `tls_ca_file` / `--ca-file` names.
    pub file: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, "bridge test CA");
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::CrlSign];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("test-ca.pem");
        std::fs::write(&file, cert.pem()).unwrap();
        TestCa { cert, key, file, _dir: dir }
    }

    /// A server certificate for `names` (DNS names or IP addresses) signed by this CA, and its key.
    fn server_certificate(&self, names: &[&str]) -> (rcgen::Certificate, rcgen::KeyPair) {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "bridge test node");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert, key)
    }
}

/// A TLS-terminating proxy on a free loopback port; stops when dropped.
pub struct TlsProxy {
    /// `https://127.0.0.1:PORT`, with the upstream's path appended.
    pub url: String,
    task: JoinHandle<()>,
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsProxy {
    /// A proxy in front of `upstream` (`http://HOST:PORT[/path]`) whose certificate `ca` signed
    /// for 127.0.0.1 and localhost.
    pub async fn start(upstream: &str, ca: &TestCa) -> TlsProxy {
        Self::start_for(upstream, ca, &["127.0.0.1", "localhost"]).await
    }

    /// A proxy whose certificate names only `names`: a client that reaches it by another name
    /// must refuse it.
    pub async fn start_for(upstream: &str, ca: &TestCa, names: &[&str]) -> TlsProxy {
        let upstream: reqwest::Url = upstream.parse().unwrap();
        let target = format!("{}:{}", upstream.host_str().unwrap(), upstream.port_or_known_default().unwrap());
        let (cert, key) = ca.server_certificate(names);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let acceptor = TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else { return };
                let acceptor = acceptor.clone();
                let target = target.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to relay.
                    let Ok(mut tls) = acceptor.accept(client).await else { return };
                    let Ok(mut plain) = TcpStream::connect(&target).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        let path = upstream.path().trim_end_matches('/');
        TlsProxy { url: format!("https://127.0.0.1:{port}{path}"), task }
    }
}
