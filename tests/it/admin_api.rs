//! The admin API (`/api/v1`) on loopback: bearer token, ETags and preconditions, previews,
//! validation errors, delete, history and rollback, concurrent editors, body limits, and the
//! embedded demo's refusal. Every accepted edit must already be serving when its response
//! arrives (the response names the generation).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde_json::json;

use crate::support::*;

const GB: &str = "2a02:d3c0::/56";
const GB_RULE: &str = "{ match = { country = \"GB\" }, targets = [\"cdn-d\", \"cdn-c\"] }";

/// The demo www policy with GB sent to cdn-c first.
fn www_gb_to_c() -> String {
    let text = WWW_POLICY.replace(
        GB_RULE,
        "{ match = { country = \"GB\" }, targets = [\"cdn-c\", \"cdn-d\"] }",
    );
    assert_ne!(text, WWW_POLICY, "the demo www policy changed shape");
    text
}

/// The demo www policy with GB sent to cdn-a.
fn www_gb_to_a() -> String {
    let text = WWW_POLICY.replace(
        GB_RULE,
        "{ match = { country = \"GB\" }, targets = [\"cdn-a\"] }",
    );
    assert_ne!(text, WWW_POLICY, "the demo www policy changed shape");
    text
}

const API_POLICY: &str = r#"
name = "api.example.com"
ttl_s = 20

[targets.pop-iad]
a = ["192.0.2.1"]

[targets.pop-fra]
a = ["192.0.2.2"]

[[chain]]
kind = "failover"
order = ["pop-iad", "pop-fra"]
"#;

/// A server whose policies live in a temp directory (the demo zone, www and pop).
struct Editable {
    dir: TempDir,
    running: steerdns::app::Running,
    admin: AdminClient,
    server: SocketAddr,
}

impl Editable {
    async fn start(tag: &str) -> Self {
        Self::start_with_http(tag, "").await
    }

    /// With extra `[http]` keys or tables (e.g. `[http.rate_limit]`).
    async fn start_with_http(tag: &str, http: &str) -> Self {
        let dir = TempDir::new(tag);
        let config = write_config(&dir, DEMO_ZONE, &demo_policies());
        let text = std::fs::read_to_string(&config).unwrap().replace(
            "[http]\nlisten = \"off\"\n",
            &format!("[http]\nlisten = \"off\"\n{http}\n"),
        );
        std::fs::write(&config, text).unwrap();
        let running = start_file(&config).await;
        let admin = AdminClient::of(&running);
        let server = v4(&running);
        Self {
            dir,
            running,
            admin,
            server,
        }
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(&format!("policies/{name}.toml"))
    }

