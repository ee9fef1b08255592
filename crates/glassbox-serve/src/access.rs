//! Who may talk to the server. Bound to loopback (the default) it answers requests whose
//! `Host` is a loopback name (so that a web page elsewhere cannot reach it through DNS
//! rebinding). Bound to any other address it answers only requests carrying the token it
//! printed at start: as `Authorization: Bearer TOKEN`, `?token=TOKEN`, or the cookie the
//! first page load with `?token=` sets (named for the port: cookies do not tell ports apart,
//! and two servers on one machine would take each other's).
//!
//! In either mode a browser's request from another site is refused (`Sec-Fetch-Site:
//! cross-site`, or an `Origin` that is not this server's), except a plain navigation to the
//! page: a web page the user visits could not read the answers, but its `<img>` tags could make
//! the server compute (tensor statistics, diffs) and hold a model's turn.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::api;

#[derive(Clone, Debug)]
pub struct Access {
    /// `None` on loopback.
    token: Option<String>,
    /// The token's cookie: `glassbox_token_PORT` once bound ([`Access::bound_to`]).
    cookie: String,
}

impl Access {
    /// No token on a loopback address; a fresh random one on any other.
    pub fn for_host(host: IpAddr) -> Access {
        let cookie = "glassbox_token".to_string();
        if host.is_loopback() {
            return Access {
                token: None,
                cookie,
            };
        }
        use rand::RngCore;
        let mut bytes = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let token = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Access {
            token: Some(token),
            cookie,
        }
    }

    /// The same access for a server bound to `addr`.
    pub fn bound_to(mut self, addr: SocketAddr) -> Access {
        self.cookie = format!("glassbox_token_{}", addr.port());
        self
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The address to open, with the token when one is needed.
    pub fn url(&self, addr: SocketAddr) -> String {
        match &self.token {
            Some(t) => format!("http://{addr}/?token={t}"),
            None => format!("http://{addr}/"),
        }
    }

    fn presented(&self, req: &Request) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let headers = req.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            // The scheme's name is case-insensitive (RFC 9110).
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim());
        let query = req
            .uri()
            .query()
            .and_then(|q| q.split('&').find_map(|pair| pair.strip_prefix("token=")));
        let cookie = headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| {
                c.trim()
                    .strip_prefix(self.cookie.as_str())
                    .and_then(|c| c.strip_prefix('='))
            });
        [bearer, query, cookie]
            .into_iter()
            .flatten()
            .any(|given| same(given.as_bytes(), token.as_bytes()))
    }
}

/// Equal in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Whether `host` (a `Host` header) names this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        // `[::1]` or `[::1]:PORT`, nothing else after the bracket (`[::1].evil.com` is a name).
        Some(v6) => match v6.split_once(']') {
            Some((ip, rest)) if rest.is_empty() || port(rest) => ip,
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `:PORT`.
fn port(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": message }))).into_response()
}

/// The middleware in front of every route.
/// Whether a browser sent `req` on behalf of another site's page: by its fetch metadata,
/// `Sec-Fetch-Site` other than `same-origin` or `none` (a page on another port of this host
/// is `same-site`); a link followed to the page itself is let through (it computes nothing).
/// Without fetch metadata (older browsers), an `Origin` other than `http(s)://{Host}`. The
/// metadata, where sent, is trusted over the Host: a proxy may rewrite the Host.
fn from_another_site(req: &Request) -> bool {
    let headers = req.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site") {
        if matches!(site, "same-origin" | "none") {
            return false;
        }
        let navigation = text("sec-fetch-mode") == Some("navigate") && req.uri().path() == "/";
        return !navigation;
    }
    match (headers.get(header::ORIGIN), text(header::HOST.as_str())) {
        (None, _) => false,
        (Some(origin), Some(host)) => !origin.to_str().is_ok_and(|o| {
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .is_some_and(|o| o == host)
        }),
        (Some(_), None) => true,
    }
}

