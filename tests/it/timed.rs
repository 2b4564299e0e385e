//! Time-driven recompiles: a deadline that a health change creates (the active-passive
//! hold-down) or that falls after one (a ramp step) is acted on at its time, with no other
//! event, and `explain` describes the decision being served before, during and after it.
//!
//! Regression tests for the bug where only a policy-file event or SIGHUP woke the control
//! loop: a primary recovered by an override or by probe results stayed on the standby forever,
//! while `explain` already claimed the primary.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde_json::Value;
use tokio::time::Instant;

use crate::health::{entry, post_results, result, unix_ms};
use crate::support::*;

const AP: &str = "ap.example.com";
const PRIMARY: &str = "primary.cdn-a.example.net.";
const STANDBY: &str = "standby.cdn-b.example.net.";
const HOLD_DOWN_S: u64 = 2;
/// How late the fail-back may come after its deadline: the loop's own work is well under
/// 100 ms; the rest is slack for a shared 2-core machine.
const LATE: Duration = Duration::from_millis(700);

fn ap_policy() -> String {
    format!(
        "name = \"{AP}\"\nttl_s = 5\n\n[targets.primary]\ncname = \"{PRIMARY}\"\n\n\
         [targets.standby]\ncname = \"{STANDBY}\"\n\n[[chain]]\nkind = \"active_passive\"\n\
         primary = \"primary\"\nstandby = \"standby\"\nhold_down_s = {HOLD_DOWN_S}\n"
    )
}

async fn server(tag: &str, extra: &str) -> (TempDir, steerdns::app::Running) {
    let dir = TempDir::new(tag);
    let policy = ap_policy();
    let config = write_config_extra(&dir, DEMO_ZONE, &[("ap.example.com.toml", &policy)], extra);
    let running = start_file(&config).await;
    (dir, running)
}

/// `explain` must agree with the DNS answer: same target, and its steps say why.
async fn explained(admin: &AdminClient, server: SocketAddr) -> (String, String, String) {
    let e = admin.explain(AP, "192.0.2.1").await;
    let dns = answer_of(server, AP, None).await;
    let targets = e["targets"].to_string();
    let answer = e["answer"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_start_matches("CNAME ")
        .to_owned();
    (
        dns,
        answer,
        format!("targets {targets}; steps {}", e["steps"]),
    )
}

/// While the hold-down runs: standby served, and explained as held until the deadline.
async fn assert_held(admin: &AdminClient, server: SocketAddr, until: SystemTime) {
    let (dns, answer, why) = explained(admin, server).await;
    assert_eq!(dns, STANDBY, "DNS during the hold-down");
    assert_eq!(answer, dns, "explain's answer is the served one: {why}");
    let deadline = steerdns::policy::eval::utc(until);
    assert!(
        why.contains("held on standby until") && why.contains("(hold-down)"),
        "explain names the hold-down: {why}"
    );
    // The deadline it names is the real one (to the second; `until` may straddle a second).
    let next = steerdns::policy::eval::utc(until + Duration::from_secs(1));
    assert!(
        why.contains(&deadline) || why.contains(&next),
        "explain names the deadline {deadline}: {why}"
    );
}

/// Wait for the fail-back; returns how long after `up_at + hold-down` it came (negative:
/// too early, which fails).
async fn fail_back_delay(server: SocketAddr, up_at: Instant) -> Duration {
    let due = up_at + Duration::from_secs(HOLD_DOWN_S);
    let at = eventually(
        "fail-back to the primary",
        Duration::from_secs(HOLD_DOWN_S) + Duration::from_secs(5),
        async || match answer_of(server, AP, None).await.as_str() {
            PRIMARY => Ok(Instant::now()),
            other => Err(other.to_owned()),
        },
    )
    .await;
    assert!(
        at + Duration::from_millis(150) >= due,
        "failed back {:?} before the hold-down ended",
        due - at
    );
    at.saturating_duration_since(due)
}

/// (a) + (c): override down, then up; nothing else happens; the answer returns to the
/// primary when the hold-down ends, and `explain` agrees with DNS all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn override_recovery_fails_back_after_the_hold_down_with_no_other_event() {
    let (_dir, running) = server("timed-override", "").await;
    let (server, admin) = (v4(&running), AdminClient::of(&running));

    let (dns, answer, why) = explained(&admin, server).await;
    assert_eq!((dns.as_str(), answer.as_str()), (PRIMARY, PRIMARY), "{why}");

    admin.set_health("primary", Some("down")).await;
    let (dns, answer, why) = explained(&admin, server).await;
    assert_eq!((dns.as_str(), answer.as_str()), (STANDBY, STANDBY), "{why}");
    assert!(why.contains("is out"), "{why}");

    admin.set_health("primary", Some("up")).await;
    let (up_at, up_wall) = (Instant::now(), SystemTime::now());
    let until = wall_since(&admin, "primary").await + Duration::from_secs(HOLD_DOWN_S);
    assert!(until >= up_wall, "the hold-down starts at the override");
    // During: held, explained as held (checked repeatedly, not once).
    holds(
        "held on standby",
        Duration::from_secs(HOLD_DOWN_S) - Duration::from_millis(400),
        async || {
            assert_held(&admin, server, until).await;
            Ok(())
        },
    )
    .await;
    let late = fail_back_delay(server, up_at).await;
    assert!(
        late <= LATE,
        "failed back {late:?} after the hold-down ended"
    );

    // After: explained as the primary being up.
    let (dns, answer, why) = explained(&admin, server).await;
    assert_eq!((dns.as_str(), answer.as_str()), (PRIMARY, PRIMARY), "{why}");
    assert!(why.contains("is up → primary"), "{why}");
    running.shutdown().await;
}