    fn read(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.file(name)).ok()
    }

    fn generation(&self) -> u64 {
        self.running.published.load().generation
    }

    async fn www_gb(&self) -> String {
        answer_of(self.server, "www.example.com", Some(GB)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_right_token_are_401() {
    // 84 failed authentications from one network: far past the failure limit, which has its
    // own test (abuse.rs).
    let e =
        Editable::start_with_http("auth", "[http.rate_limit]\nauth_failures_per_minute = 0").await;
    let addr = e.admin.addr;
    let token = e.admin.token.clone();
    let requests: &[(&str, &str, &[u8])] = &[
        ("GET", "/api/v1/policies", b""),
        ("GET", "/api/v1/policies/www.example.com", b""),
        ("PUT", "/api/v1/policies/www.example.com", b"x"),
        (
            "PUT",
            "/api/v1/policies/new.example.com",
            API_POLICY.as_bytes(),
        ),
        ("DELETE", "/api/v1/policies/www.example.com", b""),
        ("GET", "/api/v1/policies/www.example.com/history", b""),
        (
            "POST",
            "/api/v1/policies/www.example.com/rollback?version=1",
            b"",
        ),
        (
            "GET",
            "/api/v1/explain?name=www.example.com&client=192.0.2.1",
            b"",
        ),
        ("GET", "/api/v1/health", b""),
        ("PUT", "/api/v1/health/cdn-d", br#"{"state":"down"}"#),
        ("DELETE", "/api/v1/health/cdn-d", b""),
        ("GET", "/api/v1/nonexistent", b""),
    ];
    let wrong_tail = format!("Bearer {token}x");
    let short = format!("Bearer {}", &token[..token.len() - 1]);
    let basic = format!("Basic {token}");
    let bare = token.clone();
    for (method, path, body) in requests {
        for auth in [
            None,
            Some("Bearer not-the-token"),
            Some(wrong_tail.as_str()),
            Some(short.as_str()),
            Some(basic.as_str()),
            Some(bare.as_str()),
            Some("Bearer "),
        ] {
            let headers: Vec<(&str, &str)> =
                auth.map(|a| ("Authorization", a)).into_iter().collect();
            let r = http_request(addr, method, path, &headers, body).await;
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {r}");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{r}");
            assert!(r.error().contains("bearer token"), "{r}");
        }
    }
    // Nothing happened.
    assert_eq!(e.read("www.example.com").as_deref(), Some(WWW_POLICY));
    assert_eq!(e.read("new.example.com"), None);
    assert_eq!(e.generation(), 1);
    assert_eq!(e.www_gb().await, "cdn-d.example.net.");
    // The public listener has no admin routes.
    let http = e.running.http_addr.expect("HTTP listener");
    let r = http_request(
        http,
        "GET",
        "/api/v1/policies",
        &[("Authorization", &format!("Bearer {token}"))],
        b"",
    )
    .await;
    assert_eq!(r.status, 404, "{r}");
    // The right token works.
    assert_eq!(e.admin.get("/api/v1/policies").await.status, 200);
    e.running.shutdown().await;
}

/// RFC 9110 §11.1: the authentication scheme is case-insensitive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_scheme_is_case_insensitive() {
    let running = start_demo().await;
    let admin = AdminClient::of(&running);
    for scheme in ["bearer", "BEARER"] {
        let auth = format!("{scheme} {}", admin.token);
        let r = http_request(
            admin.addr,
            "GET",
            "/api/v1/policies",
            &[("Authorization", &auth)],
            b"",
        )
        .await;
        assert_eq!(r.status, 200, "{scheme}: {r}");
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_get_carry_etags() {
    let e = Editable::start("list").await;
    let r = e.admin.get("/api/v1/policies").await;
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let list = r.json();
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["pop.example.com", "www.example.com"], "{list}");
    let www = &list[1];
    assert_eq!(
        www["source"],
        e.file("www.example.com").display().to_string()
    );

    let r = e.admin.get("/api/v1/policies/www.example.com").await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.header("content-type"), Some("application/toml"));
    let etag = r.header("etag").unwrap();
    assert!(
        etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2,
        "quoted: {etag}"
    );
    assert_eq!(www["etag"], etag, "{list}");
    assert_eq!(r.body, WWW_POLICY);
    // The same policy under other spellings of its name.
    for name in ["www.example.com.", "WWW.Example.COM"] {
        let r = e.admin.get(&format!("/api/v1/policies/{name}")).await;
        assert_eq!(r.status, 200, "{name}: {r}");
        assert_eq!(r.header("etag"), Some(etag), "{name}");
    }
    let r = e.admin.get("/api/v1/policies/nope.example.com").await;
    assert_eq!(r.status, 404, "{r}");
    assert!(r.error().contains("nope.example.com"), "{r}");
    e.running.shutdown().await;
}

/// Names that could escape the policy directory are refused; nothing is written outside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_names_cannot_escape_the_directory() {
    let e = Editable::start("escape").await;
    let evil = API_POLICY.replace("api.example.com", "evil");
    for name in [
        "..%2Fevil",
        "..%2F..%2Fevil",
        "%2E%2E",
        "a%2Fb.example.com",
        "..",
        ".hidden.example.com",
        "a%00b",
    ] {
        for method in ["GET", "PUT", "DELETE"] {
            let r = e
                .admin
                .request(
                    method,
                    &format!("/api/v1/policies/{name}"),
                    &[("If-Match", "*")],
                    evil.as_bytes(),
                )
                .await;
            assert!(matches!(r.status, 400 | 404 | 412), "{method} {name}: {r}");
        }
    }
    let mut found = Vec::new();
    let mut stack = vec![e.dir.path.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().filter_map(Result::ok) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(
                    path.strip_prefix(&e.dir.path)
                        .unwrap()
                        .display()
                        .to_string(),
                );
            }
        }
    }
    found.sort();
    assert_eq!(
        found,
        [
            "policies/pop.example.com.toml",
            "policies/www.example.com.toml",
            "steerdns.toml",
            "zones/example.com.zone"
        ]
    );
    assert_eq!(e.generation(), 1);
    e.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_then_replace_with_if_match() {
    let e = Editable::start("create").await;
    assert_eq!(
        answer_of(e.server, "api.example.com", None).await,
        "NXDOMAIN"
    );

    // Create: 201, ETag, the generation serving it, the file on disk byte for byte.
    let r = e
        .admin
        .put_policy("api.example.com", "", None, API_POLICY)
        .await;
    assert_eq!(r.status, 201, "{r}");
    let body = r.json();
    assert_eq!(body["name"], "api.example.com", "{r}");
    assert_eq!(body["created"], true, "{r}");
    let etag = r.header("etag").unwrap().to_owned();
    assert_eq!(body["etag"], etag.as_str(), "{r}");
    let generation = assert_published(&e.running, &r);
    assert_eq!(generation, 2);
    assert_eq!(
        answer_of(e.server, "api.example.com", None).await,
        "192.0.2.1"
    );
    assert_eq!(e.read("api.example.com").as_deref(), Some(API_POLICY));
    // A new name's preview: every region goes from nothing to pop-iad.
    let changes = body["preview"]["changes"].as_array().unwrap();
    assert!(!changes.is_empty(), "{r}");
    assert!(
        changes
            .iter()
            .all(|c| c["before"] == json!({}) && c["after"] == json!({"pop-iad": 1.0})),
        "{r}"
    );
    assert_eq!(e.admin.policy("api.example.com").await.1, etag);

    // Replace without If-Match: 428. If-None-Match: * on an existing name: 412.
    let v2 = API_POLICY.replace(
        "order = [\"pop-iad\", \"pop-fra\"]",
        "order = [\"pop-fra\", \"pop-iad\"]",
    );
    let r = e.admin.put_policy("api.example.com", "", None, &v2).await;
    assert_eq!(r.status, 428, "{r}");
    assert!(r.error().contains("If-Match"), "{r}");
    let r = e
        .admin
        .request(
            "PUT",
            "/api/v1/policies/api.example.com",
            &[("If-None-Match", "*")],
            v2.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 412, "{r}");
    // A stale ETag: 412, and the response tells the current one.
    let r = e
        .admin
        .put_policy("api.example.com", "", Some("\"0123456789abcdef\""), &v2)
        .await;
    assert_eq!(r.status, 412, "{r}");
    assert_eq!(r.header("etag"), Some(etag.as_str()), "{r}");
    assert!(r.error().contains(&etag), "{r}");
    // If-Match on a name that does not exist: 412.
    let r = e
        .admin
        .put_policy(
            "api2.example.com",
            "",
            Some(&etag),
            &API_POLICY.replace("api.example.com", "api2.example.com"),
        )
        .await;
    assert_eq!(r.status, 412, "{r}");
    assert_eq!(e.read("api.example.com").as_deref(), Some(API_POLICY));
    assert_eq!(e.generation(), 2);
    assert_eq!(
        answer_of(e.server, "api.example.com", None).await,
        "192.0.2.1"
    );

    // The right ETag: 200, a new ETag, serving before the response.
    let r = e
        .admin
        .put_policy("api.example.com", "", Some(&etag), &v2)
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["created"], false);
    let etag2 = r.header("etag").unwrap().to_owned();
    assert_ne!(etag2, etag);
    assert_published(&e.running, &r);
    assert_eq!(
        answer_of(e.server, "api.example.com", None).await,
        "192.0.2.2"
    );
    assert_eq!(e.read("api.example.com").as_deref(), Some(v2.as_str()));
    assert_eq!(e.admin.policy("api.example.com").await, (v2.clone(), etag2));

    // `If-Match: *` matches any current version.
    let r = e
        .admin
        .put_policy("api.example.com", "", Some("*"), API_POLICY)
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.header("etag"),
        Some(etag.as_str()),
        "same text, same ETag"
    );
    assert_eq!(
        answer_of(e.server, "api.example.com", None).await,
        "192.0.2.1"
    );

    // The replaced GB answer over DNS, right after the response.
    let (_, www_etag) = e.admin.policy("www.example.com").await;
    let r = e
        .admin
        .put_policy("www.example.com", "", Some(&www_etag), &www_gb_to_c())
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_published(&e.running, &r);
    assert_eq!(e.www_gb().await, "cdn-c.example.net.");
    let d = dig(
        e.server,
        &["www.example.com", "A", "+subnet=81.2.69.142/32"],
    )
    .await;
    assert_eq!(d.answer_data("CNAME"), ["cdn-c.example.net."], "{}", d.text);
    e.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_previews_and_changes_nothing() {
    let e = Editable::start("dry-run").await;
    let (_, etag) = e.admin.policy("www.example.com").await;
    let r = e
        .admin
        .put_policy(
            "www.example.com",
            "?dry_run=true",
            Some(&etag),
            &www_gb_to_c(),
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(
        r.header("etag"),
        None,
        "no ETag for what was not stored: {r}"
    );
    let body = r.json();
    assert_eq!(body["generation"], serde_json::Value::Null, "{r}");
    assert_eq!(body["created"], false, "{r}");
    let preview = &body["preview"];
    assert!(preview["regions"].as_u64().unwrap() > 1, "{r}");
    let changes = preview["changes"].as_array().unwrap();
    assert_eq!(
        changes,
        &[json!({
            "region": "country GB",
            "before": {"cdn-d": 1.0},
            "after": {"cdn-c": 1.0},
        })],
        "{r}"
    );
    // Nothing changed: file, ETag, generation, answers.
    assert_eq!(e.read("www.example.com").as_deref(), Some(WWW_POLICY));
    assert_eq!(e.admin.policy("www.example.com").await.1, etag);
    assert_eq!(e.generation(), 1);
    assert_eq!(e.www_gb().await, "cdn-d.example.net.");

    // An ASN region: AS 6167 moved from cdn-a to cdn-b.
    let asn = WWW_POLICY.replace(
        "{ match = { asn = 6167 }, targets = [\"cdn-a\", \"cdn-b\"] }",
        "{ match = { asn = 6167 }, targets = [\"cdn-b\", \"cdn-a\"] }",
    );
    assert_ne!(asn, WWW_POLICY);
    let r = e
        .admin
        .put_policy("www.example.com", "?dry_run=true", Some(&etag), &asn)
        .await;
    assert_eq!(r.status, 200, "{r}");
    let changes = r.json()["preview"]["changes"].clone();
    assert!(
        changes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["region"] == "asn 6167" && c["after"] == json!({"cdn-b": 1.0})),
        "{changes}"
    );
    // A dry run of an invalid policy is refused like the real thing.
    let r = e
        .admin
        .put_policy(
            "www.example.com",
            "?dry_run=true",
            Some(&etag),
            &WWW_POLICY.replace("\"GB\"", "\"UK\""),
        )
        .await;
    assert_eq!(r.status, 400, "{r}");
    // A dry run for a new name needs no precondition.
    let r = e
        .admin
        .put_policy("api.example.com", "?dry_run=true", None, API_POLICY)
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["created"], true);
    assert_eq!(e.read("api.example.com"), None);
    assert_eq!(
        answer_of(e.server, "api.example.com", None).await,
        "NXDOMAIN"
    );
    assert_eq!(e.generation(), 1);
    e.running.shutdown().await;
}

