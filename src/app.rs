//! Wiring: config → first snapshot (fail fast) → bind → background tasks → shutdown.
//!
//! The server does not bind a socket until its first snapshot compiled, so a bad config never
//! starts a half-configured server.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::admin::Tokens;
use crate::api::limit::Limiter;
use crate::api::serve::{HttpCounters, HttpLimits, HttpStats};
use crate::api::tls::TlsPair;
use crate::config::{Config, RumConfig};
use crate::control::{self, ConfigOrigin, Controller, Stores};
use crate::dns::{self, DnsServer};
use crate::fleet;
use crate::health::tracker::Tracker;
use crate::monitor::{self, Monitor};
use crate::perf::Region;
use crate::rum::collector::Collector;
use crate::rum::resolver_map::{Limits, ResolverSessions};
use crate::rum::task::{self as rum_task, SharedSessions};
use crate::snapshot::Published;
use crate::store::redis::{RedisOptions, RedisStore, StoreStatus};
use crate::store::timed;

/// The environment variable that sets the admin token (wins over `[admin] token_file`).
pub const TOKEN_ENV: &str = "STEERDNS_ADMIN_TOKEN";
/// Overrides `[admin] probe_token_file`.
pub const PROBE_TOKEN_ENV: &str = "STEERDNS_PROBE_TOKEN";
/// Overrides `[admin] read_token_file`.
pub const READ_TOKEN_ENV: &str = "STEERDNS_READ_TOKEN";
/// The environment variable that sets the RUM token secret (wins over `[rum] secret_file`).
pub const RUM_SECRET_ENV: &str = "STEERDNS_RUM_SECRET";

