//! What the .deb installs, checked as the host would use it: the systemd unit with
//! `systemd-analyze verify` (package systemd), and the example config under the unit's
//! command line, with SIGHUP as `systemctl reload` sends it.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::ServeProcess;
use crate::support::*;

const UNIT: &str = include_str!("../../packaging/steerdns.service");
const CONFIG: &str = include_str!("../../packaging/steerdns.toml");
const INSTALLED_BINARY: &str = "/usr/bin/steerdns";
const INSTALLED_CONFIG: &str = "/etc/steerdns/steerdns.toml";

/// The values of `key=` in the unit, in order.
fn unit_values(key: &str) -> Vec<&'static str> {
    let prefix = format!("{key}=");
    UNIT.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

/// The installed binary does not exist here: verify a copy of the unit whose commands run the
/// binary under test (systemd-analyze checks that each is executable), with steerdns(1) from
/// `steerdns man` on MANPATH (it also checks `Documentation=man:` pages).
#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!(
            "SKIPPED systemd_unit_passes_systemd_analyze_verify: systemd-analyze is not \
             installed (Debian package systemd)"
        );
        return;
    };
    let dir = TempDir::new("unit");
    let unit = dir.write(
        "steerdns.service",
        &UNIT.replace(INSTALLED_BINARY, env!("CARGO_BIN_EXE_steerdns")),
    );
    let man = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .arg("man")
        .output()
        .unwrap();
    assert!(man.status.success());
    std::fs::create_dir_all(dir.join("man/man1")).unwrap();
    std::fs::write(dir.join("man/man1/steerdns.1"), &man.stdout).unwrap();
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&unit)
        .env("MANPATH", dir.join("man"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Unknown keys and bad values are only warnings to systemd: any output fails the test.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify: {stderr}"
    );
    // And the same with a command that does not exist fails, so the check above means something.
    let broken = dir.write(
        "broken.service",
        &UNIT.replace(INSTALLED_BINARY, "/nonexistent/steerdns"),
    );
    let out = Command::new(&analyze)
        .arg("verify")
        .arg(&broken)
        .env("MANPATH", dir.join("man"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "a missing ExecStart binary is refused"
    );

    // The sandbox systemd would apply, as systemd-analyze scores it (lower is tighter;
    // systemd calls up to 2.0 "OK"). --offline needs systemd 250 or later.
    let out = Command::new(&analyze)
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    match text
        .lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|score| score.split_whitespace().next())
        .and_then(|score| score.parse::<f64>().ok())
    {
        Some(score) => assert!(score <= 2.0, "exposure {score}:\n{text}"),
        None => eprintln!(
            "SKIPPED the exposure score: this systemd-analyze has no security --offline ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
    }
}

#[test]
fn unit_runs_unprivileged_with_only_the_port_53_capability() {
    assert_eq!(unit_values("User"), ["steerdns"]);
    assert_eq!(unit_values("AmbientCapabilities"), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(
        unit_values("CapabilityBoundingSet"),
        ["CAP_NET_BIND_SERVICE"]
    );
    assert_eq!(unit_values("NoNewPrivileges"), ["yes"]);
    assert_eq!(unit_values("ProtectSystem"), ["strict"]);
    assert_eq!(unit_values("Restart"), ["on-failure"]);
    assert_eq!(unit_values("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    assert_eq!(
        unit_values("ExecStart"),
        [format!("{INSTALLED_BINARY} serve --config {INSTALLED_CONFIG}").as_str()]
    );
    // What the config says steerdns writes is what the unit lets it write.
    let config: toml::Table = CONFIG.parse().expect("packaging/steerdns.toml parses");
    let policies = config["policies"]["dir"].as_str().unwrap();
    assert_eq!(unit_values("ReadWritePaths"), [policies]);
    let cache = config["store"]["cache_dir"].as_str().unwrap();
    let state = format!("/var/lib/{}/", unit_values("StateDirectory")[0]);
    assert!(cache.starts_with(&state), "{cache} is under {state}");
}

/// The packaged config with its absolute paths moved into `dir`, the test GeoIP databases in
/// place of GeoLite2, and every listener on an ephemeral loopback port.
fn packaged_config_in(dir: &TempDir) -> PathBuf {
    let fixtures = Path::new(REPO).join("tests/fixtures/geoip");
    let root = dir.path.display().to_string();
    let text = CONFIG
        .replace(
            "/var/lib/GeoIP/GeoLite2-City.mmdb",
            &fixtures.join("GeoIP2-City-Test.mmdb").display().to_string(),
        )
        .replace(
            "/var/lib/GeoIP/GeoLite2-ASN.mmdb",
            &fixtures
                .join("GeoLite2-ASN-Test.mmdb")
                .display()
                .to_string(),
        )
        .replace("/etc/steerdns", &format!("{root}/etc"))
        .replace("/var/lib/steerdns", &format!("{root}/state"))
        .replace("127.0.0.1:8081", "127.0.0.1:0");
    assert!(
        !text.contains("\"/etc") && !text.contains("\"/var"),
        "{text}"
    );
    dir.write("etc/zones/example.com.zone", DEMO_ZONE);
    dir.write("etc/policies/www.example.com.toml", WWW_POLICY);
    dir.write("etc/admin.token", "an-admin-token-of-enough-length\n");
    dir.write("etc/steerdns.toml", &text)
}

/// The example config is valid as shipped (only its paths moved), and `serve` runs it and
/// survives the unit's ExecReload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packaged_config_checks_serves_and_reloads_on_sighup() {
    let dir = TempDir::new("packaged-config");
    let config = packaged_config_in(&dir);
    let out = Command::new(env!("CARGO_BIN_EXE_steerdns"))
        .arg("check")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "check: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (process, server) = ServeProcess::start(config.clone()).await;
    let soa = dig(server, &["example.com", "SOA", "+norecurse"]).await;
    assert_eq!(soa.status, "NOERROR", "{}", soa.text);
    assert!(soa.flags.iter().any(|f| f == "aa"), "{}", soa.text);

    // ExecReload, as systemd runs it.
    let process = process.reload("/bin/kill", "reloaded configuration").await;
    let www = dig(server, &["www.example.com", "A", "+norecurse"]).await;
    assert_eq!(www.status, "NOERROR", "{}", www.text);
    drop(process);
}

fn which(program: &str) -> Result<PathBuf, ()> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .ok_or(())
}

/// cargo-deb's assets exist: repository files now, generated ones where
/// packaging/build-deb.sh writes them; the maintainer scripts are valid sh.
#[test]
fn deb_assets_exist_or_are_generated_and_scripts_parse() {
    let manifest: toml::Table = std::fs::read_to_string(Path::new(REPO).join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let deb = &manifest["package"]["metadata"]["deb"];
    let script = std::fs::read_to_string(Path::new(REPO).join("packaging/build-deb.sh")).unwrap();
    let assets = deb["assets"].as_array().expect("assets");
    let mut dests = Vec::new();
    for asset in assets {
        let source = asset[0].as_str().unwrap();
        dests.push(asset[1].as_str().unwrap());
        if source == "target/release/steerdns" {
            assert!(script.contains("cargo build --release --locked --bin steerdns"));
        } else if let Some(generated) = source.strip_prefix("target/packaging/") {
            assert!(
                script.contains(&format!("\"$out/{generated}\"")),
                "build-deb.sh writes {source}"
            );
        } else if source.contains('*') {
            let dir = Path::new(REPO).join(source.rsplit_once('/').unwrap().0);
            assert!(
                dir.read_dir().is_ok_and(|mut d| d.next().is_some()),
                "{source}"
            );
        } else {
            assert!(Path::new(REPO).join(source).is_file(), "{source} exists");
        }
    }
    for wanted in [
        "usr/bin/",
        "etc/steerdns/steerdns.toml",
        "usr/share/man/man1/",
        "usr/share/bash-completion/completions/steerdns",
    ] {
        assert!(dests.contains(&wanted), "{wanted} in {dests:?}");
    }
    let scripts = Path::new(REPO).join(deb["maintainer-scripts"].as_str().unwrap());
    for name in ["postinst", "postrm"] {
        let path = scripts.join(name);
        let out = Command::new("sh").arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("#DEBHELPER#"),
            "{name} keeps cargo-deb's hook"
        );
    }
    let postinst = std::fs::read_to_string(scripts.join("postinst")).unwrap();
    // The user the unit runs as, and the directory it may write, are what postinst makes.
    assert!(postinst.contains("--system --group --quiet"));
    assert!(postinst.contains(&format!(" {}\n", unit_values("User")[0])));
    assert!(postinst.contains(&format!(
        "install -d -o steerdns -g steerdns -m 0750 {}",
        unit_values("ReadWritePaths")[0]
    )));
    let units = deb["systemd-units"]["unit-scripts"].as_str().unwrap();
    assert!(
        Path::new(REPO)
            .join(units)
            .join("steerdns.service")
            .is_file()
    );
}
