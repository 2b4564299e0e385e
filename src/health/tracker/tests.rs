use super::*;

const AGENTS: [&str; 3] = ["fra", "iad", "sin"];

struct Clock(SystemTime);

impl Clock {
    fn tick(&mut self, secs: u64) -> SystemTime {
        self.0 += Duration::from_secs(secs);
        self.0
    }
}

fn report(tracker: &mut Tracker, agent: &str, ok: bool, at: SystemTime) {
    let o = Observation {
        target: "cdn-a".into(),
        agent: agent.into(),
        at,
        ok,
        latency_ms: 20.0,
    };
    tracker.ingest(&o, at);
}

/// One probe round: each agent in `failing` fails, the others succeed; then evaluate.
fn round(tracker: &mut Tracker, clock: &mut Clock, failing: &[&str]) -> Vec<Transition> {
    let now = clock.tick(1);
    for agent in AGENTS {
        report(tracker, agent, !failing.contains(&agent), now);
    }
    tracker.evaluate(now)
}

/// Up (3 good rounds), then down (2 rounds failing everywhere).
fn up_then_down(t: &mut Tracker, clock: &mut Clock) {
    for _ in 0..3 {
        round(t, clock, &[]);
    }
    for _ in 0..2 {
        round(t, clock, &AGENTS);
    }
    assert_eq!(t.state("cdn-a"), State::Down);
}

