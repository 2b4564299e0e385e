//! The `steerdns` command line: `serve`, `check`, `explain`, `probe`, `diff`, `import`, `policy`
//! (export and import between a directory and a fleet's Redis), and `completions` and `man`,
//! generated from these definitions.

mod manpage;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use steerdns::config::Config;
use steerdns::control::{self, ConfigOrigin};

#[derive(Parser)]
#[command(
    name = "steerdns",
    version,
    about = "Multi-CDN steering authoritative DNS server"
)]
struct Cli {
    /// Log format on stderr: text (coloured only when stderr is a terminal and NO_COLOR is
    /// unset) or json (one object per line, for journald/Loki/Elasticsearch pipelines).
    /// RUST_LOG sets the level (default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr; colour codes only where a person reads them (a file or journald would
/// keep the escape sequences as text).
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,hickory_server=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A closed stderr (a log collector gone, `serve 2>&1 | head`) must not turn every log
        // line into a panic: drop what cannot be written.
        .log_internal_errors(false);
    match format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).init();
        }
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Serve DNS (and HTTP health/metrics). Without --config, serves the embedded demo.
    Serve {
        /// Config file (TOML). Default: the embedded demo (zone example.com, test GeoIP data).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// DNS address to listen on (UDP and TCP); repeat for several. Overrides the config.
        #[arg(long = "dns-listen", value_name = "ADDR:PORT")]
        dns_listen: Vec<SocketAddr>,
        /// HTTP address (health, metrics), or "off". Overrides the config.
        #[arg(long = "http-listen", value_name = "ADDR:PORT|off")]
        http_listen: Option<String>,
        /// Fleet mode: share policies, health overrides, ramp state and probe results with the
        /// other nodes through this Redis (redis://host:port/db; rediss:// for TLS, comma-
        /// separated seeds for a Cluster, redis+sentinel://host:26379/<primary>). Overrides
        /// `[store] redis`.
        /// DNS starts and answers while Redis is down.
        #[arg(long, value_name = "URL")]
        redis: Option<String>,
        /// Log this fraction of DNS queries (0 to 1), one structured line each: client network,
        /// name, type, rcode, answer, targets, reason, path. Overrides `[log] query_sample`.
        #[arg(long = "query-sample", value_name = "FRACTION")]
        query_sample: Option<f64>,
    },
    /// Copy a fleet's policies between a directory and Redis (seed a fleet, back it up).
    Policy {
        #[command(subcommand)]
        action: PolicyAction,
    },
    /// Validate a config file with its zones, policies and GeoIP databases, then exit.
    Check {
        /// Config file (TOML). Default: the embedded demo.
        config: Option<PathBuf>,
    },
    /// Explain the answer a client gets for a steered name, offline (no live health; the
    /// admin API's /api/v1/explain uses the running server's health).
    Explain {
        /// The steered name, e.g. www.example.com
        name: String,
        /// The client: an address (a resolver without ECS) or a subnet (ECS), e.g. 2a02:d180::/56
        client: String,
        /// Config file (TOML). Default: the embedded demo.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run a probe agent: check every target in a directory and report to a steerdns server.
    Probe {
        /// This agent's location label, e.g. fra or iad (also the key for [health] agent_countries).
        #[arg(long)]
        location: String,
        /// Directory of target files (probes/targets/*.toml).
        #[arg(long, default_value = "probes/targets")]
        targets: PathBuf,
        /// The server's admin API base URL.
        #[arg(long, default_value = "http://127.0.0.1:8081")]
        report_to: String,
        /// File with the server's probe token ([admin] probe_token_file), or its admin token.
        /// $STEERDNS_PROBE_TOKEN, then $STEERDNS_ADMIN_TOKEN, win over it.
        #[arg(long)]
        token_file: Option<PathBuf>,
        /// Most results kept while the server is unreachable.
        #[arg(long, default_value_t = 100_000)]
        max_backlog: usize,
    },
    /// Preview a policy change: which regions and ASNs would change answer, by how much share.
    Diff {
        /// The current policy file.
        old: PathBuf,
        /// The proposed policy file.
        new: PathBuf,
        /// Config whose GeoIP data to compare on. Default: the embedded demo.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Translate another server's config into a new steerdns config directory.
    Import {
        #[command(subcommand)]
        source: ImportSource,
    },
    /// Print a shell completion script, e.g. `steerdns completions bash >
    /// /etc/bash_completion.d/steerdns`, or `source <(steerdns completions zsh)`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the steerdns(1) man page (roff) with every command and flag, e.g.
    /// `steerdns man > steerdns.1; man -l steerdns.1`.
    Man,
}

#[derive(Subcommand)]
enum ImportSource {
    /// A gdnsd 3.x config directory (config, zones/, geoip/): geoip maps, metafo, multifo and
    /// weighted resources and the zones' DYNA/DYNC records become policies (one per steered
    /// name), zones without those records, and a steerdns.toml. Whatever cannot be translated
    /// exactly is listed with file and line, and nothing is written.
    Gdnsd {
        /// The gdnsd config directory (the one given to `gdnsd -c`).
        dir: PathBuf,
        /// Output directory (created; must be new or empty).
        #[arg(long)]
        out: PathBuf,
    },
    /// An Amazon Route 53 traffic policy document (JSON, format 2015-10-01 or 2023-05-09),
    /// e.g. the Document of `aws route53 get-traffic-policy`. Its failover, geo, weighted and
    /// multivalue rules become one policy for --name (geo rules, one per fallback level, then
    /// a weighted or failover pick) and its endpoints become targets; the zone holding the name
    /// and a steerdns.toml are written too. Latency and geoproximity rules become geo rules by
    /// continent. Health checks (only ids in the document) become probe targets when
    /// --health-checks gives their configurations and steerdns probes can run them. Each
    /// difference is a warning naming the rule. Malformed input is an error naming the file
    /// and JSON path, and nothing is written.
    Route53 {
        /// The traffic policy document (the `Document` of the traffic policy, as JSON).
        document: PathBuf,
        /// The name the policy answers (the traffic policy record's name), e.g. www.example.com.
        #[arg(long, value_name = "FQDN")]
        name: String,
        /// The zone that holds --name. Default: --name without its first label.
        #[arg(long, value_name = "ORIGIN")]
        zone: Option<String>,
        /// TTL of the answers, in seconds (a policy record's TTL is not in the document).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=86400))]
        ttl: u32,
        /// A GeoIP2/GeoLite2 City database for [geoip] city. Default: none named (steerdns then
        /// uses its bundled test data; set one before production).
        #[arg(long, value_name = "CITY.mmdb")]
        geoip: Option<PathBuf>,
        /// The health checks' configurations: the JSON of `aws route53 list-health-checks`.
        /// HTTP(S), string-match and TCP checks the policy references become steerdns probe
        /// target files (probes/targets/) and [probes]; without it, health checks are warnings.
        #[arg(long, value_name = "FILE")]
        health_checks: Option<PathBuf>,
        /// Output directory (created; must be new or empty).
        #[arg(long)]
        out: PathBuf,
    },
}

/// How `steerdns policy` reaches the fleet's Redis (as `[store]` does for `serve`).
#[derive(clap::Args)]
struct StoreArgs {
    /// The fleet's Redis: redis://host:port/db, rediss://… for TLS, several URLs separated by
    /// commas for a Redis Cluster, or redis+sentinel://host:26379/<primary name>.
    #[arg(long, value_name = "URL")]
    redis: String,
    /// The fleet's key prefix ([store] prefix).
    #[arg(long, default_value = "steerdns")]
    prefix: String,
    /// PEM CA for rediss:// (default: the system's roots).
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate, for a Redis that requires one (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM client key (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PolicyAction {
    /// Write every policy in Redis to DIR as <name>.toml (replaced files go to DIR/.history).
    Export {
        #[command(flatten)]
        store: StoreArgs,
        dir: PathBuf,
    },
    /// Store every DIR/*.toml in Redis. Each must parse; existing policies are kept unless
    /// --replace is given. Every node of the fleet picks the change up within its refresh.
    Import {
        #[command(flatten)]
        store: StoreArgs,
        /// Replace policies that already exist (their old versions go to history).
        #[arg(long)]
        replace: bool,
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check { config } => {
            let origin = origin(config);
            let config = origin.load()?;
            let snapshot = control::build_snapshot(&config, 1)?;
            if let Some((dir, _)) = &config.probes {
                steerdns_probes::load_targets(dir).map_err(|errors| {
                    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                    anyhow::anyhow!("{}", lines.join("\n"))
                })?;
            }
            println!(
                "{}: OK ({} zone(s), {} steered name(s), geoip {})",
                config.source,
                snapshot.zones.iter().count(),
                snapshot.steered.len(),
                snapshot.geo.describe()
            );
            Ok(())
        }
        Command::Explain {
            name,
            client,
            config,
        } => {
            let config = origin(config).load()?;
            let snapshot = control::build_snapshot(&config, 1)?;
            let asker = steerdns::api::admin::parse_client(&client).map_err(anyhow::Error::msg)?;
            let mut fqdn = hickory_proto::rr::Name::from_ascii(&name)
                .map_err(|e| anyhow::anyhow!("{name:?} is not a DNS name: {e}"))?;
            fqdn.set_fqdn(true);
            let steered = snapshot
                .steered
                .get(&hickory_proto::rr::LowerName::new(&fqdn))
                .ok_or_else(|| {
                    anyhow::anyhow!("{fqdn} is not a steered name in {}", config.source)
                })?;
            for line in steerdns::explain::explain(&snapshot, steered, &asker).lines() {
                println!("{line}");
            }
            Ok(())
        }
        Command::Diff { old, new, config } => {
            let config = origin(config).load()?;
            let preview = control::diff_files(&config, &old, &new)?;
            print!("{preview}");
            Ok(())
        }
        Command::Probe {
            location,
            targets,
            report_to,
            token_file,
            max_backlog,
        } => probe(location, targets, report_to, token_file, max_backlog),
        Command::Serve {
            config,
            dns_listen,
            http_listen,
            redis,
            query_sample,
        } => {
            let origin = origin(config);
            let mut config = origin.load()?;
            if let Some(fraction) = query_sample {
                steerdns::config::check_query_sample(fraction)
                    .map_err(|e| anyhow::anyhow!("--query-sample: {e}"))?;
                config.query_sample = fraction;
            }
            if let Some(url) = redis {
                steerdns::config::check_redis_url(&url)
                    .map_err(|e| anyhow::anyhow!("--redis: {e}"))?;
                config.store.redis = Some(url);
            }
            if !dns_listen.is_empty() {
                config.dns_listen = dns_listen;
            }
            if let Some(http) = http_listen {
                config.http_listen = match http.as_str() {
                    "off" => None,
                    addr => Some(addr.parse().map_err(|_| {
                        anyhow::anyhow!("--http-listen: {addr:?} is not ADDR:PORT or \"off\"")
                    })?),
                };
            }
            serve(config, origin)
        }
        Command::Policy { action } => policy_command(action),
        Command::Import {
            source: ImportSource::Gdnsd { dir, out },
        } => {
            let report = steerdns::import::gdnsd::import(&dir, &out)?;
            print!("{report}");
            Ok(())
        }
        Command::Import {
            source:
                ImportSource::Route53 {
                    document,
                    name,
                    zone,
                    ttl,
                    geoip,
                    health_checks,
                    out,
                },
        } => {
            let options = steerdns::import::route53::Options {
                name,
                zone,
                ttl,
                geoip: geoip.map(|g| g.display().to_string()),
                health_checks,
            };
            let report = steerdns::import::route53::import(&document, &options, &out)?;
            print!("{report}");
            Ok(())
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "steerdns", &mut std::io::stdout());
            Ok(())
        }
        Command::Man => {
            let mut out = std::io::stdout().lock();
            manpage::render(Cli::command(), &mut out)?;
            std::io::Write::flush(&mut out)?;
            Ok(())
        }
    }
}

fn policy_command(action: PolicyAction) -> anyhow::Result<()> {
    use steerdns::store::redis::{RedisOptions, RedisStore, TlsFiles};
    use steerdns::store::{Expect, PolicyDir, PolicyStore};
    let (PolicyAction::Export { store, .. } | PolicyAction::Import { store, .. }) = &action;
    steerdns::config::check_redis_url(&store.redis).map_err(|e| anyhow::anyhow!("--redis: {e}"))?;
    steerdns::config::check_prefix(&store.prefix).map_err(|e| anyhow::anyhow!("--prefix: {e}"))?;
    let timeout = std::time::Duration::from_secs(5);
    let options = RedisOptions {
        url: store.redis.clone(),
        prefix: store.prefix.clone(),
        timeout,
        refresh: timeout,
        cache_dir: std::env::temp_dir().join(format!("steerdns-policy-cli-{}", std::process::id())),
        tls: TlsFiles {
            ca: store.tls_ca.clone(),
            cert: store.tls_cert.clone(),
            key: store.tls_key.clone(),
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let cache_dir = options.cache_dir.clone();
    runtime.block_on(async move {
        let store = std::sync::Arc::new(RedisStore::open(&options).map_err(anyhow::Error::msg)?);
        match action {
            PolicyAction::Export { dir, .. } => {
                let policies = store.export().await.map_err(anyhow::Error::msg)?;
                let target = PolicyDir::new(&dir);
                for (key, text) in &policies {
                    target.write(key, text)?;
                }
                println!("exported {} policies from {} to {}", policies.len(), store.describe(), dir.display());
                Ok(())
            }
            PolicyAction::Import { dir, replace, .. } => {
                let source = PolicyDir::new(&dir);
                let mut texts = Vec::new();
                for path in source.files()? {
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", path.display()))?;
                    let policy = steerdns::policy::parse(&path.display().to_string(), &text)?;
                    let key = control::policy_key(&policy.name.to_ascii())
                        .map_err(|e| anyhow::anyhow!("{}: name: {e}", path.display()))?;
                    texts.push((key, text));
                }
                let store2 = store.clone();
                let (written, kept) = tokio::task::spawn_blocking(move || -> anyhow::Result<(usize, usize)> {
                    let (mut written, mut kept) = (0, 0);
                    for (key, text) in texts {
                        let expect = match store2.current(&key)? {
                            Some(_) if !replace => {
                                kept += 1;
                                continue;
                            }
                            Some(cur) => Expect::Etag(steerdns::store::etag(&cur)),
                            None => Expect::Absent,
                        };
                        store2.put_if(&key, &text, &expect)?;
                        written += 1;
                    }
                    Ok((written, kept))
                })
                .await??;
                println!(
                    "imported {written} policies from {} into {}; {kept} already there kept (--replace to overwrite)",
                    dir.display(),
                    store.describe()
                );
                let _ = std::fs::remove_dir_all(&cache_dir);
                Ok(())
            }
        }
    })
}

fn origin(config: Option<PathBuf>) -> ConfigOrigin {
    match config {
        Some(path) => ConfigOrigin::File(path),
        None => ConfigOrigin::Demo,
    }
}

fn serve(config: Config, origin: ConfigOrigin) -> anyhow::Result<()> {
    steerdns::alloc::limit_arenas();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let running = steerdns::app::start(config, origin).await?;
        wait_for_stop().await;
        tracing::info!("shutting down");
        running.shutdown().await;
        Ok(())
    })
}

fn probe(
    location: String,
    targets: PathBuf,
    report_to: String,
    token_file: Option<PathBuf>,
    max_backlog: usize,
) -> anyhow::Result<()> {
    let checks = steerdns_probes::load_targets(&targets).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })?;
    use steerdns::app::{PROBE_TOKEN_ENV, TOKEN_ENV};
    let from_env = std::env::var(PROBE_TOKEN_ENV).or_else(|_| std::env::var(TOKEN_ENV));
    let token = match from_env {
        Ok(t) => t.trim().to_owned(),
        Err(_) => match &token_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("--token-file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
            None => anyhow::bail!("no token: set {PROBE_TOKEN_ENV} or --token-file"),
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let cancel = tokio_util::sync::CancellationToken::new();
        let (tx, rx) = tokio::sync::mpsc::channel(steerdns::monitor::QUEUE);
        tracing::info!(targets = checks.len(), %location, %report_to, "probe agent starting");
        let agent = steerdns_probes::spawn_agent(&location, checks, tx, cancel.clone());
        let mut config = steerdns_probes::ReporterConfig::new(report_to, token, max_backlog);
        // Health decisions wait for reports: keep the batching delay well under a probe interval.
        config.flush_interval = std::time::Duration::from_millis(100);
        let reporter = tokio::spawn(steerdns_probes::run_reporter_with(
            rx,
            config,
            cancel.clone(),
        ));
        wait_for_stop().await;
        cancel.cancel();
        let _ = agent.await;
        if let Ok(stats) = reporter.await {
            tracing::info!(
                sent = stats.sent,
                dropped = stats.dropped,
                failed_posts = stats.failed_posts,
                "probe agent stopped"
            );
        }
        Ok(())
    })
}

async fn wait_for_stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