/// A flap during the hold-down restarts it: down → up → (1 s) down → up; the fail-back comes
/// a full hold-down after the last recovery, not after the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flap_during_the_hold_down_restarts_it() {
    let (_dir, running) = server("timed-flap", "").await;
    let (server, admin) = (v4(&running), AdminClient::of(&running));
    admin.set_health("primary", Some("down")).await;
    admin.set_health("primary", Some("up")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    admin.set_health("primary", Some("down")).await;
    assert_eq!(answer_of(server, AP, None).await, STANDBY);
    admin.set_health("primary", Some("up")).await;
    let up_at = Instant::now();
    let late = fail_back_delay(server, up_at).await;
    assert!(
        late <= LATE,
        "failed back {late:?} after the restarted hold-down"
    );
    running.shutdown().await;
}

/// (b): the same with measured health, from probe results posted to the ingest API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_recovery_fails_back_after_the_hold_down_with_no_other_event() {
    let (_dir, running) = server(
        "timed-probes",
        "[health]\nup_after_successes = 1\ndown_after_failures = 1\nhold_down_ms = 100\n\
         stale_after_ms = 60000\n",
    )
    .await;
    let (server, admin) = (v4(&running), AdminClient::of(&running));
    let post = async |ok: bool| {
        let r = post_results(&admin, &[result("primary", "ext", SystemTime::now(), ok)]).await;
        assert_eq!(r.status, 200, "{r}");
    };
    post(true).await;
    wait_for_state(&admin, "primary", "up").await;
    assert_eq!(answer_of(server, AP, None).await, PRIMARY);
    post(false).await;
    wait_for_state(&admin, "primary", "down").await;
    assert_eq!(
        wait_for_answer(server, AP, None, STANDBY, Duration::from_secs(3)).await,
        STANDBY
    );

    // One success; then nothing at all is posted.
    post(true).await;
    wait_for_state(&admin, "primary", "up").await;
    let since = wall_since(&admin, "primary").await;
    // The measured transition happened `elapsed` ago: the hold-down counts from there.
    let elapsed = SystemTime::now().duration_since(since).unwrap_or_default();
    let up_at = Instant::now() - elapsed;
    assert_held(&admin, server, since + Duration::from_secs(HOLD_DOWN_S)).await;
    let late = fail_back_delay(server, up_at).await;
    assert!(
        late <= LATE,
        "failed back {late:?} after the hold-down ended"
    );
    let (dns, answer, why) = explained(&admin, server).await;
    assert_eq!((dns.as_str(), answer.as_str()), (PRIMARY, PRIMARY), "{why}");
    running.shutdown().await;
}