/// A started server. Drop does not stop it; call [`Running::shutdown`].
pub struct Running {
    /// The DNS addresses bound (UDP and TCP share each one).
    pub dns_addrs: Vec<SocketAddr>,
    pub http_addr: Option<SocketAddr>,
    pub admin_addr: Option<SocketAddr>,
    /// The bearer token the admin API expects.
    pub admin_token: Arc<str>,
    pub controller: Arc<Controller>,
    pub published: Arc<Published>,
    /// Where probe results go in.
    pub monitor: Monitor,
    /// Resolver mapping's join: the beacon side records accepted sessions here
    /// (`record_session`); the nonce log is drained into it every second.
    pub resolver_sessions: SharedSessions,
    /// The RUM collector, when `[rum]` is set: the control loop reads
    /// [`crate::rum::collector::Collector::view`] and the resolver map reads its sessions.
    pub rum: Option<Arc<Collector>>,
    /// Whether the fleet's Redis answers, in fleet mode.
    pub store_status: Option<Arc<StoreStatus>>,
    dns: DnsServer,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// Build the first snapshot, bind the listeners and start serving.
pub async fn start(config: Config, origin: ConfigOrigin) -> anyhow::Result<Running> {
    // Before anything can announce that we are up: a SIGHUP from then on reloads.
    let hup = control::hangup();
    let tokens = tokens(&config)?;
    let admin_token = tokens.admin.clone();
    let rum_secret = config.rum.as_ref().map(rum_secret).transpose()?;
    let redis = match &config.store.redis {
        Some(url) => {
            let store = RedisStore::open(&RedisOptions {
                url: url.clone(),
                prefix: config.store.prefix.clone(),
                timeout: config.store.timeout,
                refresh: config.store.refresh,
                cache_dir: config.store.cache_dir.clone(),
                tls: config.store.tls.clone(),
            })
            .map_err(|e| anyhow::anyhow!("store.redis: {e}"))?;
            info!("fleet mode: sharing state through {}", store.describe());
            Some(Arc::new(store))
        }
        None => None,
    };
    let stores = match &redis {
        Some(r) => Stores {
            policies: Some(timed::timed_policies(
                r.clone(),
                timed::Store::Redis,
                &r.metrics,
            )),
            measurements: Some(timed::timed_measurements(
                r.clone(),
                timed::Store::Redis,
                &r.metrics,
            )),
            metrics: r.metrics.clone(),
        },
        None => Stores::default(),
    };
    let controller = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || Controller::start_with(config, origin, stores))
            .await
            .context("loading the configuration")?
            .map_err(|errors| anyhow::anyhow!("{errors}"))?
    };
    let controller = Arc::new(controller);
    let published = controller.published().clone();
    {
        let first = published.load();
        info!(
            zones = first.zones.iter().count(),
            steered = first.steered.len(),
            geoip = %first.geo.describe(),
            "configuration loaded from {}",
            config.source
        );
    }
    let cancel = CancellationToken::new();
    let mut tasks = Vec::new();

    let regions = config
        .agent_countries
        .iter()
        .map(|(agent, country)| (agent.clone(), vec![Region::Country(*country)]))
        .collect();
    let (tee, teed) = match &redis {
        Some(_) => {
            let (tee, rx) = fleet::tee();
            (Some(tee), Some(rx))
        }
        None => (None, None),
    };
    let tee_dropped = tee.as_ref().map(|(_, d)| d.clone());
    // This node's name in the fleet's shared streams, so it skips its own entries.
    let node_id: String = random_bytes::<8>()?
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let (monitor, task) = monitor::spawn_with(
        Tracker::new(config.health.clone(), regions),
        controller.clone(),
        cancel.clone(),
        tee,
    );
    tasks.push(task);
    if let (Some(store), Some(rx), Some(dropped)) = (&redis, teed, tee_dropped) {
        tasks.push(tokio::spawn(fleet::run(
            store.clone(),
            node_id.clone(),
            rx,
            dropped,
            monitor.clone(),
            cancel.clone(),
        )));
    }
    if let Some((dir, location)) = &config.probes {
        let agent = monitor::spawn_local_agent(dir, location, &monitor, cancel.clone())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tasks.extend(agent);
    }

    let dns = dns::bind(
        &config.dns_listen,
        config.udp_threads,
        &config.tcp,
        &config.rate_limit,
        config.query_sample,
        published.clone(),
    )?;
    for addr in &dns.addrs {
        info!("DNS listening on {addr} (UDP and TCP)");
    }

    let rum = match (&config.rum, rum_secret) {
        (Some(rum_config), Some(secret)) => {
            let collector = Arc::new(Collector::new(rum_config.window_minutes));
            let api = crate::api::rum::Rum::new(
                rum_config.clone(),
                &secret,
                random_bytes()?,
                published.clone(),
                collector.clone(),
            )
            .map_err(|e| anyhow::anyhow!("rum: {e}"))?;
            if config.http_listen.is_none() {
                warn!("[rum] is set but the HTTP listener is off: no beacon can arrive");
            }
            Some((Arc::new(api), collector))
        }
        _ => None,
    };
    let rum_collector = rum.as_ref().map(|(_, c)| c.clone());

    let http_counters = HttpCounters::default();
    let http_addr = match config.http_listen {
        None => None,
        Some(addr) => Some(
            serve_http(
                addr,
                crate::api::public::router(
                    published.clone(),
                    dns.counters(),
                    http_counters.clone(),
                    rum.as_ref().map(|(api, _)| api.clone()),
                    redis.as_ref().map(|r| r.status.clone()),
                    Arc::new(Limiter::public(
                        &config.http_rate_limit,
                        rum.as_ref()
                            .map(|(api, _)| api.trusted_proxies().to_vec())
                            .unwrap_or_default(),
                        http_counters.public.clone(),
                    )),
                ),
                (&config.http_limits, &config.http_tls, &http_counters.public),
                &cancel,
                &mut tasks,
                "HTTP",
            )
            .await?,
        ),
    };
    let admin_addr = match config.admin_listen {
        None => None,
        Some(addr) => {
            if !addr.ip().is_loopback() && config.admin_tls.is_none() {
                warn!(
                    "the admin API listens on {addr}, beyond loopback, without TLS: set [admin] tls_cert and tls_key, or put TLS in front"
                );
            }
            let router = crate::api::admin::router(
                controller.clone(),
                monitor.clone(),
                tokens,
                rum_collector.clone(),
                Arc::new(Limiter::admin(
                    &config.http_rate_limit,
                    http_counters.admin.clone(),
                )),
            );
            let bounds = (&config.http_limits, &config.admin_tls, &http_counters.admin);
            Some(serve_http(addr, router, bounds, &cancel, &mut tasks, "admin API").await?)
        }
    };

    // A nonce's DNS sighting waits for its beacon as long as the beacon's token may be used.
    let default = Limits::default();
    let limits = Limits {
        nonce_ttl_s: config.rum.as_ref().map_or(default.nonce_ttl_s, |r| {
            (r.token_ttl.as_secs() + 60).max(default.nonce_ttl_s)
        }),
        ..default
    };
    let resolver_sessions: SharedSessions =
        Arc::new(std::sync::Mutex::new(ResolverSessions::new(limits)));
    // Fleet mode: the join takes every node's inputs.
    let exchange = redis.as_ref().map(|store| {
        Arc::new(fleet::JoinExchange::new(store.clone(), node_id.clone()))
            as Arc<dyn rum_task::Exchange>
    });
    tasks.push(rum_task::spawn(
        controller.clone(),
        resolver_sessions.clone(),
        rum_collector.clone(),
        exchange,
        cancel.clone(),
    ));

    let watch = {
        let c = controller.clone();
        tokio::task::spawn_blocking(move || control::watch(&c))
            .await
            .context("starting the policy directory watch")?
    };
    tasks.push(tokio::spawn(control::run(
        controller.clone(),
        watch,
        hup,
        cancel.clone(),
    )));
    if let (Some(collector), Some(rum), Some(store)) = (&rum_collector, &config.rum, &redis) {
        // Fleet mode: rank from the fleet's merged buckets.
        tasks.push(tokio::spawn(fleet::run_rum(
            store.clone(),
            collector.clone(),
            controller.clone(),
            rum.max_failure_rate,
            cancel.clone(),
        )));
    } else if let (Some(collector), Some(rum)) = (&rum_collector, &config.rum) {
        tasks.push(tokio::spawn(control::feed_rum(
            controller.clone(),
            collector.clone(),
            rum.max_failure_rate,
            cancel.clone(),
        )));
    }

    Ok(Running {
        dns_addrs: dns.addrs.clone(),
        http_addr,
        admin_addr,
        admin_token,
        controller,
        published,
        monitor,
        resolver_sessions,
        rum: rum_collector,
        store_status: redis.as_ref().map(|r| r.status.clone()),
        dns,
        cancel,
        tasks,
    })
}

