//! Headless Chromium driven over the DevTools protocol through a pipe
//! (`--remote-debugging-pipe`: commands in on fd 3, replies out on fd 4, each message a JSON
//! object ended by a NUL byte), so a test can load a page, read its live DOM while it polls,
//! and take a screenshot. No WebSocket, no driver binary: Chromium and two pipes.
//!
//! Every wait is bounded; the browser (and its process group) is killed on drop.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::rum_browser::CHROMIUM;
use crate::support::TempDir;

/// The longest one protocol call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Cdp {
    child: Child,
    commands: std::fs::File,
    replies: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    _profile: TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two new descriptors into `fds`; O_CLOEXEC keeps them out of
    // children except where dup2 below places them (dup2 clears the flag on the copy).
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Cdp {
    /// Start Chromium with a `width` × `height` window and attach to a blank page. A browser
    /// that exits before answering its first command (it happens now and then when several
    /// start at once on a loaded machine) is started once more; its stderr is in the panic
    /// if the second one dies too.
    pub fn launch(width: u32, height: u32) -> Self {
        match Self::start(width, height) {
            Ok(cdp) => cdp,
            Err(first) => {
                eprintln!("chromium exited at start, starting it again: {first}");
                Self::start(width, height).unwrap_or_else(|again| {
                    panic!("chromium exited at start twice:\n{first}\n{again}")
                })
            }
        }
    }

    fn start(width: u32, height: u32) -> Result<Self, String> {
        use std::os::fd::AsRawFd;
        use std::os::unix::process::CommandExt;
        if !std::path::Path::new(CHROMIUM).exists() {
            panic!(
                "{CHROMIUM} is required by this test: install the Debian package chromium \
                 (apt-get install chromium)"
            );
        }
        let profile = TempDir::new("chromium-cdp-profile");
        let (cmd_read, cmd_write) = pipe();
        let (reply_read, reply_write) = pipe();
        let (child_in, child_out) = (cmd_read.as_raw_fd(), reply_write.as_raw_fd());
        let mut command = Command::new(CHROMIUM);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--user-data-dir={}", profile.path.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(profile.join("stderr.log")).expect("stderr log"),
            ))
            .process_group(0);
        // SAFETY: only async-signal-safe calls (fcntl, dup2) between fork and exec. Both ends
        // are first copied above 9, so placing one on 3 cannot clobber the other when it
        // happens to be fd 3 or 4 already.
        unsafe {
            command.pre_exec(move || {
                let high_in = libc::fcntl(child_in, libc::F_DUPFD, 10);
                let high_out = libc::fcntl(child_out, libc::F_DUPFD, 10);
                if high_in < 0
                    || high_out < 0
                    || libc::dup2(high_in, 3) < 0
                    || libc::dup2(high_out, 4) < 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(high_in);
                libc::close(high_out);
                Ok(())
            });
        }
        let child = command.spawn().unwrap_or_else(|e| {
            panic!("cannot run {CHROMIUM} ({e}): install the Debian package chromium")
        });
        // The child has its copies; ours of its ends go, so EOF arrives when it exits.
        drop((cmd_read, reply_write));
        let (tx, replies) = mpsc::channel();
        let mut reader = std::fs::File::from(reply_read);
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = [0u8; 64 * 1024];
            loop {
                let n = match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&buf[..n]);
                while let Some(end) = pending.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(v) = serde_json::from_slice::<Value>(&message[..end])
                        && tx.send(v).is_err()
                    {
                        return;
                    }
                }
            }
        });
        let mut cdp = Cdp {
            child,
            commands: std::fs::File::from(cmd_write),
            replies,
            next_id: 0,
            session: None,
            _profile: profile,
        };
        let target = match cdp.try_call("Target.createTarget", json!({ "url": "about:blank" })) {
            Ok(target) => target,
            Err(e) => {
                let log =
                    std::fs::read_to_string(cdp._profile.join("stderr.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                return Err(format!("{e}; its stderr ends:\n{}", tail.join("\n")));
            }
        };
        let target_id = target["targetId"].as_str().expect("a target id").to_owned();
        let attached = cdp.call(
            "Target.attachToTarget",
            json!({ "targetId": target_id, "flatten": true }),
        );
        cdp.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("a session id")
                .to_owned(),
        );
        cdp.call("Page.enable", json!({}));
        cdp.call("Runtime.enable", json!({}));
        cdp.call(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
        Ok(cdp)
    }

    /// One protocol command on the attached page (browser-wide before attaching); its result,
    /// or a panic with the protocol's error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.try_call(method, params)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Self::call`], with a browser that went away (or did not answer) as an error.
    fn try_call(&mut self, method: &str, params: Value) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = &self.session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).expect("JSON");
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .map_err(|e| format!("{method}: the browser went away: {e}"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let reply = self
                .replies
                .recv_timeout(left)
                .map_err(|e| format!("{method}: no reply within {CALL_TIMEOUT:?}: {e}"))?;
            if reply["id"].as_u64() != Some(id) {
                continue; // an event, or a reply to an earlier call that timed out
            }
            if let Some(error) = reply.get("error") {
                // A protocol error is the test's fault, not the browser's: no second start.
                panic!("{method}: {error}");
            }
            return Ok(reply["result"].clone());
        }
    }

    pub fn navigate(&mut self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url }));
        assert!(r.get("errorText").is_none(), "navigate {url}: {r}");
    }

    /// Evaluate a JavaScript expression in the page; its value (JSON-serialisable).
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Evaluate `expression` until it is `true`, for at most `within`; panics with the value of
    /// `describe` (what the page shows instead) if it never is.
    pub fn wait_for(&mut self, what: &str, expression: &str, describe: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.eval(expression) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let seen = self.eval(describe);
        panic!("{what}: not within {within:?}; the page shows: {seen}");
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({ "format": "png", "captureBeyondViewport": true }),
        );
        base64_decode(r["data"].as_str().expect("screenshot data"))
    }
}

impl Drop for Cdp {
    fn drop(&mut self) {
        super::rum_browser::kill_group(&mut self.child);
    }
}

/// Standard base64 (the protocol's encoding of binary data), padding optional.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c:?}"),
        }
    };
    let digits: Vec<u8> = text.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}

#[test]
fn base64_decodes_what_the_protocol_sends() {
    assert_eq!(base64_decode("aGVsbG8="), b"hello");
    assert_eq!(base64_decode("aGVsbG8h"), b"hello!");
    assert_eq!(base64_decode("aGk"), b"hi");
    assert_eq!(base64_decode("iVBORw0KGgo="), b"\x89PNG\r\n\x1a\n");
}
