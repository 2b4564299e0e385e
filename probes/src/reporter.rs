//! Reporting: batch results and POST them to the steerdns server, with a bounded backlog.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ProbeResult;
use crate::check::{USER_AGENT, error_chain, install_crypto_provider};

/// Path of the ingest endpoint, below the server's base URL.
pub const INGEST_PATH: &str = "/api/v1/probe-results";

/// What a reporter did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReporterStats {
    /// Results the server accepted (2xx).
    pub sent: u64,
    /// Results lost: pushed out of the full backlog (oldest first), or still unsent when the
    /// reporter stopped.
    pub dropped: u64,
    /// POSTs that failed (unreachable, timeout, non-2xx).
    pub failed_posts: u64,
}

/// Reporter settings; [`ReporterConfig::new`] gives the defaults [`run_reporter`] uses.
#[derive(Debug, Clone)]
pub struct ReporterConfig {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer {token}`.
    pub token: String,
    /// Most results kept while the server cannot be reached (in flight included).
    pub max_backlog: usize,
    /// Most results in one POST.
    pub batch_max: usize,
    /// How long a new result may wait for others to join its batch.
    pub flush_interval: Duration,
    /// Bound of one POST.
    pub request_timeout: Duration,
    /// First retry delay after a failed POST; doubles on each failure...
    pub backoff_initial: Duration,
    /// ...up to this.
    pub backoff_max: Duration,
    /// Bound of the last flush after cancellation.
    pub final_flush_timeout: Duration,
    /// If set, receives the stats after every change (for metrics, or to wait on in tests).
    pub stats: Option<watch::Sender<ReporterStats>>,
}

impl ReporterConfig {
    pub fn new(base_url: impl Into<String>, token: impl Into<String>, max_backlog: usize) -> Self {
        ReporterConfig {
            base_url: base_url.into(),
            token: token.into(),
            max_backlog,
            batch_max: 500,
            flush_interval: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(5),
            final_flush_timeout: Duration::from_secs(2),
            stats: None,
        }
    }
}

/// Batch results from `rx` and POST them as a JSON array to `{base_url}/api/v1/probe-results`
/// with `Authorization: Bearer {token}`. While the server is unreachable or answers non-2xx,
/// keep a bounded backlog (`max_backlog` results; drop the oldest and count them) and retry
/// with exponential backoff capped at a few seconds. Returns stats when `cancel` fires (after
/// one last flush attempt bounded in time), or when `rx` is closed and everything was sent.
pub async fn run_reporter(
    rx: mpsc::Receiver<ProbeResult>,
    base_url: String,
    token: String,
    max_backlog: usize,
    cancel: CancellationToken,
) -> ReporterStats {
    run_reporter_with(
        rx,
        ReporterConfig::new(base_url, token, max_backlog),
        cancel,
    )
    .await
}

type PostFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

struct Reporter {
    client: Result<reqwest::Client, String>,
    url: String,
    config: ReporterConfig,
    max_backlog: usize,
    batch_max: usize,
    backlog: VecDeque<ProbeResult>,
    /// How many of the oldest in-flight results are over the bound (dropped if the POST fails).
    doomed: usize,
    stats: ReporterStats,
}

impl Reporter {
    fn publish(&self) {
        if let Some(tx) = &self.config.stats {
            tx.send_replace(self.stats.clone());
        }
    }

    /// Add a result; past `max_backlog` results held (queued plus in flight), the oldest go.
    /// The oldest may be in flight: those are marked doomed and dropped if that POST fails.
    fn push(&mut self, result: ProbeResult, in_flight: usize) {
        self.backlog.push_back(result);
        let mut dropped = 0;
        while self.backlog.len() + in_flight - self.doomed > self.max_backlog {
            if self.doomed < in_flight {
                self.doomed += 1;
            } else if self.backlog.pop_front().is_some() {
                dropped += 1;
            } else {
                break;
            }
        }
        self.count_dropped(dropped);
    }

    fn count_dropped(&mut self, dropped: u64) {
        if dropped == 0 {
            return;
        }
        let before = self.stats.dropped;
        self.stats.dropped += dropped;
        // Say it when dropping starts and then every 1000 results, not for each one.
        if before == 0 || before / 1000 != self.stats.dropped / 1000 {
            tracing::warn!(
                total_dropped = self.stats.dropped,
                max_backlog = self.max_backlog,
                "reporter backlog full: oldest probe results dropped"
            );
        }
    }

    /// Take the next batch off the front of the backlog and start posting it.
    fn start_post(&mut self) -> (Vec<ProbeResult>, PostFuture) {
        let n = self.batch_max.min(self.backlog.len());
        let batch: Vec<ProbeResult> = self.backlog.drain(..n).collect();
        let future = self.post(&batch);
        (batch, future)
    }

    fn post(&self, batch: &[ProbeResult]) -> PostFuture {
        let body = serde_json::to_vec(batch);
        let client = self.client.clone();
        let url = self.url.clone();
        let token = self.config.token.clone();
        let timeout = self.config.request_timeout;
        Box::pin(async move {
            let body = body.map_err(|e| format!("cannot encode results: {e}"))?;
            let client = client?;
            let response = client
                .post(&url)
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .timeout(timeout)
                .send()
                .await
                .map_err(|e| error_chain(&e.without_url()))?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("server answered {status}"))
            }
        })
    }

    /// A POST of `batch` failed: put it back at the front, in order, less its doomed part.
    fn requeue(&mut self, batch: Vec<ProbeResult>, error: &str) {
        self.stats.failed_posts += 1;
        tracing::warn!(
            url = %self.url,
            error,
            results = batch.len(),
            failed_posts = self.stats.failed_posts,
            "posting probe results failed"
        );
        let doomed = std::mem::take(&mut self.doomed);
        for result in batch.into_iter().skip(doomed).rev() {
            self.backlog.push_front(result);
        }
        self.count_dropped(doomed as u64);
    }

    fn delivered(&mut self, batch: &[ProbeResult]) {
        // Doomed results got through after all: sent, not dropped.
        self.doomed = 0;
        self.stats.sent += batch.len() as u64;
        tracing::debug!(
            results = batch.len(),
            sent = self.stats.sent,
            "probe results posted"
        );
    }
}

/// [`run_reporter`] with every setting explicit.
pub async fn run_reporter_with(
    mut rx: mpsc::Receiver<ProbeResult>,
    config: ReporterConfig,
    cancel: CancellationToken,
) -> ReporterStats {
    install_crypto_provider();
    // Straight to the server: no proxy from the environment, no redirects.
    let client = reqwest::Client::builder()
        .no_proxy()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("cannot build HTTP client: {}", error_chain(&e)));
    if let Err(e) = &client {
        tracing::error!(error = %e, "reporter cannot post");
    }
    let max_backlog = config.max_backlog.max(1);
    let mut r = Reporter {
        client,
        url: format!("{}{INGEST_PATH}", config.base_url.trim_end_matches('/')),
        max_backlog,
        batch_max: config.batch_max.clamp(1, max_backlog),
        config,
        backlog: VecDeque::new(),
        doomed: 0,
        stats: ReporterStats::default(),
    };
    r.publish();

    let mut in_flight: Option<(Vec<ProbeResult>, PostFuture)> = None;
    // When the next POST may start (set while the backlog is not empty).
    let mut next_attempt: Option<Instant> = None;
    let mut backoff = r.config.backoff_initial;
    let mut backing_off = false;
    let mut rx_open = true;

    loop {
        if in_flight.is_none() && !r.backlog.is_empty() {
            let due = next_attempt.is_none_or(|t| t <= Instant::now());
            if due {
                in_flight = Some(r.start_post());
                next_attempt = None;
            }
        }
        if !rx_open && in_flight.is_none() && r.backlog.is_empty() {
            break; // every sender is gone and everything was delivered
        }
        let wake = next_attempt.filter(|_| in_flight.is_none() && !r.backlog.is_empty());
        let in_flight_len = in_flight.as_ref().map_or(0, |(b, _)| b.len());

        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            outcome = async { in_flight.as_mut().expect("guarded").1.as_mut().await }, if in_flight.is_some() => {
                let (batch, _) = in_flight.take().expect("guarded");
                match outcome {
                    Ok(()) => {
                        r.delivered(&batch);
                        backoff = r.config.backoff_initial;
                        backing_off = false;
                        // Whatever queued meanwhile goes out now.
                        next_attempt = (!r.backlog.is_empty()).then(Instant::now);
                    }
                    Err(e) => {
                        r.requeue(batch, &e);
                        next_attempt = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(r.config.backoff_max);
                        backing_off = true;
                    }
                }
                r.publish();
            }
            received = rx.recv(), if rx_open => {
                match received {
                    Some(result) => {
                        r.push(result, in_flight_len);
                        if next_attempt.is_none() {
                            next_attempt = Some(Instant::now() + r.config.flush_interval);
                        }
                        if r.backlog.len() >= r.batch_max && !backing_off {
                            next_attempt = Some(Instant::now());
                        }
                        r.publish();
                    }
                    None => rx_open = false,
                }
            }
            _ = tokio::time::sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
        }
    }

    // Last flush: whatever is in flight or queued, bounded by `final_flush_timeout`, one try.
    let deadline = Instant::now() + r.config.final_flush_timeout;
    rx.close();
    while let Ok(result) = rx.try_recv() {
        let in_flight_len = in_flight.as_ref().map_or(0, |(b, _)| b.len());
        r.push(result, in_flight_len);
    }
    let mut failed = false;
    if let Some((batch, future)) = in_flight.take() {
        match tokio::time::timeout_at(deadline, future).await {
            Ok(Ok(())) => r.delivered(&batch),
            Ok(Err(e)) => {
                r.requeue(batch, &e);
                failed = true;
            }
            Err(_) => {
                r.requeue(batch, "timeout during the final flush");
                failed = true;
            }
        }
    }
    while !failed && !r.backlog.is_empty() && Instant::now() < deadline {
        let (batch, future) = r.start_post();
        match tokio::time::timeout_at(deadline, future).await {
            Ok(Ok(())) => r.delivered(&batch),
            Ok(Err(e)) => {
                r.requeue(batch, &e);
                failed = true;
            }
            Err(_) => {
                r.requeue(batch, "timeout during the final flush");
                failed = true;
            }
        }
    }
    if !r.backlog.is_empty() {
        let lost = r.backlog.len() as u64;
        r.stats.dropped += lost;
        tracing::warn!(lost, "reporter stopped with undelivered probe results");
        r.backlog.clear();
    }
    r.publish();
    tracing::info!(
        sent = r.stats.sent,
        dropped = r.stats.dropped,
        failed_posts = r.stats.failed_posts,
        "reporter stopped"
    );
    r.stats
}