async fn wait_for_state(admin: &AdminClient, target: &str, want: &str) {
    eventually(
        &format!("{target} {want}"),
        Duration::from_secs(5),
        async || match entry(admin, target).await {
            Some(e) if e["state"] == want => Ok(()),
            other => Err(format!("{other:?}")),
        },
    )
    .await;
}

/// When the target's current health state began, as the server says.
async fn wall_since(admin: &AdminClient, target: &str) -> SystemTime {
    let e = entry(admin, target).await.expect("a health entry");
    let ms = e["since_unix_ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("since_unix_ms in {e}"));
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

const RAMP: &str = "ramp.example.com";
const OLD_IP: &str = "192.0.2.10";
const NEW_IP: &str = "192.0.2.11";
const STEP_S: u64 = 10;

/// (d): a ramp whose next step boundary falls a few seconds after a health change still steps
/// on time. The health change (an override flip of an unrelated target) publishes, so the loop
/// must sleep to the ramp's boundary from what serves after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ramp_step_after_a_health_change_comes_on_time() {
    let dir = TempDir::new("timed-ramp");
    // Step 0 (50%) began 7 s ago; step 1 (100%) begins in 3 s.
    let now_s = unix_ms(SystemTime::now()) / 1000;
    let start = now_s + 3 - STEP_S;
    let boundary = SystemTime::UNIX_EPOCH + Duration::from_secs(start + STEP_S);
    let ramp = format!(
        "name = \"{RAMP}\"\nttl_s = 5\n\n[targets.pop-old]\na = [\"{OLD_IP}\"]\n\n\
         [targets.pop-new]\na = [\"{NEW_IP}\"]\n\n[[chain]]\nkind = \"weighted\"\n\
         weights = {{ pop-old = 100 }}\n\
         ramp = {{ target = \"pop-new\", percent = [50, 100], step_s = {STEP_S}, start_unix_s = {start} }}\n"
    );
    let ap = ap_policy();
    let config = write_config_extra(
        &dir,
        DEMO_ZONE,
        &[
            ("ramp.example.com.toml", &ramp),
            ("ap.example.com.toml", &ap),
        ],
        "",
    );
    let running = start_file(&config).await;
    let (server, admin) = (v4(&running), AdminClient::of(&running));
    let share = new_share(server).await;
    assert!((0.3..=0.7).contains(&share), "pop-new share {share} at 50%");

    // Health changes after startup: the primary of the other name flaps.
    admin.set_health("primary", Some("down")).await;
    admin.set_health("primary", Some("up")).await;

    let stepped = eventually("ramp at 100%", Duration::from_secs(8), async || {
        let share = new_share(server).await;
        if share == 1.0 {
            Ok(SystemTime::now())
        } else {
            Err(format!("share {share}"))
        }
    })
    .await;
    // One sweep of 100 queries sits between the step and its observation.
    let late = stepped.duration_since(boundary).unwrap_or_default();
    assert!(
        late <= LATE + Duration::from_millis(300),
        "stepped {late:?} after its boundary"
    );
    running.shutdown().await;
}

/// pop-new's share over 100 client /24s sent as ECS.
async fn new_share(server: SocketAddr) -> f64 {
    let n = 100;
    let mut new = 0usize;
    for i in 0..n {
        let subnet = format!("100.64.{i}.0/24");
        match answer_of(server, RAMP, Some(&subnet)).await.as_str() {
            NEW_IP => new += 1,
            OLD_IP => {}
            other => panic!("{subnet}: {other}"),
        }
    }
    new as f64 / n as f64
}
