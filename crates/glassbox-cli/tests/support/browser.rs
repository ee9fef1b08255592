//! A headless Chromium driven over the DevTools protocol (one websocket, one page), for the
//! workbench's browser tests: navigate, evaluate script, wait for the page, screenshot.
//!
//! Chromium is Debian's (`/usr/bin/chromium`, or `GLASSBOX_CHROMIUM`). Where the test command
//! requires it (`GLASSBOX_REQUIRE_BROWSER=1`, as `scripts/test.sh` sets) a missing browser is
//! a failure; elsewhere the test says loudly that it did not run.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

pub struct Browser {
    child: Child,
    ws: WebSocket<MaybeTlsStream<TcpStream>>,
    session: String,
    next_id: u64,
    profile: PathBuf,
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("GLASSBOX_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

impl Browser {
    /// A fresh browser with an empty profile, or `None` (said on stderr) where there is no
    /// Chromium and the test command does not require one.
    pub fn launch(profile: &Path) -> Option<Browser> {
        let Some(binary) = chromium() else {
            if std::env::var_os("GLASSBOX_REQUIRE_BROWSER").is_some_and(|v| v == "1") {
                panic!("no Chromium (install Debian's chromium, or set GLASSBOX_CHROMIUM)");
            }
            eprintln!("SKIPPED: no Chromium on this machine; the browser test did not run");
            return None;
        };
        let mut child = Command::new(binary)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--window-size=1400,1000",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start chromium");
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        let ws_url = loop {
            line.clear();
            if stderr.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("chromium exited before it listened");
            }
            if let Some(at) = line.find("ws://") {
                break line[at..].trim().to_string();
            }
        };
        // Drain the rest of its stderr so that it never blocks on a full pipe.
        std::thread::spawn(move || for _ in stderr.lines() {});
        let (ws, _) = tungstenite::connect(ws_url.as_str()).expect("connect to chromium");
        let mut browser = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            profile: profile.to_path_buf(),
        };
        let target = browser.call("Target.createTarget", json!({"url": "about:blank"}));
        let attached = browser.call(
            "Target.attachToTarget",
            json!({"targetId": target["targetId"], "flatten": true}),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.call("Page.enable", json!({}));
        browser.call("Runtime.enable", json!({}));
        Some(browser)
    }

    /// One protocol call (on the page once attached); events in between are skipped.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .expect("send to chromium");
        loop {
            let reply = self.ws.read().expect("read from chromium");
            let Message::Text(text) = reply else { continue };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            if v["id"] == json!(id) {
                if let Some(err) = v.get("error") {
                    panic!("{method}: {err}");
                }
                return v["result"].clone();
            }
        }
    }

    pub fn goto(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
    }

    /// The value of a script expression (promises awaited); a thrown error fails the test.
    pub fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        );
        if let Some(e) = r.get("exceptionDetails") {
            panic!("{expression}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Waits (up to a minute) until `condition` is true on the page.
    pub fn wait_for(&mut self, condition: &str) {
        let start = Instant::now();
        let probe = format!(
            "(() => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }})()"
        );
        while start.elapsed() < Duration::from_secs(60) {
            if self.eval(&probe) == json!(true) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let shown = self.eval(
            "(t => t.length > 3000 ? t.slice(0, 1500) + ' … ' + t.slice(-1500) : t)(document.body.innerText)",
        );
        panic!("waited a minute for `{condition}`; the page shows: {shown}");
    }

    /// A PNG of the page as the browser renders it (the whole page, not just the window).
    pub fn screenshot(&mut self, path: &Path) {
        let shot = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        let png = base64_decode(shot["data"].as_str().unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a') as u32 + 26,
            b'0'..=b'9' => (c - b'0') as u32 + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().fold(0u32, |n, &c| (n << 6) | value(c)) << (6 * (4 - chunk.len()));
        let got = chunk.len() * 6 / 8;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + got]);
    }
    out
}
