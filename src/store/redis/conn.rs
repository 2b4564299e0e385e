//! How a node reaches its Redis: one server, a Redis Cluster (a list of seed nodes), or the
//! primary that Redis Sentinel names; each over plain TCP, a Unix socket, or TLS.
//!
//! One parsed [`Endpoint`] serves both the config check (so a typo is reported at load,
//! naming the field) and [`connect`]. Every connection is lazy: nothing is sent until the
//! first call, so a node starts and answers DNS while Redis is down.
//!
//! Sentinel: the `redis` crate resolves the primary through the sentinels but has no
//! self-healing connection over it, so [`SentinelConn`] keeps one multiplexed connection
//! to the primary it was told about and forgets it on any error that means "not the
//! primary any more" (I/O, refused, timed out, `READONLY`); the next call asks the sentinels
//! again. A failover therefore costs the calls in flight, which fail like any outage (edits
//! get 503, writes are buffered), and nothing else.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, ConnectionAddr, IntoConnectionInfo, RedisError, RedisResult,
    TlsCertificates, TlsMode,
};

/// Sentinel's own port, when a sentinel address has none.
const SENTINEL_PORT: u16 = 26379;

/// Where the fleet's Redis is, parsed from `[store] redis` / `--redis`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `redis://`, `rediss://`, `redis+unix://` or `unix://`.
    Single(String),
    /// Several of the above separated by commas: a Redis Cluster's seed nodes.
    Cluster(Vec<String>),
    /// `redis+sentinel://[user:password@]host[:port][,host[:port]…]/<primary name>[/<db>]`,
    /// or `rediss+sentinel://…` for TLS to the sentinels and the primary alike. The
    /// credentials are the primary's (sentinels without a password, as they usually run).
    Sentinel {
        sentinels: Vec<(String, u16)>,
        service: String,
        db: i64,
        tls: bool,
        username: Option<String>,
        password: Option<String>,
    },
}

impl Endpoint {
    pub fn parse(urls: &str) -> Result<Self, String> {
        let urls = urls.trim();
        if let Some((tls, rest)) = urls
            .strip_prefix("redis+sentinel://")
            .map(|r| (false, r))
            .or_else(|| urls.strip_prefix("rediss+sentinel://").map(|r| (true, r)))
        {
            return parse_sentinel(urls, tls, rest);
        }
        let seeds: Vec<&str> = urls
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .collect();
        if seeds.is_empty() {
            return Err(format!("{urls:?}: no Redis URL"));
        }
        for seed in &seeds {
            check_url(seed)?;
        }
        if seeds.len() == 1 {
            return Ok(Self::Single(seeds[0].to_owned()));
        }
        let tls = seeds.iter().filter(|s| s.starts_with("rediss://")).count();
        if tls != 0 && tls != seeds.len() {
            return Err(format!(
                "{urls:?}: the seed nodes mix redis:// and rediss://; a cluster is all TLS or none"
            ));
        }
        Ok(Self::Cluster(
            seeds.into_iter().map(str::to_owned).collect(),
        ))
    }

    pub fn uses_tls(&self) -> bool {
        match self {
            Self::Single(url) => url.starts_with("rediss://"),
            Self::Cluster(seeds) => seeds.iter().all(|s| s.starts_with("rediss://")),
            Self::Sentinel { tls, .. } => *tls,
        }
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let scheme = url.split("://").next().unwrap_or_default();
    if !matches!(scheme, "redis" | "rediss" | "redis+unix" | "unix") {
        return Err(format!(
            "{url:?} is not a Redis URL (redis://host:port/db, rediss:// for TLS, \
             redis+sentinel://host:port/<primary name>)"
        ));
    }
    url.into_connection_info()
        .map(drop)
        .map_err(|e| format!("{url:?}: {e}"))
}

fn parse_sentinel(url: &str, tls: bool, rest: &str) -> Result<Endpoint, String> {
    let bad =
        |why: &str| format!("{url:?}: {why} (redis+sentinel://host:port/<primary name>[/db])");
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let user = percent_decode(user).ok_or_else(|| bad("bad %-escape in the user"))?;
            let pass = percent_decode(pass).ok_or_else(|| bad("bad %-escape in the password"))?;
            (
                (!user.is_empty()).then_some(user),
                (!pass.is_empty()).then_some(pass),
            )
        }
    };
    let sentinels = hosts
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .map(|h| host_port(h).ok_or_else(|| bad(&format!("{h:?} is not host[:port]"))))
        .collect::<Result<Vec<_>, _>>()?;
    if sentinels.is_empty() {
        return Err(bad("no sentinel address"));
    }
    let mut parts = path.split('/').filter(|p| !p.is_empty());
    let service = parts
        .next()
        .ok_or_else(|| bad("no primary name"))?
        .to_owned();
    let db = match parts.next() {
        Some(d) => d
            .parse()
            .map_err(|_| bad(&format!("{d:?} is not a database number")))?,
        None => 0,
    };
    if parts.next().is_some() {
        return Err(bad("too many path segments"));
    }
    Ok(Endpoint::Sentinel {
        sentinels,
        service,
        db,
        tls,
        username,
        password,
    })
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn host_port(s: &str) -> Option<(String, u16)> {
    let (host, port) = if let Some(v6) = s.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        (host, after.strip_prefix(':'))
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok()?,
        None => SENTINEL_PORT,
    };
    (!host.is_empty()).then(|| (host.to_owned(), port))
}

fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next()?, bytes.next()?];
            out.push(u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).ok()
}

/// PEM files for TLS (`[store] tls_ca`, `tls_cert`, `tls_key`). Without a CA the system's
/// roots are trusted, as for any managed Redis with a public certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the server's certificate (replaces the system roots).
    pub ca: Option<PathBuf>,
    /// Our client certificate and key, for servers that require them (`tls-auth-clients`).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl TlsFiles {
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    fn load(&self) -> Result<TlsCertificates, String> {
        let read = |p: &PathBuf| {
            std::fs::read(p).map_err(|e| format!("{}: cannot read ({e})", p.display()))
        };
        let client_tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read(cert)?,
                client_key: read(key)?,
            }),
            (None, None) => None,
            _ => return Err("tls_cert and tls_key go together".to_owned()),
        };
        Ok(TlsCertificates {
            client_tls,
            root_cert: self.ca.as_ref().map(read).transpose()?,
        })
    }
}

/// A connection to the fleet's Redis, cheap to clone (each clone shares the one underneath).
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
    Sentinel(SentinelConn),
}

/// Where the change feed opens its pub/sub connection.
#[derive(Clone)]
pub enum Notices {
    /// The one server, or in a Cluster the first seed (`PUBLISH` reaches every node).
    Fixed(Box<redis::Client>),
    /// Whichever primary the sentinels name at the time of (re)connecting.
    Sentinel(Arc<tokio::sync::Mutex<SentinelClient>>),
}

impl Notices {
    pub async fn client(&self) -> RedisResult<redis::Client> {
        match self {
            Self::Fixed(c) => Ok((**c).clone()),
            Self::Sentinel(s) => s.lock().await.async_get_client().await,
        }
    }
}

/// Connect lazily to `endpoint` with `timeout` on connecting and on every response.
pub fn connect(
    endpoint: &Endpoint,
    tls: &TlsFiles,
    timeout: Duration,
) -> Result<(Conn, Notices), String> {
    if !tls.is_empty() && !endpoint.uses_tls() {
        return Err(
            "tls_ca, tls_cert and tls_key need a TLS URL (rediss:// or rediss+sentinel://)"
                .to_owned(),
        );
    }
    if endpoint.uses_tls() {
        install_crypto();
    }
    let certs = if tls.is_empty() {
        None
    } else {
        Some(tls.load()?)
    };
    let client = |url: &str| -> Result<redis::Client, String> {
        match &certs {
            Some(c) => redis::Client::build_with_tls(url, c.clone()),
            None => redis::Client::open(url),
        }
        .map_err(|e| format!("{url:?}: {e}"))
    };
    match endpoint {
        Endpoint::Single(url) => {
            let client = client(url)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_number_of_retries(2)
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_millis(500));
            let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
                .map_err(|e| format!("{url:?}: {e}"))?;
            Ok((Conn::Single(manager), Notices::Fixed(Box::new(client))))
        }
        Endpoint::Cluster(seeds) => {
            let mut builder = redis::cluster::ClusterClient::builder(seeds.iter().cloned())
                .connection_timeout(timeout)
                .response_timeout(timeout)
                .retries(2);
            if let Some(c) = &certs {
                builder = builder.certs(c.clone());
            }
            let cluster = builder.build().map_err(|e| format!("{seeds:?}: {e}"))?;
            let conn = cluster
                .get_pending_async_connection_with_config(redis::cluster::ClusterConfig::new());
            Ok((
                Conn::Cluster(conn),
                Notices::Fixed(Box::new(client(&seeds[0])?)),
            ))
        }
        Endpoint::Sentinel {
            sentinels,
            service,
            db,
            tls,
            username,
            password,
        } => {
            let addrs = sentinels.iter().map(|(host, port)| {
                if *tls {
                    ConnectionAddr::TcpTls {
                        host: host.clone(),
                        port: *port,
                        insecure: false,
                        tls_params: None,
                    }
                } else {
                    ConnectionAddr::Tcp(host.clone(), *port)
                }
            });
            let mut b = SentinelClientBuilder::new(addrs, service, SentinelServerType::Master)
                .map_err(|e| format!("sentinel {service:?}: {e}"))?
                .set_client_to_redis_db(*db);
            if let Some(u) = username {
                b = b.set_client_to_redis_username(u);
            }
            if let Some(p) = password {
                b = b.set_client_to_redis_password(p);
            }
            if *tls {
                b = b
                    .set_client_to_redis_tls_mode(TlsMode::Secure)
                    .set_client_to_sentinel_tls_mode(TlsMode::Secure);
                if let Some(c) = &certs {
                    b = b
                        .set_client_to_redis_certificates(c.clone())
                        .set_client_to_sentinel_certificates(c.clone());
                }
            }
            let sentinel = Arc::new(tokio::sync::Mutex::new(
                b.build()
                    .map_err(|e| format!("sentinel {service:?}: {e}"))?,
            ));
            let conn = SentinelConn {
                sentinel: sentinel.clone(),
                current: Arc::default(),
                config: AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout)),
            };
            Ok((Conn::Sentinel(conn), Notices::Sentinel(sentinel)))
        }
    }
}

