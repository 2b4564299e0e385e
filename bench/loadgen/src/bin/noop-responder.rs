//! `noop-responder`: echoes every UDP query with QR set, in recvmmsg/sendmmsg batches. The
//! floor of a loopback DNS benchmark: what the kernel and the load generator cost alone.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use steerdns_bench::{noop, signal};

/// Echo UDP DNS queries with QR set (loopback only).
#[derive(Parser, Debug)]
#[command(name = "noop-responder")]
struct Args {
    /// Address to listen on (127.0.0.0/8 or [::1]).
    #[arg(long, default_value = "127.0.0.1:5399")]
    listen: SocketAddr,
    /// Threads, each with its own SO_REUSEPORT socket.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    threads: u64,
    /// Most datagrams per recvmmsg/sendmmsg call.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1024))]
    batch: u64,
    /// Exit after this many seconds (default: run until SIGINT/SIGTERM).
    #[arg(long)]
    max_seconds: Option<u64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() {
        eprintln!(
            "noop-responder: --listen {}: loopback addresses only",
            args.listen
        );
        return ExitCode::FAILURE;
    }
    signal::install();
    let sockets = match noop::bind(args.listen, args.threads as usize) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("noop-responder: bind {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let deadline = args
        .max_seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    if let Some(addr) = sockets.first().and_then(|s| s.local_addr().ok()) {
        eprintln!(
            "noop-responder: listening on {addr} with {} thread(s)",
            sockets.len()
        );
    }
    let batch = args.batch as usize;
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = sockets
            .iter()
            .map(|socket| scope.spawn(move || noop::serve(socket, batch, &signal::STOP, deadline)))
            .collect();
        handles.into_iter().map(|h| h.join()).collect()
    });
    let mut answered = 0;
    let mut failed = false;
    for r in results {
        match r {
            Ok(Ok(n)) => answered += n,
            Ok(Err(e)) => {
                eprintln!("noop-responder: {e}");
                failed = true;
            }
            Err(_) => failed = true,
        }
    }
    eprintln!("noop-responder: answered {answered} datagrams");
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