pub async fn check(State(state): State<Arc<api::State>>, req: Request, next: Next) -> Response {
    let access = &state.access;
    if from_another_site(&req) {
        return refuse(
            StatusCode::FORBIDDEN,
            "this server answers only its own page, not requests from another site's",
        );
    }
    if access.token.is_none() {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !loopback_host(host) {
            return refuse(
                StatusCode::FORBIDDEN,
                "this server answers only to localhost (it is bound to loopback)",
            );
        }
        return next.run(req).await;
    }
    if !access.presented(&req) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            "this server needs the token `glassbox serve` printed at start",
        );
    }
    let set_cookie = req.uri().query().is_some_and(|q| q.contains("token="));
    let mut response = next.run(req).await;
    if set_cookie {
        if let Some(t) = &access.token {
            if let Ok(v) = HeaderValue::from_str(&format!(
                "{}={t}; HttpOnly; SameSite=Strict; Path=/",
                access.cookie
            )) {
                response.headers_mut().insert(header::SET_COOKIE, v);
            }
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_from_another_site_are_recognised() {
        let req = |path: &str, headers: &[(&str, &str)]| {
            let mut r = axum::http::Request::builder().uri(path);
            for (k, v) in headers {
                r = r.header(*k, *v);
            }
            r.body(axum::body::Body::empty()).unwrap()
        };
        let host = ("host", "127.0.0.1:8080");
        // curl and other clients send no fetch metadata and no Origin
        assert!(!from_another_site(&req("/api/models", &[host])));
        // the page's own requests
        assert!(!from_another_site(&req(
            "/api/models/0/predictions",
            &[
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "http://127.0.0.1:8080")
            ]
        )));
        // another site's <img> or fetch
        assert!(from_another_site(&req(
            "/api/models/0/tensors/lm_head.weight",
            &[
                host,
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "no-cors")
            ]
        )));
        assert!(from_another_site(&req(
            "/api/models",
            &[host, ("origin", "https://evil.example")]
        )));
        assert!(from_another_site(&req(
            "/api/models",
            &[host, ("origin", "null")]
        )));
        assert!(from_another_site(&req(
            "/api/models",
            &[host, ("origin", "http://127.0.0.1:9999")]
        )));
        // a page on another port of this host, by its fetch metadata
        assert!(from_another_site(&req(
            "/api/models/0/tensors/lm_head.weight",
            &[
                host,
                ("sec-fetch-site", "same-site"),
                ("sec-fetch-mode", "no-cors")
            ]
        )));
        // the metadata is trusted over a Host a proxy rewrote
        assert!(!from_another_site(&req(
            "/api/models/0/predictions",
            &[
                ("host", "backend:8080"),
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://glassbox.example")
            ]
        )));
        // a link from another site to the page itself
        assert!(!from_another_site(&req(
            "/",
            &[
                host,
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate")
            ]
        )));
        assert!(from_another_site(&req(
            "/api/models",
            &[
                host,
                ("sec-fetch-site", "cross-site"),
                ("sec-fetch-mode", "navigate")
            ]
        )));
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        for h in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:3",
            "[::1]:80",
            "LOCALHOST",
        ] {
            assert!(loopback_host(h), "{h}");
        }
        for h in [
            "",
            "example.com",
            "10.0.0.1:80",
            "localhost.evil.com",
            "[2001:db8::1]:80",
            "[::1].evil.com",
            "[::1]evil",
            "[::1]:",
        ] {
            assert!(!loopback_host(h), "{h}");
        }
        assert!(loopback_host("[::1]"));
    }

    #[test]
    fn the_token_is_taken_in_any_scheme_case_and_from_this_ports_cookie_only() {
        let access =
            Access::for_host("0.0.0.0".parse().unwrap()).bound_to("0.0.0.0:8123".parse().unwrap());
        let token = access.token().unwrap().to_string();
        let with = |name: &str, value: String| {
            let req = Request::builder()
                .uri("/api/models")
                .header(name, value)
                .body(axum::body::Body::empty())
                .unwrap();
            access.presented(&req)
        };
        assert!(with("authorization", format!("Bearer {token}")));
        assert!(with("authorization", format!("bearer {token}")));
        assert!(!with("authorization", format!("Basic {token}")));
        assert!(with("cookie", format!("a=b; glassbox_token_8123={token}")));
        assert!(!with("cookie", format!("glassbox_token_8124={token}")));
        assert!(!with("cookie", format!("glassbox_token={token}")));
        assert!(!with("authorization", "Bearer wrong".to_string()));
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