/// rustls needs one process-wide crypto provider; we use ring (already what the probe
/// agent's HTTP client uses). Installing twice is harmless: the first one stays.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The primary that the sentinels name, reconnected through them after a failover.
#[derive(Clone)]
pub struct SentinelConn {
    sentinel: Arc<tokio::sync::Mutex<SentinelClient>>,
    current: Arc<Mutex<Option<MultiplexedConnection>>>,
    config: AsyncConnectionConfig,
}

impl SentinelConn {
    async fn get(&self) -> RedisResult<MultiplexedConnection> {
        if let Some(c) = self.cached() {
            return Ok(c);
        }
        let client = self.sentinel.lock().await.async_get_client().await?;
        let conn = client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await?;
        if let Ok(mut current) = self.current.lock() {
            *current = Some(conn.clone());
        }
        Ok(conn)
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// Forget the primary: the next call asks the sentinels again.
    fn forget(&self) {
        if let Ok(mut current) = self.current.lock() {
            *current = None;
        }
    }

    fn after<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(e) = &result
            && not_the_primary(e)
        {
            self.forget();
        }
        result
    }
}

fn not_the_primary(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("READONLY")
}

impl Conn {
    /// A call gave up on our deadline: a sentinel-named primary that stopped answering may
    /// have been replaced, so ask again next time. (The other kinds reconnect by themselves.)
    pub fn timed_out(&self) {
        if let Conn::Sentinel(s) = self {
            s.forget();
        }
    }
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
            Conn::Sentinel(s) => Box::pin(async move {
                let mut c = s.get().await?;
                let result = c.req_packed_command(cmd).await;
                s.after(result)
            }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Sentinel(s) => Box::pin(async move {
                let mut c = s.get().await?;
                let result = c.req_packed_commands(pipeline, offset, count).await;
                s.after(result)
            }),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
            Conn::Sentinel(s) => s.cached().map_or(0, |c| c.get_db()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!(
            Endpoint::parse("redis://10.0.0.5:6379/0"),
            Ok(Endpoint::Single("redis://10.0.0.5:6379/0".into()))
        );
        assert!(
            Endpoint::parse("rediss://r.example:6380/0")
                .unwrap()
                .uses_tls()
        );
        assert!(matches!(
            Endpoint::parse("redis://a:1, redis://b:2"),
            Ok(Endpoint::Cluster(s)) if s == ["redis://a:1", "redis://b:2"]
        ));
        assert_eq!(
            Endpoint::parse("rediss+sentinel://u:p%40ss@s1,[::1]:26380,s3:1/mymaster/2"),
            Ok(Endpoint::Sentinel {
                sentinels: vec![
                    ("s1".into(), 26379),
                    ("::1".into(), 26380),
                    ("s3".into(), 1)
                ],
                service: "mymaster".into(),
                db: 2,
                tls: true,
                username: Some("u".into()),
                password: Some("p@ss".into()),
            })
        );
    }

    #[test]
    fn refuses_with_a_reason() {
        for (url, why) in [
            ("http://x", "not a Redis URL"),
            ("", "no Redis URL"),
            ("redis://a:1,rediss://b:2", "mix redis:// and rediss://"),
            ("redis+sentinel://s1:26379", "no primary name"),
            ("redis+sentinel:///m", "no sentinel address"),
            ("redis+sentinel://s1:x/m", "is not host[:port]"),
            ("redis+sentinel://s1/m/zero", "is not a database number"),
            ("redis+sentinel://s1/m/0/x", "too many path segments"),
            ("redis+sentinel://u:%zz@s1/m", "bad %-escape"),
        ] {
            let err = Endpoint::parse(url).expect_err(url);
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn tls_files_need_a_tls_url() {
        let tls = TlsFiles {
            ca: Some("ca.pem".into()),
            ..TlsFiles::default()
        };
        let plain = Endpoint::parse("redis://127.0.0.1:1/0").unwrap();
        let err = connect(&plain, &tls, Duration::from_millis(10))
            .err()
            .expect("refused");
        assert!(err.contains("need a TLS URL"), "{err}");
    }
}
