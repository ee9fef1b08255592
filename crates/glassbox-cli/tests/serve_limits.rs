//! `glassbox serve` refuses what it must and holds up under what it is given: anything
//! outside the served set, foreign hosts and other sites' pages, malformed or oversized
//! requests, silent or slow clients, too many connections, work past the time limit or after
//! its client left, and on a non-loopback address any request without the token. What it
//! answers is `serve_cli.rs`'s.

mod support;

use std::collections::HashMap;

use serde_json::{json, Value};
use support::serve::{request, Server};
use support::{glassbox, ok, root, scratch};

const PROMPT: &str = "When Mary and John went to the store, John gave a drink to";

fn reference() -> String {
    root().join("models/reference").display().to_string()
}

#[test]
fn requests_outside_the_served_set_are_refused() {
    // A folder holding a symlink to a file outside anything served.
    let dir = scratch("serve_cli", "outside");
    let secret = dir.join("secret.txt");
    std::fs::write(&secret, "the secret outside the served set").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&secret, dir.join("link.safetensors")).unwrap();
    let server = Server::start(&[&reference()]);
    let secret_path = secret.display().to_string();
    let attempts = [
        "/api/models/1".to_string(),
        "/api/models/0/tensors/..%2F..%2F..%2Fetc%2Fpasswd".to_string(),
        "/api/models/0/tensors/link.safetensors".to_string(),
        format!("/api/models/0/tensors/{}", secret_path.replace('/', "%2F")),
        "/assets/..%2F..%2FCargo.toml".to_string(),
        "/assets/../../Cargo.toml".to_string(),
        "/../../etc/passwd".to_string(),
        format!("/{}", secret_path.trim_start_matches('/')),
        format!("/assets/{}", secret_path.replace('/', "%2F")),
        "/api/models/..%2F..%2Fetc".to_string(),
    ];
    for path in &attempts {
        let r = server.get(path);
        assert!(
            (400..500).contains(&r.status),
            "{path}: {} {}",
            r.status,
            r.text()
        );
        assert!(!r.text().contains("the secret"), "{path}");
        assert!(!r.text().contains("root:"), "{path}");
    }
    // No request can name a path: the served model is found by index only.
    let r = server.post(
        "/api/models/0/predictions",
        &json!({"prompt": "a", "path": secret_path}),
    );
    assert!((400..500).contains(&r.status), "{}", r.text());
    let _ = std::fs::remove_dir_all(dir);
}

