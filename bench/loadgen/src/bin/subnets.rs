//! `subnets`: writes N ECS client subnets (IPv4 /24s, IPv6 /56s) spread over the continents of
//! a MaxMind City or Country database, one per line as `subnet continent country`, for
//! `loadgen --subnets`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use steerdns_bench::subnets::{self, Request};

/// Pick client subnets across continents from a MaxMind database.
#[derive(Parser, Debug)]
#[command(name = "subnets")]
struct Args {
    /// City or Country database (.mmdb).
    #[arg(long)]
    db: PathBuf,
    /// How many subnets.
    #[arg(long, short = 'n', default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    count: u64,
    /// Percentage of IPv6 subnets.
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u8).range(0..=100))]
    ipv6_percent: u8,
    /// IPv4 subnet prefix length.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(8..=32))]
    v4_prefix: u8,
    /// IPv6 subnet prefix length.
    #[arg(long, default_value_t = 56, value_parser = clap::value_parser!(u8).range(16..=128))]
    v6_prefix: u8,
    /// PRNG seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output file (default: stdout).
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let request = Request {
        count: args.count as usize,
        ipv6_percent: args.ipv6_percent,
        v4_prefix: args.v4_prefix,
        v6_prefix: args.v6_prefix,
        seed: args.seed,
    };
    let picks = match subnets::pick(&args.db, &request) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("subnets: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut text = String::with_capacity(picks.len() * 32);
    let mut per_continent = std::collections::BTreeMap::new();
    for p in &picks {
        text.push_str(&p.to_string());
        text.push('\n');
        let fam = if p.subnet.addr.is_ipv4() { 0 } else { 1 };
        let counts: &mut [usize; 2] = per_continent.entry(p.continent.clone()).or_default();
        counts[fam] += 1;
    }
    let written = match &args.output {
        Some(path) => std::fs::write(path, &text).map_err(|e| format!("{}: {e}", path.display())),
        None => std::io::stdout()
            .write_all(text.as_bytes())
            .map_err(|e| e.to_string()),
    };
    if let Err(e) = written {
        eprintln!("subnets: {e}");
        return ExitCode::FAILURE;
    }
    let summary: Vec<String> = per_continent
        .iter()
        .map(|(c, [v4, v6])| format!("{c} {v4}+{v6}"))
        .collect();
    eprintln!(
        "subnets: {} subnets (IPv4+IPv6 per continent: {})",
        picks.len(),
        summary.join(", ")
    );
    ExitCode::SUCCESS
}
