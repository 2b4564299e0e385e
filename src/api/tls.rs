//! HTTPS for the HTTP listeners (`[http] tls_cert`/`tls_key`, the same under `[admin]`):
//! the beacon must be posted over HTTPS from pages served over HTTPS (browsers block mixed
//! content), and the admin API carries bearer tokens.
//!
//! The certificate is re-read when its files change (checked at most once a second, at a
//! handshake), so a renewal (certbot, an ACME client, a secrets agent) takes effect without
//! a restart; a renewed pair that does not load is logged and the last good one keeps
//! serving. rustls with ring, TLS 1.2 and 1.3, ALPN `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

/// How often, at most, the files are looked at for a renewal.
const RECHECK: Duration = Duration::from_secs(1);

/// A certificate chain and key in PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsPair {
    /// Load and check the pair: `Err` names the file and says why.
    pub fn load(&self) -> Result<CertifiedKey, String> {
        let named = |p: &Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| named(&self.cert, &e))?
            .collect::<Result<_, _>>()
            .map_err(|e| named(&self.cert, &e))?;
        if chain.is_empty() {
            return Err(named(&self.cert, &"no certificate in the file"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| named(&self.key, &e))?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider)
            .map_err(|e| named(&self.key, &format!("does not go with the certificate: {e}")))?;
        Ok(certified)
    }

    fn modified(&self) -> Option<(SystemTime, SystemTime)> {
        let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        Some((m(&self.cert)?, m(&self.key)?))
    }
}

/// Serves the current pair, picking up renewals.
#[derive(Debug)]
struct Reloading {
    pair: TlsPair,
    current: ArcSwap<CertifiedKey>,
    /// When the files were last looked at, and their modification times then.
    checked: Mutex<(Instant, Option<(SystemTime, SystemTime)>)>,
}

impl Reloading {
    fn refresh(&self) {
        let mut checked = self.checked.lock().unwrap_or_else(PoisonError::into_inner);
        if checked.0.elapsed() < RECHECK {
            return;
        }
        checked.0 = Instant::now();
        let modified = self.pair.modified();
        if modified == checked.1 {
            return;
        }
        match self.pair.load() {
            Ok(key) => {
                self.current.store(Arc::new(key));
                checked.1 = modified;
                info!(cert = %self.pair.cert.display(), "TLS certificate reloaded");
            }
            // Half-written during a renewal, or wrong: keep the last good one, try again.
            Err(reason) => warn!(%reason, "TLS certificate not reloaded; the last good one serves"),
        }
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.refresh();
        Some(self.current.load_full())
    }
}

/// An acceptor for `pair`, which must load now.
pub fn acceptor(pair: &TlsPair) -> Result<TlsAcceptor, String> {
    let key = pair.load()?;
    let resolver = Arc::new(Reloading {
        pair: pair.clone(),
        current: ArcSwap::from_pointee(key),
        checked: Mutex::new((Instant::now(), pair.modified())),
    });
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
