//! HTTPS on the HTTP listeners: `[http] tls_cert`/`tls_key` make the public listener (health,
//! metrics, the beacon) speak TLS only, with our certificate; a renewed certificate is
//! served without a restart; a pair that does not load is a config error naming the field.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fleet_tls_sentinel::make_certs;
use crate::support::*;

/// `GET path` over TLS trusting `ca`: (the server's certificate, the response text).
async fn https_get(
    addr: std::net::SocketAddr,
    ca: &Path,
    path: &str,
) -> (CertificateDer<'static>, String) {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake");
    let peer = tls.get_ref().1.peer_certificates().unwrap()[0].clone();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response)).await;
    (peer, String::from_utf8_lossy(&response).into_owned())
}

fn https_config(dir: &TempDir, cert: &Path, key: &Path) -> std::path::PathBuf {
    let path = write_config(dir, DEMO_ZONE, &demo_policies());
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[http]\nlisten = \"off\"\n",
        &format!(
            "[http]\nlisten = \"off\"\ntls_cert = {:?}\ntls_key = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_speaks_https_and_picks_up_a_renewed_certificate() {
    let certs_dir = TempDir::new("https-certs");
    let certs = make_certs(&certs_dir.join(""));
    // The server reads its pair from here; a renewal overwrites them.
    let dir = TempDir::new("https");
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    std::fs::copy(&certs.server.0, &cert).unwrap();
    std::fs::copy(&certs.server.1, &key).unwrap();
    let running = start_file(&https_config(&dir, &cert, &key)).await;
    let http = running.http_addr.unwrap();

    let (served, response) = https_get(http, &certs.ca, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.ends_with("ok\n"), "{response}");
    let first = CertificateDer::from_pem_file(&certs.server.0).unwrap();
    assert_eq!(served, first);

    // Plain HTTP gets no HTTP answer.
    let mut plain = TcpStream::connect(http).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), plain.read_to_end(&mut got)).await;
    assert!(
        !got.starts_with(b"HTTP/"),
        "{:?}",
        String::from_utf8_lossy(&got)
    );

    // A renewal: a new pair (from a new CA, which the client now trusts) over the files.
    let renewed = TempDir::new("https-renewed");
    let again = make_certs(&renewed.join(""));
    std::fs::copy(&again.server.1, &key).unwrap();
    std::fs::copy(&again.server.0, &cert).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (served, response) = https_get(http, &again.ca, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(
        served,
        CertificateDer::from_pem_file(&again.server.0).unwrap()
    );
    assert_ne!(served, first);

    // A broken renewal keeps the last good pair serving.
    std::fs::write(&cert, "-----BEGIN CERTIFICATE-----\nbroken\n").unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (served, response) = https_get(http, &again.ca, "/metrics").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(
        served,
        CertificateDer::from_pem_file(&again.server.0).unwrap()
    );
    running.shutdown().await;
}

#[test]
fn a_tls_pair_that_does_not_load_names_the_field() {
    let certs_dir = TempDir::new("https-bad-certs");
    let certs = make_certs(&certs_dir.join(""));
    let dir = TempDir::new("https-bad");
    for (cert, key, field, why) in [
        (
            &certs.server.0,
            &certs.client.1,
            "http.tls_key",
            "does not go with",
        ),
        (
            &dir.join("missing.pem"),
            &certs.server.1,
            "http.tls_cert",
            "missing.pem",
        ),
    ] {
        let path = https_config(&dir, cert, key);
        let err = steerdns::config::Config::load(&path).expect_err("refused");
        assert_eq!(err.field, field, "{err}");
        assert!(err.to_string().contains(why), "{err}");
    }
    let path = write_config(&dir, DEMO_ZONE, &demo_policies());
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[http]\nlisten = \"off\"\n",
        "[http]\nlisten = \"off\"\ntls_cert = \"c.pem\"\n",
    );
    std::fs::write(&path, text).unwrap();
    let err = steerdns::config::Config::load(&path).expect_err("refused");
    assert_eq!(err.field, "http.tls_key", "{err}");
}
