//! `converge`: time from a change accepted through one steerdns node's admin API to the new
//! answer in other nodes' DNS responses (policy edits, then health flips); loopback only
//! (see `bench/fleet/README.md`). Prints a Markdown table; `--json FILE` keeps every trial.
//! The admin token comes from `STEERDNS_ADMIN_TOKEN`, as the server's does.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use steerdns_bench::converge::{self, Options, Policy};
use steerdns_bench::signal;

/// Fleet convergence stopwatch (loopback servers only).
#[derive(Parser, Debug)]
#[command(name = "converge")]
struct Args {
    /// The admin API the changes go through (node A).
    #[arg(long)]
    admin: SocketAddr,
    /// A DNS listener to watch, as LABEL=ADDR:PORT; repeat for several nodes.
    #[arg(long = "watch", required = true)]
    watch: Vec<String>,
    /// The steered name.
    #[arg(long)]
    name: String,
    /// A policy file and the address its name answers with, as FILE=ADDRESS; at least two,
    /// alternated. The first is the home policy, whose answer is --flip-target's.
    #[arg(long = "policy", required = true)]
    policies: Vec<String>,
    /// Policy edits to time.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    edits: u64,
    /// The target the health flips take down and bring back.
    #[arg(long)]
    flip_target: Option<String>,
    /// The answer while --flip-target is down.
    #[arg(long)]
    flip_answer: Option<IpAddr>,
    /// Health flips (down, then up) to time.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1000))]
    flips: u64,
    /// Probe results per post (at least the server's down_after_failures and
    /// up_after_successes).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1000))]
    flip_results: u64,
    /// A change not seen on a node after this many ms counts as not converged there.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// Pause between polls of the watched nodes, µs.
    #[arg(long, default_value_t = 1000)]
    poll_us: u64,
    /// Pause between changes, ms (longer than the server's hold_down_ms for the flips).
    #[arg(long, default_value_t = 200)]
    pause_ms: u64,
    /// Also write every trial as one JSON line to this file.
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

fn parse_pair<T: std::str::FromStr>(text: &str, what: &str) -> Result<(String, T), String> {
    let (left, right) = text
        .split_once('=')
        .ok_or_else(|| format!("{what} {text:?}: want LEFT=RIGHT"))?;
    let right = right
        .parse()
        .map_err(|_| format!("{what} {text:?}: cannot parse {right:?}"))?;
    Ok((left.to_owned(), right))
}

fn options(args: &Args) -> Result<Options, String> {
    let token = std::env::var("STEERDNS_ADMIN_TOKEN")
        .map_err(|_| "set STEERDNS_ADMIN_TOKEN to the admin API's token".to_owned())?;
    let watch = args
        .watch
        .iter()
        .map(|w| parse_pair::<SocketAddr>(w, "--watch"))
        .collect::<Result<_, _>>()?;
    let mut policies = Vec::new();
    for p in &args.policies {
        let (file, answer) = parse_pair::<IpAddr>(p, "--policy")?;
        let text = std::fs::read_to_string(&file).map_err(|e| format!("--policy {file}: {e}"))?;
        policies.push(Policy { text, answer });
    }
    let options = Options {
        admin: args.admin,
        token: token.trim().to_owned(),
        watch,
        name: args.name.clone(),
        policies,
        edits: args.edits as usize,
        flip_target: args.flip_target.clone(),
        flip_answer: args.flip_answer,
        flips: args.flips as usize,
        flip_results: args.flip_results as usize,
        timeout: Duration::from_millis(args.timeout_ms),
        poll: Duration::from_micros(args.poll_us),
        pause: Duration::from_millis(args.pause_ms),
    };
    converge::check(&options)?;
    Ok(options)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let options = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("converge: {e}");
            return ExitCode::FAILURE;
        }
    };
    signal::install();
    match converge::run(&options) {
        Ok(trials) => {
            if let Some(path) = &args.json
                && let Err(e) =
                    std::fs::write(path, converge::render_json(&options, &trials) + "\n")
            {
                eprintln!("converge: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            print!("{}", converge::render_table(&options, &trials));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("converge: {e}");
            ExitCode::FAILURE
        }
    }
}
