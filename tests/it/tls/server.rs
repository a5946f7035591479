//! An HTTPS server with the test certificate of this folder (made for tests only: its key is no
//! secret), offering HTTP/2 and HTTP/1.1 by ALPN, or HTTP/1.1 only, with at most 256 streams a
//! connection as hosted providers set. It serves the tests' fake model (`FakeModel::over_tls`)
//! and the stand-in model of the load scripts (`examples/stand-in.rs` includes this file).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Serves `app` on `listener` over TLS until the runtime ends, calling `accepted` for every
/// TCP connection taken (a client that then distrusts the certificate gives up in the
/// handshake).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    http2: bool,
    accepted: impl Fn() + Send + 'static,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config(http2)));
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            // Out of file descriptors, say: wait and go on, as `axum::serve` does.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        accepted();
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder.http2().max_concurrent_streams(256);
            let _ = builder
                .serve_connection(
                    hyper_util::rt::TokioIo::new(tls),
                    hyper_util::service::TowerToHyperService::new(app),
                )
                .await;
        });
    }
}

/// The server's TLS settings: the test certificate and key, and the protocols it offers.
fn config(http2: bool) -> rustls::ServerConfig {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/tls");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("the test certificate")
        .collect::<Result<_, _>>()
        .expect("the test certificate parses");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("the test key");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("the test certificate and key");
    config.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    config
}
