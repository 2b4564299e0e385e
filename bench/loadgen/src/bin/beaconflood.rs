//! `beaconflood`: fetch RUM tokens from a steerdns server, then post beacons with them as fast
//! as the server takes them (or at `--rate`), over keep-alive connections; loopback only (see
//! `bench/rum/README.md`). Prints a summary, or one JSON line with `--json`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use steerdns_bench::{beacons, load, signal};

/// RUM beacon load generator (loopback servers only).
#[derive(Parser, Debug)]
#[command(name = "beaconflood")]
struct Args {
    /// The server's public HTTP listener: 127.0.0.0/8 or [::1] only.
    #[arg(long)]
    server: SocketAddr,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=1024))]
    connections: u64,
    /// Tokens to fetch first: the most beacons that will be sent.
    #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=5_000_000))]
    tokens: u64,
    /// Longest beacon phase in seconds (1..=600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration: u64,
    /// Client /24s to claim via X-Forwarded-For (10.a.b.1; at most 65536); 0: none. The
    /// server must list loopback in [rum] trusted_proxies.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(0..=65_536))]
    networks: u64,
    /// Comma-separated target ids; one result each per beacon.
    #[arg(long, default_value = "cdn-a,cdn-b,cdn-c")]
    targets: String,
    /// Beacons per second over all connections (default: as fast as answered).
    #[arg(long)]
    rate: Option<f64>,
    /// A request unanswered after this many ms fails the run.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The server's pid: report its CPU time over the beacon phase (from /proc).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Print one JSON object on one line.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = load::check_loopback(args.server) {
        eprintln!("beaconflood: {e}");
        return ExitCode::FAILURE;
    }
    let options = beacons::Options {
        server: args.server,
        connections: args.connections as usize,
        tokens: args.tokens as usize,
        duration: Duration::from_secs(args.duration),
        networks: args.networks as usize,
        targets: args.targets.split(',').map(str::to_owned).collect(),
        rate: args.rate,
        timeout: Duration::from_millis(args.timeout_ms),
        seed: args.seed,
        server_pid: args.server_pid,
    };
    signal::install();
    match beacons::run(&options) {
        Ok(sum) => {
            if args.json {
                println!("{}", beacons::render_json(&options, &sum));
            } else {
                print!("{}", beacons::render_text(&sum));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("beaconflood: {e}");
            ExitCode::FAILURE
        }
    }
}
