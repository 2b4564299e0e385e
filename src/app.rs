//! Wiring: config → first snapshot (fail fast) → bind → background tasks → shutdown.
//!
//! The server does not bind a socket until its first snapshot compiled, so a bad config never
//! starts a half-configured server.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::control::{self, ConfigOrigin};
use crate::dns::{self, DnsServer};
use crate::snapshot::Published;

/// A started server. Drop does not stop it; call [`Running::shutdown`].
pub struct Running {
    /// The DNS addresses bound (UDP and TCP share each one).
    pub dns_addrs: Vec<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub published: Arc<Published>,
    pub origin: ConfigOrigin,
    dns: DnsServer,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Build the first snapshot, bind the listeners and start serving.
pub async fn start(config: Config, origin: ConfigOrigin) -> anyhow::Result<Running> {
    let first = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || control::build_snapshot(&config, 1))
            .await
            .context("loading the configuration")?
            .map_err(|errors| anyhow::anyhow!("{errors}"))?
    };
    info!(
        zones = first.zones.iter().count(),
        steered = first.steered.len(),
        geoip = %first.geo.describe(),
        "configuration loaded from {}",
        config.source
    );
    let published = Arc::new(Published::new(first));
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();

    let dns = dns::bind(
        &config.dns_listen,
        config.tcp_idle_timeout,
        published.clone(),
    )
    .await?;
    for addr in &dns.addrs {
        info!("DNS listening on {addr} (UDP and TCP)");
    }

    let http_addr = match config.http_listen {
        None => None,
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot bind HTTP {addr}"))?;
            let bound = listener.local_addr()?;
            info!("HTTP listening on {bound}");
            let router = crate::api::router(published.clone());
            let cancel = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(listener, router)
                    .with_graceful_shutdown(cancel.cancelled_owned())
                    .await;
            }));
            Some(bound)
        }
    };

    tasks.push(tokio::spawn(control::run(
        origin.clone(),
        published.clone(),
        cancel.clone(),
    )));

    Ok(Running {
        dns_addrs: dns.addrs.clone(),
        http_addr,
        published,
        origin,
        dns,
        cancel,
        tasks,
    })
}

impl Running {
    /// Rebuild from the config origin now (what SIGHUP does). Returns the new generation.
    pub async fn reload(&self) -> Result<u64, control::LoadErrors> {
        let origin = self.origin.clone();
        let published = self.published.clone();
        tokio::task::spawn_blocking(move || control::reload(&origin, &published))
            .await
            .unwrap_or_else(|e| {
                Err(control::LoadErrors(vec![format!(
                    "reload task failed: {e}"
                )]))
            })
    }

    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.dns.shutdown().await;
        for task in self.tasks {
            let _ = task.await;
        }
    }
}
