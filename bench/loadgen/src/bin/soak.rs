//! `soak`: answers checked against `explain` while policies are edited, with junk datagrams
//! and TCP churn beside them; loopback only (see `bench/soak/README.md`). Prints one JSON
//! line; exits 1 on any wrong answer, unparseable reply, reply to a response, or failed edit.
//! The admin token comes from `STEERDNS_ADMIN_TOKEN`, as the server's does.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use steerdns_bench::load::check_loopback;
use steerdns_bench::soak::{self, Options};
use steerdns_bench::wire;

/// Soak checker (loopback servers only).
#[derive(Parser, Debug)]
#[command(name = "soak")]
struct Args {
    /// The DNS listener.
    #[arg(long)]
    dns: std::net::SocketAddr,
    /// The admin API (explain, policy edits).
    #[arg(long)]
    admin: std::net::SocketAddr,
    /// Steered names to query (type A), comma-separated.
    #[arg(long, default_value = "www.example.com")]
    names: String,
    /// ECS subnets, one per line (as `subnets` writes them).
    #[arg(long)]
    subnets: PathBuf,
    /// The policy to edit: two files of the same name, alternated.
    #[arg(long, num_args = 2, required = true)]
    versions: Vec<PathBuf>,
    /// Seconds of soak (1..=3600).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    duration: u64,
    /// Milliseconds between edits.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(50..=600_000))]
    edit_every_ms: u64,
    /// UDP checker threads, one query in flight each.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=16))]
    checkers: u64,
    /// Malformed datagrams per second.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u32).range(0..=100_000))]
    junk_per_sec: u32,
    /// TCP connections per second.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    tcp_per_sec: u32,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("soak: {e}");
            ExitCode::from(2)
        }
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(args: &Args) -> Result<bool, String> {
    check_loopback(args.dns)?;
    check_loopback(args.admin)?;
    let token = std::env::var("STEERDNS_ADMIN_TOKEN")
        .map_err(|_| "set STEERDNS_ADMIN_TOKEN to the server's admin token".to_string())?;
    let subnets = wire::parse_subnet_file(&read(&args.subnets)?)
        .map_err(|e| format!("{}: {e}", args.subnets.display()))?;
    let name_of = |p: &Path| -> Result<String, String> {
        let text = read(p)?;
        let value: toml::Table =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))?;
        value
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_owned)
            .ok_or_else(|| format!("{}: no name", p.display()))
    };
    let edit_name = name_of(&args.versions[0])?;
    if name_of(&args.versions[1])? != edit_name {
        return Err("the two --versions must be the same policy".into());
    }
    let options = Options {
        dns: args.dns,
        admin: args.admin,
        token: token.trim().to_owned(),
        duration: Duration::from_secs(args.duration),
        names: args.names.split(',').map(str::to_owned).collect(),
        subnets,
        edit_name,
        versions: [read(&args.versions[0])?, read(&args.versions[1])?],
        edit_every: Duration::from_millis(args.edit_every_ms),
        checkers: args.checkers as usize,
        junk_per_sec: args.junk_per_sec,
        tcp_per_sec: args.tcp_per_sec,
        seed: args.seed,
    };
    let s = soak::run(&options).map_err(|e| e.to_string())?;
    println!("{}", soak::render_json(&options, &s));
    Ok(s.wrong == 0 && s.junk_bad_replies == 0 && s.qr_replies == 0 && s.edit_failures == 0)
}