async fn serve_http(
    addr: SocketAddr,
    router: axum::Router,
    (limits, tls, stats): (&HttpLimits, &Option<TlsPair>, &Arc<HttpStats>),
    cancel: &CancellationToken,
    tasks: &mut Vec<JoinHandle<()>>,
    what: &str,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {what} {addr}"))?;
    let bound = listener.local_addr()?;
    let acceptor = tls
        .as_ref()
        .map(crate::api::tls::acceptor)
        .transpose()
        .map_err(|e| anyhow::anyhow!("{what} TLS: {e}"))?;
    let scheme = if acceptor.is_some() {
        "HTTPS"
    } else {
        "plain HTTP"
    };
    info!("{what} listening on {bound} ({scheme})");
    tasks.push(tokio::spawn(crate::api::serve::serve(
        listener,
        router,
        limits.clone(),
        acceptor,
        stats.clone(),
        cancel.clone(),
    )));
    Ok(bound)
}

/// The RUM token secret: from the environment, or from `[rum] secret_file` (trailing
/// whitespace trimmed); at least 32 bytes.
fn rum_secret(rum: &RumConfig) -> anyhow::Result<Vec<u8>> {
    let min = crate::rum::token::MIN_SECRET_LEN;
    let (secret, from) = if let Ok(secret) = std::env::var(RUM_SECRET_ENV) {
        (secret.into_bytes(), RUM_SECRET_ENV.to_owned())
    } else if let Some(path) = &rum.secret_file {
        let bytes =
            std::fs::read(path).with_context(|| format!("rum.secret_file {}", path.display()))?;
        (bytes, format!("{}: rum.secret_file", path.display()))
    } else {
        anyhow::bail!(
            "rum: no secret for beacon tokens: set {RUM_SECRET_ENV} or rum.secret_file \
             (at least {min} random bytes, e.g. `head -c 32 /dev/urandom | base64`)"
        );
    };
    let end = secret
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    if end < min {
        anyhow::bail!("{from}: the RUM secret must be at least {min} bytes");
    }
    Ok(secret[..end].to_vec())
}

fn random_bytes<const N: usize>() -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading random bytes")?;
    Ok(bytes)
}

/// The admin API's tokens: the admin token from the environment, its file, or generated
/// and logged; the probe and read-only tokens from theirs, if set.
fn tokens(config: &Config) -> anyhow::Result<Tokens> {
    let admin = match read_token(TOKEN_ENV, config.admin_token_file.as_deref(), "token_file")? {
        Some(token) => token,
        None => {
            let bytes: [u8; 16] = random_bytes().context("generating an admin token")?;
            let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            if config.admin_listen.is_some() {
                info!(
                    "admin API token (generated for this run; set {TOKEN_ENV} or admin.token_file to choose one): {token}"
                );
            }
            token.into()
        }
    };
    let probe = read_token(
        PROBE_TOKEN_ENV,
        config.probe_token_file.as_deref(),
        "probe_token_file",
    )?;
    let read = read_token(
        READ_TOKEN_ENV,
        config.read_token_file.as_deref(),
        "read_token_file",
    )?;
    let tokens = [Some(&admin), probe.as_ref(), read.as_ref()];
    for (i, t) in tokens.iter().enumerate() {
        if t.is_some() && tokens[..i].contains(t) {
            anyhow::bail!(
                "admin: the admin, probe and read tokens must differ (a token's scope is how it is told apart)"
            );
        }
    }
    Ok(Tokens { admin, probe, read })
}

/// A token from `env` (which wins) or `file` (`admin.<field>`): at least 16 characters.
fn read_token(
    env: &str,
    file: Option<&std::path::Path>,
    field: &str,
) -> anyhow::Result<Option<Arc<str>>> {
    let (token, from) = if let Ok(token) = std::env::var(env) {
        (token, env.to_owned())
    } else if let Some(path) = file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("admin.{field} {}", path.display()))?;
        (token, format!("{}: admin.{field}", path.display()))
    } else {
        return Ok(None);
    };
    if token.trim().len() < 16 {
        anyhow::bail!("{from}: the token must be at least 16 characters");
    }
    Ok(Some(token.trim().into()))
}

impl Running {
    /// Rebuild from the config origin now (what SIGHUP does). Returns the new generation.
    pub async fn reload(&self) -> Result<u64, control::LoadErrors> {
        let controller = self.controller.clone();
        tokio::task::spawn_blocking(move || controller.reload_all())
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
