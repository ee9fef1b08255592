//! Load on a running `glassbox serve`: CLIENTS clients for SECONDS seconds, each in a loop
//! doing what the pages do — the prompt explorer's three requests (predictions, attention,
//! lens) for a prompt, then the model page's tensor table — on fresh loopback connections.
//! Prints one JSON line: requests, errors, and p50 / p99 latency per route.
//!
//! usage: cargo run --release -p glassbox-serve --example load -- ADDR [CLIENTS=50] [SECONDS=30]
//! (ADDR as `127.0.0.1:PORT`; bench/serve/run.sh starts the server and reads its peak RSS)

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const PROMPTS: [&str; 4] = [
    "When Mary and John went to the store, John gave a drink to",
    "The capital of France is",
    "the cat sat on the mat and the dog",
    "a b c d e f g h i j k l m n o p",
];

fn request(addr: &str, method: &str, path: &str, body: &str) -> Result<u16, String> {
    let mut stream = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let status = String::from_utf8_lossy(&raw[..raw.len().min(16)])
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("no status line")?;
    Ok(status)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .expect("usage: load ADDR [CLIENTS] [SECONDS]")
        .clone();
    let clients: usize = args.get(2).map_or(50, |s| s.parse().unwrap());
    let seconds: u64 = args.get(3).map_or(30, |s| s.parse().unwrap());
    let routes = ["predictions", "attention", "lens", "tensors"];
    let end = Instant::now() + Duration::from_secs(seconds);
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); routes.len()];
                let mut errors = Vec::new();
                let mut i = c;
                while Instant::now() < end {
                    let prompt =
                        serde_json::json!({"prompt": PROMPTS[i % PROMPTS.len()]}).to_string();
                    for (r, route) in routes.iter().enumerate() {
                        let start = Instant::now();
                        let result = if *route == "tensors" {
                            request(&addr, "GET", "/api/models/0", "")
                        } else {
                            request(&addr, "POST", &format!("/api/models/0/{route}"), &prompt)
                        };
                        match result {
                            Ok(200) => latencies[r].push(start.elapsed().as_secs_f64() * 1e3),
                            Ok(status) => errors.push(format!("{route}: HTTP {status}")),
                            Err(e) => errors.push(format!("{route}: {e}")),
                        }
                    }
                    i += 1;
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all: Vec<Vec<f64>> = vec![Vec::new(); routes.len()];
    let mut errors = Vec::new();
    for t in threads {
        let (lat, err) = t.join().unwrap();
        for (a, l) in all.iter_mut().zip(lat) {
            a.extend(l);
        }
        errors.extend(err);
    }
    let mut per_route = serde_json::Map::new();
    let mut total = 0;
    for (route, mut lat) in routes.iter().zip(all) {
        lat.sort_by(f64::total_cmp);
        total += lat.len();
        per_route.insert(
            route.to_string(),
            serde_json::json!({"requests": lat.len(), "p50_ms": percentile(&lat, 0.5),
                "p99_ms": percentile(&lat, 0.99)}),
        );
    }
    let error_count = errors.len();
    errors.truncate(10);
    println!(
        "{}",
        serde_json::json!({"clients": clients, "seconds": seconds, "requests": total,
            "requests_per_s": total as f64 / seconds as f64, "error_count": error_count,
            "errors": errors, "routes": per_route})
    );
}
