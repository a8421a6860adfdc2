//! A small Chrome DevTools Protocol client for driving headless Chromium in tests.
//!
//! Chromium is started with `--remote-debugging-pipe`: it reads commands from its fd 3 and
//! writes answers and events to its fd 4, each message one JSON object ended by a NUL byte.
//! That needs no port and no WebSocket. A reader thread splits the messages and hands them
//! over a channel, so every wait here has a deadline. The browser is killed by its PID when
//! [`Browser`] is dropped.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::TempDir;

const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

/// The Chromium to run: `$ADIT_CHROMIUM`, else Debian's `/usr/bin/chromium`.
pub fn chromium_path() -> PathBuf {
    std::env::var_os("ADIT_CHROMIUM").map_or_else(|| PathBuf::from("/usr/bin/chromium"), Into::into)
}

/// A headless Chromium with one page attached.
pub struct Browser {
    child: Child,
    to_browser: File,
    from_browser: Receiver<Value>,
    session: String,
    next_id: u64,
    profile: TempDir,
}

impl Browser {
    /// Starts Chromium, or returns `None` after a loud note on stderr when it is not
    /// installed and `ADIT_REQUIRE_CHROMIUM` is not set (with it set, a missing Chromium
    /// fails the test).
    pub fn launch(test: &str) -> Option<Browser> {
        let path = chromium_path();
        if !path.exists() {
            let required = std::env::var("ADIT_REQUIRE_CHROMIUM").is_ok_and(|v| v == "1");
            assert!(
                !required,
                "ADIT_REQUIRE_CHROMIUM=1 but {} is missing",
                path.display()
            );
            // Straight to the process's stderr: the harness captures `eprintln!`, and a skipped
            // browser test must be visible in a normal `cargo test` run.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** {test} SKIPPED: chromium not installed (apt-get install chromium) ***\n"
            );
            return None;
        }
        Some(Browser::start(&path))
    }

    fn start(path: &Path) -> Browser {
        let profile = TempDir::new("chromium-profile");
        let (commands_read, commands_write) = pipe();
        let (events_read, events_write) = pipe();
        // Above fd 4, so that placing them on 3 and 4 in the child cannot clobber each other.
        let child_in = dup_above(&commands_read, 10);
        let child_out = dup_above(&events_write, 10);
        drop((commands_read, events_write));

        let log = File::create(profile.path().join("chromium.log")).unwrap();
        let mut cmd = Command::new(path);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-pipe",
            "--window-size=1280,720",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        // Dates the page turns into times depend on the zone; tests assert exact values.
        .env("TZ", "UTC")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        let (fd_in, fd_out) = (child_in.as_raw_fd(), child_out.as_raw_fd());
        // SAFETY: between fork and exec the closure only calls dup2(2), which is
        // async-signal-safe, on descriptors that stay open in the parent until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd_in, 3) < 0 || libc::dup2(fd_out, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().unwrap();
        drop((child_in, child_out));

        let (sender, from_browser) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(File::from(events_read));
            let mut message = Vec::new();
            while reader.read_until(0, &mut message).is_ok_and(|n| n > 0) {
                if message.last() == Some(&0) {
                    message.pop();
                }
                if let Ok(value) = serde_json::from_slice(&message) {
                    if sender.send(value).is_err() {
                        return;
                    }
                }
                message.clear();
            }
        });

        let mut browser = Browser {
            child,
            to_browser: File::from(commands_write),
            from_browser,
            session: String::new(),
            next_id: 0,
            profile,
        };
        let target = browser.command("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_owned();
        let attached = browser.command(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_owned();
        browser.page_command("Page.enable", json!({}));
        browser
    }

    /// Sends a browser-level command and returns its result.
    pub fn command(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    /// Sends a command to the attached page and returns its result.
    pub fn page_command(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.send(method, params, Some(&session))
    }

    fn send(&mut self, method: &str, params: Value, session: Option<&str>) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.to_browser.write_all(&bytes).unwrap();

        let deadline = Instant::now() + COMMAND_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = match self.from_browser.recv_timeout(left) {
                Ok(answer) => answer,
                Err(RecvTimeoutError::Timeout) => panic!("{method}: no answer in {left:?}"),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("{method}: chromium went away:\n{}", self.log())
                }
            };
            // Events carry no id; answers to earlier commands were already waited for.
            if answer["id"].as_u64() != Some(id) {
                continue;
            }
            if let Some(error) = answer.get("error") {
                panic!("{method} failed: {error}");
            }
            return answer["result"].clone();
        }
    }

    /// Loads `url` in the page and waits until the document and its deferred script ran.
    pub fn navigate(&mut self, url: &str) {
        let answer = self.page_command("Page.navigate", json!({"url": url}));
        assert!(
            answer.get("errorText").is_none(),
            "navigate {url}: {answer}"
        );
        self.wait_for(
            Duration::from_secs(10),
            "the page to load",
            "document.readyState === 'complete' && location.href !== 'about:blank'",
        );
    }

    /// Evaluates `expression` in the page (promises awaited) and returns its value.
    pub fn eval(&mut self, expression: &str) -> Value {
        let answer = self.page_command(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(exception) = answer.get("exceptionDetails") {
            panic!("{expression}: {exception}");
        }
        answer["result"]["value"].clone()
    }

    /// Evaluates `expression` every 100 ms until it answers something other than `null`,
    /// `false`, `""` or nothing, and returns that; panics after `limit`.
    pub fn wait_for(&mut self, limit: Duration, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.eval(expression);
            let falsy =
                matches!(value, Value::Null | Value::Bool(false)) || value.as_str() == Some("");
            if !falsy {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what} ({expression})"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Evaluates `expression` every 100 ms until it answers `expected`; panics after
    /// `limit` with the last answer.
    pub fn wait_value(&mut self, limit: Duration, what: &str, expression: &str, expected: Value) {
        let deadline = Instant::now() + limit;
        loop {
            let value = self.eval(expression);
            if value == expected {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}: wanted {expected}, last {value}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes a PNG of the page, `width` by `height` CSS pixels, to `path`.
    pub fn screenshot(&mut self, path: &Path, width: u32, height: u32) {
        let metrics = json!({
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false
        });
        self.page_command("Emulation.setDeviceMetricsOverride", metrics);
        let answer = self.page_command("Page.captureScreenshot", json!({"format": "png"}));
        let data = answer["data"].as_str().unwrap();
        std::fs::write(path, base64_decode(data)).unwrap();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.profile.path().join("chromium.log")).unwrap_or_default()
    }
}

impl Drop for Browser {
    /// Asks Chromium to close (so it takes its helper processes down with it), then kills
    /// it by its PID if it has not exited within two seconds.
    fn drop(&mut self) {
        let close = b"{\"id\":0,\"method\":\"Browser.close\",\"params\":{}}\0";
        let _ = self.to_browser.write_all(close);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2(2) writes two descriptors into the array it is given.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just created and are owned by nothing else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn dup_above(fd: &OwnedFd, lowest: i32) -> OwnedFd {
    // SAFETY: F_DUPFD_CLOEXEC on an open descriptor returns a new one or -1.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, lowest) };
    assert!(new >= 0, "fcntl: {}", std::io::Error::last_os_error());
    // SAFETY: the descriptor was just created and is owned by nothing else.
    unsafe { OwnedFd::from_raw_fd(new) }
}

/// Standard base64 with padding, as the protocol sends binary data.
fn base64_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut bits, mut count) = (0u32, 0);
    for byte in text.bytes() {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => continue,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    out
}