/// A client that connects and never finishes its headers held a connection open for good: a
/// thousand of them locked every other client out. Its connection is closed after the header
/// timeout; the server answers others meanwhile and after.
#[test]
fn silent_clients_are_dropped_after_the_header_timeout() {
    use std::io::{Read, Write};
    let server = Server::start(&[&reference()]);
    let mut silent = std::net::TcpStream::connect(&server.addr).unwrap();
    silent
        .write_all(b"GET /api HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    silent
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    let start = std::time::Instant::now();
    assert_eq!(
        server.get("/api/models").status,
        200,
        "others are served meanwhile"
    );
    let mut rest = Vec::new();
    let _ = silent.read_to_end(&mut rest);
    let waited = start.elapsed();
    assert!(
        waited >= std::time::Duration::from_secs(4) && waited < std::time::Duration::from_secs(20),
        "closed after {waited:?}"
    );
    assert!(
        rest.is_empty() || String::from_utf8_lossy(&rest).starts_with("HTTP/1.1 408"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    assert_eq!(server.get("/api/models").status, 200, "and after");
}

/// A body that trickles in is cut off after the body timeout (408); a connection past the
/// server's cap is answered 503, not reset; the server answers normally after both.
#[test]
fn slow_bodies_time_out_and_connections_past_the_cap_get_503() {
    use std::io::{Read, Write};
    let server = Server::start(&[&reference()]);
    let mut slow = std::net::TcpStream::connect(&server.addr).unwrap();
    slow.write_all(
        b"POST /api/models/0/predictions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    .unwrap();
    slow.set_read_timeout(Some(std::time::Duration::from_secs(40)))
        .unwrap();
    let start = std::time::Instant::now();
    let mut answer = vec![0u8; 512];
    let n = slow.read(&mut answer).unwrap();
    let waited = start.elapsed();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        waited >= std::time::Duration::from_secs(8) && waited < std::time::Duration::from_secs(30),
        "answered after {waited:?}"
    );

    let idle: Vec<std::net::TcpStream> = (0..256)
        .map(|_| std::net::TcpStream::connect(&server.addr).unwrap())
        .collect();
    let mut over = std::net::TcpStream::connect(&server.addr).unwrap();
    over.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut answer = String::new();
    let _ = over.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("too many connections"), "{answer}");
    drop(idle);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(server.get("/api/models").status, 200);
}

/// The Llama parity fixture copied to a scratch folder with `positions` positions: the folder
/// and its path as an argument.
fn llama_with_positions(tag: &str, positions: u64) -> (std::path::PathBuf, String) {
    let dir = scratch("serve_cli", tag);
    let src = root().join("tests/fixtures/parity/llama");
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let path = dir.join("config.json");
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    config["max_position_embeddings"] = json!(positions);
    std::fs::write(&path, config.to_string()).unwrap();
    let model = dir.to_str().unwrap().to_string();
    (dir, model)
}

/// The Llama fixture deepened to `layers` by repeating its own layers, so that one
/// computation's cost can be grown to whatever this machine needs to make it measurable.
fn deep_llama(tag: &str, positions: u64, layers: usize) -> (std::path::PathBuf, String) {
    let (dir, model) = llama_with_positions(tag, positions);
    let weights = dir.join("model.safetensors");
    let tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    let config_path = dir.join("config.json");
    let mut config: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    let published = config["num_hidden_layers"].as_u64().unwrap() as usize;
    let mut deepened = HashMap::new();
    for (name, tensor) in tensors {
        match name
            .strip_prefix("model.layers.")
            .and_then(|rest| rest.split_once('.'))
        {
            Some((index, field)) => {
                let index: usize = index.parse().unwrap();
                for layer in (index..layers).step_by(published) {
                    deepened.insert(format!("model.layers.{layer}.{field}"), tensor.clone());
                }
            }
            None => {
                deepened.insert(name, tensor);
            }
        }
    }
    candle_core::safetensors::save(&deepened, &weights).unwrap();
    config["num_hidden_layers"] = json!(layers);
    std::fs::write(&config_path, config.to_string()).unwrap();
    (dir, model)
}

/// The drift route bounded prompts by the models' context alone: a model of a million
/// positions ran a 12,000-token prompt for 76 s and 5 GB. Its prompts are held to the
/// server's token limit, as every other route's.
#[test]
fn drift_prompts_are_held_to_the_servers_token_limit() {
    let (dir, model) = llama_with_positions("drift-context", 1_000_000);
    let server = Server::start(&[&model]);
    let long = "the cat ".repeat(400);
    let r = server.post("/api/drift/0/0", &json!({"prompts": long}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("at most 512"), "{}", r.text());
    let r = server.post("/api/drift/0/0", &json!({"prompts": "the cat sat"}));
    assert_eq!(r.status, 200, "{}", r.text());
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn malformed_and_oversized_requests_get_a_4xx_with_a_message() {
    let server = Server::start(&[&reference()]);
    let post_raw = |body: &[u8]| {
        request(
            &server.addr,
            "POST",
            "/api/models/0/predictions",
            &[("Content-Type", "application/json")],
            Some(body),
        )
    };
    let cases: Vec<(&str, support::serve::Response)> = vec![
        ("not JSON", post_raw(b"{not json")),
        ("wrong type", post_raw(br#"{"prompt": 5}"#)),
        ("no prompt", post_raw(b"{}")),
        ("empty prompt", post_raw(br#"{"prompt": ""}"#)),
        ("top_k 0", post_raw(br#"{"prompt": "a", "top_k": 0}"#)),
        (
            "top_k huge",
            post_raw(br#"{"prompt": "a", "top_k": 100000}"#),
        ),
        (
            "long prompt",
            post_raw(
                json!({"prompt": "word ".repeat(3000)})
                    .to_string()
                    .as_bytes(),
            ),
        ),
        ("too big", post_raw(&vec![b' '; 200_000])),
        (
            "an ablation target with a non-ASCII tail",
            server.post(
                "/api/models/0/ablate",
                &json!({"text": "x3 x7 x3", "targets": ["L0é"]}),
            ),
        ),
        (
            "an ablation of too many forward passes",
            server.post(
                "/api/models/0/ablate",
                &json!({"text": "x3 x7 x3 x7", "targets": vec!["L0H0"; 4096], "each": true,
                        "method": "resample", "reference": vec!["x3 x7 x3 x7 x3"; 8]}),
            ),
        ),
        ("bad id", server.get("/api/models/abc")),
        ("negative id", server.get("/api/models/-1")),
        (
            "no bins",
            server.get("/api/models/0/tensors/lm_head.weight?bins=0"),
        ),
        (
            "too many bins",
            server.get("/api/models/0/tensors/lm_head.weight?bins=99999999"),
        ),
        ("unknown route", server.get("/api/nothing")),
        (
            "ablation of nothing",
            server.post("/api/models/0/ablate", &json!({"text": "a b", "targets": []})),
        ),
        (
            "ablation of a head that is not there",
            server.post("/api/models/0/ablate", &json!({"text": "a b", "targets": ["L99H0"]})),
        ),
        (
            "mean ablation without references",
            server.post("/api/models/0/ablate", &json!({"text": "a b", "targets": ["heads"], "method": "mean"})),
        ),
        (
            "resample ablation with too short a reference",
            server.post(
                "/api/models/0/ablate",
                &json!({"text": "the cat sat", "targets": ["L1H0"], "method": "resample", "reference": ["a"]}),
            ),
        ),
        (
            "ablation of a reference prompt past the model's context",
            server.post(
                "/api/models/0/ablate",
                &json!({"text": "the cat sat", "targets": ["L1H0"], "method": "mean", "reference": ["the cat sat ".repeat(200)]}),
            ),
        ),
        (
            "ablation of more components than the cap, named as groups",
            server.post(
                "/api/models/0/ablate",
                &json!({"text": "the cat sat", "targets": vec!["heads"; 4096], "each": true}),
            ),
        ),
        (
            "a method the route does not take",
            request(&server.addr, "DELETE", "/api/models/0", &[], None),
        ),
        (
            "heads of huge sequences",
            server.post("/api/models/0/heads", &json!({"seq_len": 100000})),
        ),
        (
            "attribution without a target",
            server.post("/api/models/0/attribute", &json!({"prompt": "a"})),
        ),
        (
            "patch of unequal prompts",
            server.post(
                "/api/models/0/patch",
                &json!({"clean": "a b c", "corrupt": "a", "answer": "a", "wrong": "the"}),
            ),
        ),
        (
            "patch of nothing",
            server.post(
                "/api/models/0/patch",
                &json!({"clean": "a", "corrupt": "a", "answer": "a", "wrong": "the", "what": "everything"}),
            ),
        ),
        (
            "lens target of two tokens",
            server.post(
                "/api/models/0/lens",
                &json!({"prompt": "a b", "target": "the cat sat"}),
            ),
        ),
    ];
    for (what, r) in &cases {
        assert!(
            (400..500).contains(&r.status),
            "{what}: {} {}",
            r.status,
            r.text()
        );
        // Every refusal, axum's own included, is `{"error": "…"}`.
        let message = r.json()["error"].as_str().map(str::to_string);
        assert!(
            message.is_some_and(|m| !m.is_empty()),
            "{what}: no message: {}",
            r.text()
        );
    }
    let statuses: HashMap<&str, u16> = cases.iter().map(|(w, r)| (*w, r.status)).collect();
    assert_eq!(statuses["too big"], 413);
    assert!(cases
        .iter()
        .any(|(w, r)| *w == "an ablation of too many forward passes"
            && r.json()["error"]
                .as_str()
                .unwrap()
                .contains("32777 forward passes")));
    assert_eq!(statuses["unknown route"], 404);
    assert_eq!(statuses["a method the route does not take"], 405);
    // A foreign Host (DNS rebinding) is refused on loopback.
    let r = request(
        &server.addr,
        "GET",
        "/api/models",
        &[("Host", "evil.example")],
        None,
    );
    assert_eq!(r.status, 403, "{}", r.text());
    // So is another site's page (an <img> or a fetch), by its fetch metadata or its Origin;
    // a link from it to the page itself is followed.
    for headers in [
        vec![
            ("Sec-Fetch-Site", "cross-site"),
            ("Sec-Fetch-Mode", "no-cors"),
        ],
        vec![("Origin", "https://evil.example")],
    ] {
        let r = request(
            &server.addr,
            "GET",
            "/api/models/0/tensors/lm_head.weight",
            &headers,
            None,
        );
        assert_eq!(r.status, 403, "{headers:?}: {}", r.text());
    }
    let link = [
        ("Sec-Fetch-Site", "cross-site"),
        ("Sec-Fetch-Mode", "navigate"),
    ];
    assert_eq!(request(&server.addr, "GET", "/", &link, None).status, 200);
    // And the server still answers after all of that.
    assert_eq!(server.get("/api/models").status, 200);
}

#[test]
fn a_non_loopback_bind_needs_the_token() {
    let server = Server::start(&[&reference(), "--host", "0.0.0.0"]);
    let token = server
        .url
        .split("token=")
        .nth(1)
        .expect("a non-loopback server prints a token")
        .to_string();
    assert!(token.len() >= 32);
    let addr = &server.addr;
    assert_eq!(request(addr, "GET", "/api/models", &[], None).status, 401);
    assert_eq!(request(addr, "GET", "/", &[], None).status, 401);
    let wrong = format!("Bearer {}", "0".repeat(token.len()));
    assert_eq!(
        request(
            addr,
            "GET",
            "/api/models",
            &[("Authorization", &wrong)],
            None
        )
        .status,
        401
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(
        request(
            addr,
            "GET",
            "/api/models",
            &[("Authorization", &bearer)],
            None
        )
        .status,
        200
    );
    // The page opened with the printed URL sets a cookie the page's own requests carry.
    let page = request(addr, "GET", &format!("/?token={token}"), &[], None);
    assert_eq!(page.status, 200);
    let cookie = page
        .header("set-cookie")
        .expect("a cookie")
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        request(addr, "GET", "/api/models", &[("Cookie", &cookie)], None).status,
        200
    );
}

#[test]
fn nothing_to_serve_is_an_input_error() {
    let out = glassbox(&["serve", "/no/such/model", "--port", "0"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/model"), "{err}");

    // A file that is no checkpoint, and a link that loops: named once, with the problem.
    let dir = std::env::temp_dir().join(format!("glassbox-serve-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.safetensors");
    std::fs::write(&garbage, b"not a safetensors file at all").unwrap();
    let (a, b) = (dir.join("loop-a"), dir.join("loop-b"));
    let _ = std::fs::remove_file(&a);
    let _ = std::fs::remove_file(&b);
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
    }
    for (path, problem) in [(&garbage, "header"), (&a, "loops")] {
        let shown = path.display().to_string();
        let out = glassbox(&["serve", &shown, "--port", "0"]);
        assert_eq!(out.status.code(), Some(2), "{shown}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.matches(shown.as_str()).count(), 1, "{err}");
        assert!(err.contains(problem), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concurrent_clients_all_get_answers() {
    let server = Server::start(&[&reference()]);
    let addr = server.addr.clone();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(3);
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut answered = 0;
                while std::time::Instant::now() < end {
                    let body = json!({"prompt": format!("{PROMPT} {c}")}).to_string();
                    for route in ["predictions", "attention", "lens"] {
                        let r = request(
                            &addr,
                            "POST",
                            &format!("/api/models/0/{route}"),
                            &[("Content-Type", "application/json")],
                            Some(body.as_bytes()),
                        );
                        assert_eq!(r.status, 200, "{route}: {}", r.text());
                        answered += 1;
                    }
                    let r = request(&addr, "GET", "/api/models/0", &[], None);
                    assert_eq!(r.status, 200, "{}", r.text());
                }
                answered
            })
        })
        .collect();
    let answered: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(answered >= 16, "{answered} answers");
}

/// A computation ran to its end whatever happened to its request: a client that gave up, or
/// one that asked for more than anyone should wait for, held the model (and a core) for as
/// long as it took. Past `--time-limit` it is stopped and answered with 503; a client that
/// goes away stops it too. Either way the next request gets the model soon after, long before
/// the whole computation would have ended.
#[test]
fn computations_stop_past_the_time_limit_and_when_their_client_leaves() {
    use std::io::Write;
    use std::time::{Duration, Instant};
    // A resample ablation of every head, each on its own, on the Llama fixture deepened until
    // the computation takes long enough on this machine to tell a stopped one from a finished
    // one (a fixed workload took 1.5 s on one machine and 1.7 s on CI's). Its time grows with
    // the square of the depth (heads × passes through the layers) and its memory barely: a
    // head-score workload grown instead held 265 MB more per layer. `whole` is the
    // computation's own time: the CLI's run less a trivial run's (start-up and loading), so a
    // slow start cannot make an unstopped computation look stopped.
    let text = "the cat sat on the mat and the dog sat on the log";
    let references: Vec<String> = (0..16)
        .map(|i| format!("the dog {i} sat on the mat and the cat sat on the log here"))
        .collect();
    let heavy = json!({"text": text, "targets": ["heads"], "method": "resample",
                       "reference": references, "each": true});
    let timed = |model: &str, heavy: bool| {
        let mut args = vec!["ablate", model, "--text", text];
        if heavy {
            args.extend(["--target", "heads", "--method", "resample", "--each"]);
            for r in &references {
                args.extend(["--reference", r.as_str()]);
            }
        } else {
            args.extend(["--target", "L0H0"]);
        }
        let start = Instant::now();
        ok(&glassbox(&args));
        start.elapsed()
    };
    let mut layers = 2;
    let (dir, model, whole) = loop {
        let (dir, model) = deep_llama("time-limit", 128, layers);
        let whole = timed(&model, true).saturating_sub(timed(&model, false));
        if whole > Duration::from_secs(4) {
            break (dir, model, whole);
        }
        assert!(
            layers < 256,
            "too quick to tell: {whole:?} at {layers} layers"
        );
        let _ = std::fs::remove_dir_all(dir);
        layers *= 2;
    };

    // The next request is answered long before the whole computation would have ended.
    let answered_soon = |server: &Server, start: Instant| {
        let r = server.post("/api/models/0/predictions", &json!({"prompt": "the cat"}));
        assert_eq!(r.status, 200, "{}", r.text());
        let waited = start.elapsed();
        assert!(
            waited < whole * 3 / 4,
            "{waited:?} of {whole:?}: not stopped"
        );
    };

    let server = Server::start(&[&model, "--time-limit", "1"]);
    assert_eq!(server.get("/api").json()["limits"]["time_limit_s"], 1);
    let start = Instant::now();
    let r = server.post("/api/models/0/ablate", &heavy);
    // (an ablation streams its progress: the refusal is the stream's error event)
    assert!(
        r.text().contains("event: error") && r.text().contains("limit of 1 s"),
        "{} {}",
        r.status,
        r.text()
    );
    answered_soon(&server, start);

    // a client that leaves: no limit here, the closed connection alone stops it
    let server = Server::start(&[&model, "--time-limit", "0"]);
    assert_eq!(
        server.get("/api").json()["limits"]["time_limit_s"],
        Value::Null
    );
    let body = heavy.to_string();
    let mut leaving = std::net::TcpStream::connect(&server.addr).unwrap();
    write!(
        leaving,
        "POST /api/models/0/ablate HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        server.addr,
        body.len()
    )
    .unwrap();
    let start = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    drop(leaving);
    answered_soon(&server, start);
    drop(server);
    let _ = std::fs::remove_dir_all(dir);
}

/// The tokenizer fingerprint opened `tokenizer.json` before asking what it was: a FIFO there
/// blocked the server's start for ever. It starts, the FIFO unread.
#[cfg(unix)]
#[test]
fn a_fifo_for_a_tokenizer_does_not_block_the_start() {
    use std::io::BufRead;
    let (dir, model) = llama_with_positions("fifo-tokenizer", 128);
    let tokenizer = dir.join("tokenizer.json");
    std::fs::remove_file(&tokenizer).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&tokenizer)
        .status()
        .unwrap();
    assert!(made.success());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_glassbox"))
        .args(["serve", &model, "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx.recv_timeout(std::time::Duration::from_secs(30));
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("the server printed nothing in 30 s: blocked");
    assert!(line.contains("http://"), "{line}");
    let _ = std::fs::remove_dir_all(dir);
}
