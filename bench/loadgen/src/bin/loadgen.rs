//! `loadgen`: a closed-loop UDP DNS load generator for loopback benchmarks (see
//! `bench/README.md`). It prints a dnsperf-like summary, or one JSON line with `--json`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use steerdns_bench::{load, signal, wire};

/// Closed-loop UDP DNS load generator (loopback servers only).
#[derive(Parser, Debug)]
#[command(name = "loadgen")]
struct Args {
    /// Server to load: 127.0.0.0/8 or [::1] only.
    #[arg(long)]
    server: SocketAddr,
    /// Query file, dnsperf format: `name TYPE` per line.
    #[arg(long)]
    queries: PathBuf,
    /// ECS subnets, one per line (first field); without it queries carry EDNS0 and no ECS.
    #[arg(long)]
    subnets: Option<PathBuf>,
    /// Seconds of sending (1..=600).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    duration: u64,
    /// UDP sockets (source ports).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=64))]
    sockets: u64,
    /// Outstanding queries per socket.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65535))]
    outstanding: u64,
    /// A query unanswered after this many ms is lost (its slot is reused).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=60000))]
    timeout_ms: u64,
    /// Most datagrams per sendmmsg/recvmmsg call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    batch: u64,
    /// PRNG seed (questions, subnets, IDs); the same seed sends the same sequence.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print one JSON object on one line instead of the text summary.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    load::check_loopback(args.server)?;
    let read =
        |p: &PathBuf| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let questions = wire::parse_query_file(&read(&args.queries)?)
        .map_err(|e| format!("{}: {e}", args.queries.display()))?;
    let subnets = match &args.subnets {
        Some(p) => {
            wire::parse_subnet_file(&read(p)?).map_err(|e| format!("{}: {e}", p.display()))?
        }
        None => Vec::new(),
    };
    let options = load::Options {
        server: args.server,
        questions,
        subnets,
        duration: Duration::from_secs(args.duration),
        sockets: args.sockets as usize,
        outstanding: args.outstanding as usize,
        timeout: Duration::from_millis(args.timeout_ms),
        batch: args.batch as usize,
        seed: args.seed,
    };
    signal::install();
    let summary = load::run(&options).map_err(|e| e.to_string())?;
    if args.json {
        println!("{}", load::render_json(&options, &summary));
    } else {
        print!("{}", load::render_text(&options, &summary));
    }
    Ok(())
}