/// policies/README.md shows a dry run without `If-Match` ("preview: what would change"); a
/// preview writes nothing, so it should not need the ETag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_needs_no_if_match() {
    let e = Editable::start("dry-run-no-etag").await;
    let r = e
        .admin
        .put_policy("www.example.com", "?dry_run=true", None, &www_gb_to_c())
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(e.generation(), 1);
    e.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_edits_are_400_naming_file_and_field_and_change_nothing() {
    let e = Editable::start("invalid").await;
    let (_, etag) = e.admin.policy("www.example.com").await;
    let file = e.file("www.example.com").display().to_string();
    let cases: Vec<(String, String)> = vec![
        (
            WWW_POLICY.replace("\"GB\"", "\"UK\""),
            format!("{file}: chain[1].rules[2].match.country: "),
        ),
        (
            WWW_POLICY.replace("\"GB\"", "\"UK\""),
            "did you mean \"GB\"?".into(),
        ),
        (
            WWW_POLICY.replace(
                "kind = \"up\"",
                "kind = \"weighted\"\nweights = { cdn-a = 1 }",
            ),
            format!("{file}: chain[0]: \"weighted\" makes the final pick"),
        ),
        (
            WWW_POLICY.replace("ttl_s = 30", "ttl_s = 0"),
            format!("{file}: ttl_s: "),
        ),
        (
            WWW_POLICY.replace("[[chain]]", "[[chian]]"),
            format!("{file}: TOML parse error"),
        ),
        (
            WWW_POLICY.replace("name = \"www.example.com\"", "name = \"pop.example.com\""),
            "the body is for pop.example.com, but the request is for www.example.com".into(),
        ),
        ("".into(), format!("{file}: ")),
    ];
    for (body, needle) in &cases {
        let r = e
            .admin
            .put_policy("www.example.com", "", Some(&etag), body)
            .await;
        assert_eq!(r.status, 400, "{needle}: {r}");
        assert!(
            r.error().contains(needle.as_str()),
            "want {needle:?} in {r}"
        );
    }
    // Not UTF-8.
    let r = e
        .admin
        .request(
            "PUT",
            "/api/v1/policies/www.example.com",
            &[("If-Match", &etag)],
            b"name = \"\xff\xfe\"",
        )
        .await;
    assert_eq!(r.status, 400, "{r}");
    // New names that cannot be served.
    for (name, needle) in [
        ("www.example.org", "is not inside any configured zone"),
        ("mail.example.com", "also has static records"),
        ("x.sub.example.com", "name: "),
    ] {
        let r = e
            .admin
            .put_policy(name, "", None, &API_POLICY.replace("api.example.com", name))
            .await;
        assert_eq!(r.status, 400, "{name}: {r}");
        assert!(r.error().contains(needle), "{name}: want {needle:?} in {r}");
        assert_eq!(e.read(name), None);
    }
    assert_eq!(e.read("www.example.com").as_deref(), Some(WWW_POLICY));
    assert_eq!(e.admin.policy("www.example.com").await.1, etag);
    assert_eq!(e.generation(), 1);
    assert!(!e.running.published.is_stale());
    assert_eq!(e.www_gb().await, "cdn-d.example.net.");
    assert_eq!(
        answer_of(e.server, "mail.example.com", None).await,
        "192.0.2.25"
    );
    e.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_history_and_rollback() {
    let e = Editable::start("history").await;
    let pop_v1 = "192.0.2.2";
    assert_eq!(
        answer_of(e.server, "pop.example.com", Some(GB)).await,
        pop_v1
    );
    let (_, pop_etag) = e.admin.policy("pop.example.com").await;

    // DELETE needs the ETag too.
    let r = e.admin.delete_policy("pop.example.com", None).await;
    assert_eq!(r.status, 428, "{r}");
    let r = e
        .admin
        .delete_policy("pop.example.com", Some("\"0000000000000000\""))
        .await;
    assert_eq!(r.status, 412, "{r}");
    assert_eq!(
        answer_of(e.server, "pop.example.com", Some(GB)).await,
        pop_v1
    );
    let r = e
        .admin
        .delete_policy("pop.example.com", Some(&pop_etag))
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_published(&e.running, &r);
    assert_eq!(r.json()["etag"], serde_json::Value::Null);
    assert_eq!(
        answer_of(e.server, "pop.example.com", Some(GB)).await,
        "NXDOMAIN"
    );
    assert_eq!(e.read("pop.example.com"), None);
    assert_eq!(
        e.admin.get("/api/v1/policies/pop.example.com").await.status,
        404
    );
    let r = e
        .admin
        .delete_policy("pop.example.com", Some(&pop_etag))
        .await;
    assert_eq!(r.status, 404, "{r}");

    // The deleted version is in history; rolling back re-creates it.
    let r = e
        .admin
        .get("/api/v1/policies/pop.example.com/history")
        .await;
    assert_eq!(r.status, 200, "{r}");
    let versions = r.json();
    assert_eq!(versions.as_array().unwrap().len(), 1, "{versions}");
    assert_eq!(versions[0]["etag"], pop_etag.as_str());
    let id = versions[0]["id"].as_u64().unwrap();
    let r = e
        .admin
        .request(
            "POST",
            &format!("/api/v1/policies/pop.example.com/rollback?version={id}"),
            &[],
            b"",
        )
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_published(&e.running, &r);
    assert_eq!(
        answer_of(e.server, "pop.example.com", Some(GB)).await,
        pop_v1
    );
    assert_eq!(e.read("pop.example.com").as_deref(), Some(POP_POLICY));

    // www: v1 → v2 → v3, history newest first; roll back to v1.
    let (_, etag1) = e.admin.policy("www.example.com").await;
    let r = e
        .admin
        .put_policy("www.example.com", "", Some(&etag1), &www_gb_to_c())
        .await;
    assert_eq!(r.status, 200, "{r}");
    let etag2 = r.header("etag").unwrap().to_owned();
    let r = e
        .admin
        .put_policy("www.example.com", "", Some(&etag2), &www_gb_to_a())
        .await;
    assert_eq!(r.status, 200, "{r}");
    let etag3 = r.header("etag").unwrap().to_owned();
    assert_eq!(e.www_gb().await, "cdn-a.example.net.");
    let r = e
        .admin
        .get("/api/v1/policies/www.example.com/history")
        .await;
    assert_eq!(r.status, 200, "{r}");
    let versions = r.json();
    let etags: Vec<&str> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["etag"].as_str().unwrap())
        .collect();
    assert_eq!(etags, [etag2.as_str(), etag1.as_str()], "{versions}");
    let v1 = versions[1]["id"].as_u64().unwrap();
    assert!(versions[0]["id"].as_u64().unwrap() > v1);

    let rollback =
        |version: u64| format!("/api/v1/policies/www.example.com/rollback?version={version}");
    let r = e.admin.request("POST", &rollback(v1), &[], b"").await;
    assert_eq!(r.status, 428, "{r}");
    let r = e
        .admin
        .request("POST", &rollback(v1), &[("If-Match", &etag2)], b"")
        .await;
    assert_eq!(r.status, 412, "{r}");
    let r = e
        .admin
        .request("POST", &rollback(12345), &[("If-Match", &etag3)], b"")
        .await;
    assert_eq!(r.status, 404, "{r}");
    assert_eq!(e.www_gb().await, "cdn-a.example.net.");
    let r = e
        .admin
        .request("POST", &rollback(v1), &[("If-Match", &etag3)], b"")
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_published(&e.running, &r);
    assert_eq!(r.json()["etag"], etag1.as_str(), "{r}");
    assert_eq!(e.www_gb().await, "cdn-d.example.net.");
    assert_eq!(
        e.admin.policy("www.example.com").await,
        (WWW_POLICY.to_owned(), etag1)
    );
    // The rollback is itself an edit: v3 is in history now.
    let versions = e
        .admin
        .get("/api/v1/policies/www.example.com/history")
        .await
        .json();
    assert_eq!(versions.as_array().unwrap().len(), 3, "{versions}");
    assert_eq!(versions[0]["etag"], etag3.as_str(), "{versions}");
    e.running.shutdown().await;
}