fn tracker() -> (Tracker, Clock) {
    (
        Tracker::new(Thresholds::default(), HashMap::new()),
        Clock(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
    )
}

#[test]
fn up_after_successes_then_down_by_quorum_within_two_rounds() {
    let (mut t, mut clock) = tracker();
    assert!(
        round(&mut t, &mut clock, &[]).is_empty(),
        "1 success: not up yet"
    );
    round(&mut t, &mut clock, &[]);
    let up = round(&mut t, &mut clock, &[]);
    assert_eq!(up[0].to, State::Up);
    // One location failing is not a quorum.
    for _ in 0..5 {
        assert!(round(&mut t, &mut clock, &["sin"]).is_empty());
    }
    assert_eq!(t.state("cdn-a"), State::Up);
    // Two of three fail: down on the second consecutive failure.
    assert!(round(&mut t, &mut clock, &["fra", "iad"]).is_empty());
    let down = round(&mut t, &mut clock, &["fra", "iad"]);
    assert_eq!(down.len(), 1);
    assert_eq!(down[0].to, State::Down);
    assert!(down[0].reason.contains("3 of 3"), "{}", down[0].reason);
}

#[test]
fn recovery_waits_out_the_hold_down() {
    let (mut t, mut clock) = tracker();
    up_then_down(&mut t, &mut clock);
    // Healthy again: 3 successes are not enough inside the 30 s hold-down.
    for _ in 0..10 {
        round(&mut t, &mut clock, &[]);
    }
    assert_eq!(t.state("cdn-a"), State::Down);
    let mut came_up_after = None;
    for i in 0..40 {
        if round(&mut t, &mut clock, &[])
            .iter()
            .any(|x| x.to == State::Up)
        {
            came_up_after = Some(i);
            break;
        }
    }
    assert!(came_up_after.is_some(), "up once the hold-down has passed");
    // A flap during the hold-down keeps it down (no flapping DNS).
    for _ in 0..2 {
        round(&mut t, &mut clock, &AGENTS);
    }
    for _ in 0..5 {
        round(&mut t, &mut clock, &[]);
    }
    round(&mut t, &mut clock, &AGENTS);
    for _ in 0..5 {
        round(&mut t, &mut clock, &[]);
    }
    assert_eq!(t.state("cdn-a"), State::Down);
}

#[test]
fn a_silent_agent_is_unknown_never_healthy() {
    let (mut t, mut clock) = tracker();
    for _ in 0..3 {
        round(&mut t, &mut clock, &[]);
    }
    assert_eq!(t.state("cdn-a"), State::Up);
    // Nobody reports for longer than stale_after.
    let later = clock.tick(10);
    let transitions = t.evaluate(later);
    assert_eq!(transitions[0].to, State::Unknown);
    // Only one agent comes back and fails twice: alone it is the majority of those reporting.
    for _ in 0..2 {
        let now = clock.tick(1);
        report(&mut t, "fra", false, now);
        t.evaluate(now);
    }
    assert_eq!(t.state("cdn-a"), State::Down);
}

#[test]
fn low_availability_over_the_window_takes_a_location_down() {
    let (mut t, mut clock) = tracker();
    // 200 rounds with one isolated failure every 50: never 2 in a row, availability 98%.
    let mut went_down = false;
    for i in 0..200 {
        let failing: &[&str] = if i % 50 == 49 { &AGENTS } else { &[] };
        if round(&mut t, &mut clock, failing)
            .iter()
            .any(|x| x.to == State::Down)
        {
            went_down = true;
            assert!(i >= 99, "needs min_samples (100) first, went down at {i}");
            break;
        }
    }
    assert!(went_down);
    let reason = &t.details()[0].3;
    assert!(reason.contains("availability"), "{reason}");
}

#[test]
fn stale_and_future_results_are_ignored() {
    let (mut t, clock) = tracker();
    let now = clock.0;
    let o = |at| Observation {
        target: "cdn-a".into(),
        agent: "fra".into(),
        at,
        ok: true,
        latency_ms: 1.0,
    };
    t.ingest(&o(now + Duration::from_secs(60)), now);
    t.ingest(&o(now - Duration::from_secs(3600)), now);
    assert!(t.details().is_empty());
}

#[test]
fn probe_latencies_become_perf_windows_per_region() {
    let regions = HashMap::from([("fra".to_owned(), vec![Region::Country(*b"DE")])]);
    let mut t = Tracker::new(Thresholds::default(), regions);
    let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for (i, agent) in ["fra", "fra", "iad"].iter().enumerate() {
        let o = Observation {
            target: "cdn-a".into(),
            agent: (*agent).into(),
            at: now,
            ok: true,
            latency_ms: 10.0 * (i as f64 + 1.0),
        };
        t.ingest(&o, now);
    }
    let perf = t.perf();
    assert_eq!(
        perf.get("cdn-a", &Region::Country(*b"DE")).unwrap().samples,
        2
    );
    let world = perf.get("cdn-a", &Region::World).unwrap();
    assert_eq!(world.samples, 3);
    assert!((world.mean_ms - 20.0).abs() < 1e-9);
}

#[test]
fn a_short_outage_recovers_after_the_hold_down_not_the_window() {
    let (mut t, mut clock) = tracker();
    // Long enough that the window criteria apply (min_samples = 100).
    for _ in 0..150 {
        round(&mut t, &mut clock, &[]);
    }
    for _ in 0..2 {
        round(&mut t, &mut clock, &AGENTS);
    }
    assert_eq!(t.state("cdn-a"), State::Down);
    let mut up_after = None;
    for i in 1..=120 {
        if round(&mut t, &mut clock, &[])
            .iter()
            .any(|x| x.to == State::Up)
        {
            up_after = Some(i);
            break;
        }
    }
    // Two failures in 150 are 98.7% availability, but they belong to the outage: back after
    // the 30 s hold-down, not after they leave the 5-minute window.
    let up_after = up_after
        .unwrap_or_else(|| panic!("not recovered: {:?} {:?}", t.state("cdn-a"), t.details()));
    assert!((30..=35).contains(&up_after), "up after {up_after} s");
    // And it stays up: the outage does not count against it afterwards.
    for _ in 0..60 {
        assert!(round(&mut t, &mut clock, &[]).is_empty());
    }
}

#[test]
fn a_reporting_gap_does_not_skip_the_hold_down() {
    let (mut t, mut clock) = tracker();
    up_then_down(&mut t, &mut clock);
    // Agents go silent for 10 s, then report success: still in hold-down.
    clock.tick(10);
    for _ in 0..5 {
        round(&mut t, &mut clock, &[]);
    }
    assert_eq!(t.state("cdn-a"), State::Down);
}

#[test]
fn silence_while_down_keeps_the_target_down() {
    let (mut t, mut clock) = tracker();
    up_then_down(&mut t, &mut clock);
    let later = clock.tick(60);
    t.evaluate(later);
    assert_eq!(t.state("cdn-a"), State::Down, "no news is not good news");
}