/// Two editors read the same ETag and write at once: exactly one wins, the other gets 412,
/// and the stored policy is the winner's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_editors_exactly_one_wins() {
    let e = Editable::start("race").await;
    let bodies = [www_gb_to_c(), www_gb_to_a()];
    for round in 0..8 {
        let (_, etag) = e.admin.policy("www.example.com").await;
        let (a, b) = tokio::join!(
            e.admin
                .put_policy("www.example.com", "", Some(&etag), &bodies[0]),
            e.admin
                .put_policy("www.example.com", "", Some(&etag), &bodies[1]),
        );
        let mut statuses = [a.status, b.status];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}: {a}\n{b}");
        let (winner, want) = if a.status == 200 {
            (&bodies[0], "cdn-c.example.net.")
        } else {
            (&bodies[1], "cdn-a.example.net.")
        };
        assert_eq!(e.read("www.example.com").as_deref(), Some(winner.as_str()));
        assert_eq!(e.admin.policy("www.example.com").await.0, *winner);
        assert_eq!(e.www_gb().await, want, "round {round}");
        // Back to the demo text for the next round.
        let (_, etag) = e.admin.policy("www.example.com").await;
        let r = e
            .admin
            .put_policy("www.example.com", "", Some(&etag), WWW_POLICY)
            .await;
        assert_eq!(r.status, 200, "{r}");
    }
    e.running.shutdown().await;
}

/// The embedded demo's policies are compiled in: edits are 409 with a message saying so;
/// reads still work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_server_refuses_edits_with_409() {
    let running = start_demo().await;
    let admin = AdminClient::of(&running);
    let list = admin.get("/api/v1/policies").await;
    assert_eq!(list.status, 200, "{list}");
    assert_eq!(list.json().as_array().unwrap().len(), 8, "{list}");
    let (text, etag) = admin.policy("www.example.com").await;
    assert_eq!(text, WWW_POLICY);

    let r = admin
        .put_policy("api.example.com", "", None, API_POLICY)
        .await;
    assert_eq!(r.status, 409, "{r}");
    assert!(r.error().contains("embedded demo"), "{r}");
    let r = admin
        .put_policy("www.example.com", "", Some(&etag), &www_gb_to_c())
        .await;
    assert_eq!(r.status, 409, "{r}");
    assert!(r.error().contains("embedded demo"), "{r}");
    let r = admin.delete_policy("www.example.com", Some(&etag)).await;
    assert_eq!(r.status, 409, "{r}");
    assert!(r.error().contains("embedded demo"), "{r}");
    let r = admin.get("/api/v1/policies/www.example.com/history").await;
    assert_eq!(r.status, 409, "{r}");
    assert_eq!(running.published.load().generation, 1);
    assert_eq!(
        answer_of(v4(&running), "www.example.com", Some(GB)).await,
        "cdn-d.example.net."
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_64_kib_are_413() {
    let e = Editable::start("big").await;
    let (_, etag) = e.admin.policy("www.example.com").await;
    let pad = |policy: &str, size: usize| {
        let mut text = policy.to_owned();
        while text.len() < size {
            text.push_str("# padding padding padding padding padding padding padding padding\n");
        }
        text.truncate(size - 1);
        text.push('\n');
        text
    };
    let over = pad(&www_gb_to_c(), 64 * 1024 + 1);
    let r = e
        .admin
        .put_policy("www.example.com", "", Some(&etag), &over)
        .await;
    assert_eq!(r.status, 413, "{}", r.status);
    let r = e
        .admin
        .put_policy("www.example.com", "?dry_run=true", Some(&etag), &over)
        .await;
    assert_eq!(r.status, 413, "{}", r.status);
    assert_eq!(e.read("www.example.com").as_deref(), Some(WWW_POLICY));
    assert_eq!(e.generation(), 1);
    assert_eq!(e.www_gb().await, "cdn-d.example.net.");

    // Just under the limit is fine.
    let under = pad(&www_gb_to_c(), 64 * 1024 - 16);
    let r = e
        .admin
        .put_policy("www.example.com", "", Some(&etag), &under)
        .await;
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(e.www_gb().await, "cdn-c.example.net.");
    assert_eq!(e.read("www.example.com"), Some(under));
    e.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_overrides_validate_their_body() {
    let running = start_demo().await;
    let admin = AdminClient::of(&running);
    for body in [
        "",
        "{}",
        "{\"state\":\"sideways\"}",
        "{\"state\":\"down\",\"extra\":1}",
        "down",
    ] {
        let r = admin
            .request("PUT", "/api/v1/health/cdn-d", &[], body.as_bytes())
            .await;
        assert_eq!(r.status, 400, "{body:?}: {r}");
        assert!(r.error().contains("body"), "{r}");
    }
    assert_eq!(running.published.load().generation, 1);
    let r = admin.get("/api/v1/health").await;
    assert_eq!(r.json(), json!([]), "{r}");
    // "unknown" is a state an operator may set; it drops nothing.
    admin.set_health("cdn-d", Some("unknown")).await;
    assert_eq!(
        answer_of(v4(&running), "www.example.com", Some(GB)).await,
        "cdn-d.example.net."
    );
    running.shutdown().await;
}

const PROBE_TOKEN: &str = "probe-token-0123456789";
const READ_TOKEN: &str = "read-token-0123456789ab";

/// A server with the probe and read tokens set (besides its admin token).
async fn scoped(tag: &str, probe: &str, read: &str) -> anyhow::Result<steerdns::app::Running> {
    let dir = TempDir::new(tag);
    let path = write_config(&dir, DEMO_ZONE, &demo_policies());
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "[admin]\nlisten = \"off\"\n",
        "[admin]\nlisten = \"off\"\nprobe_token_file = \"probe.token\"\n\
         read_token_file = \"read.token\"\n",
    );
    std::fs::write(&path, text).unwrap();
    dir.write("probe.token", &format!("{probe}\n"));
    dir.write("read.token", &format!("{read}\n"));
    let mut config = steerdns::config::Config::load(&path).expect("valid");
    loopback(&mut config);
    let running = steerdns::app::start(config, steerdns::control::ConfigOrigin::File(path)).await;
    // Keep the directory for the server's lifetime.
    std::mem::forget(dir);
    running
}

/// Probe agents carry a token that may only post results; dashboards one that may only
/// read. Outside its scope a token gets 403 and changes nothing; an unknown one 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_and_read_tokens_may_do_only_their_part() {
    let running = scoped("admin-scopes", PROBE_TOKEN, READ_TOKEN)
        .await
        .expect("starts");
    let admin = AdminClient::of(&running);
    let as_token = |token: &str| AdminClient {
        token: token.to_owned(),
        ..admin.clone()
    };
    let (probe, read) = (as_token(PROBE_TOKEN), as_token(READ_TOKEN));
    let results =
        serde_json::to_vec(&[crate::fleet_support::result("pop-iad", "ams", true)]).unwrap();
    let post_results = async |c: &AdminClient| {
        c.request(
            "POST",
            "/api/v1/probe-results",
            &[("Content-Type", "application/json")],
            &results,
        )
        .await
    };
    let (www, www_etag) = admin.policy("www.example.com").await;
    let generation = running.published.load().generation;

    // The probe token: results, and nothing else.
    assert_eq!(post_results(&probe).await.status, 200);
    for (method, path) in [
        ("GET", "/api/v1/policies"),
        ("GET", "/api/v1/health"),
        (
            "GET",
            "/api/v1/explain?name=www.example.com&client=192.0.2.1",
        ),
        ("DELETE", "/api/v1/health/pop-iad"),
    ] {
        let r = probe.request(method, path, &[], b"").await;
        assert_eq!(r.status, 403, "probe token {method} {path}: {r}");
        assert!(r.error().contains("probe token"), "{r}");
    }
    let r = probe
        .put_policy("www.example.com", "", Some(&www_etag), POP_POLICY)
        .await;
    assert_eq!(r.status, 403, "{r}");

    // The read token: every GET, no write.
    for path in [
        "/api/v1/policies",
        "/api/v1/policies/www.example.com",
        "/api/v1/policies/www.example.com/history",
        "/api/v1/health",
        "/api/v1/measurements",
        "/api/v1/explain?name=www.example.com&client=192.0.2.1",
    ] {
        let r = read.get(path).await;
        assert_eq!(r.status, 200, "read token GET {path}: {r}");
    }
    assert_eq!(read.policy("www.example.com").await.0, www);
    assert_eq!(post_results(&read).await.status, 403);
    let r = read
        .put_policy("www.example.com", "", Some(&www_etag), POP_POLICY)
        .await;
    assert_eq!(r.status, 403, "{r}");
    assert!(r.error().contains("read token"), "{r}");
    let r = read
        .request(
            "PUT",
            "/api/v1/health/pop-iad",
            &[("Content-Type", "application/json")],
            br#"{"state":"down"}"#,
        )
        .await;
    assert_eq!(r.status, 403, "{r}");
    let r = read.delete_policy("www.example.com", Some(&www_etag)).await;
    assert_eq!(r.status, 403, "{r}");

    // Nothing changed; the admin token still does everything; others are unknown.
    assert_eq!(admin.policy("www.example.com").await, (www, www_etag));
    assert_eq!(running.published.load().generation, generation);
    assert_eq!(post_results(&admin).await.status, 200);
    let unknown = as_token("probe-token-0123456789x");
    assert_eq!(post_results(&unknown).await.status, 401);
    running.shutdown().await;
}

/// Scoped tokens must be long enough and differ from each other and from the admin token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scoped_tokens_that_are_short_or_shared_are_refused() {
    let short = scoped("admin-scopes-short", "short", READ_TOKEN).await;
    let err = format!("{:#}", short.err().expect("refused"));
    assert!(
        err.contains("probe_token_file") && err.contains("at least 16"),
        "{err}"
    );
    let shared = scoped("admin-scopes-shared", READ_TOKEN, READ_TOKEN).await;
    let err = format!("{:#}", shared.err().expect("refused"));
    assert!(err.contains("must differ"), "{err}");
}
