//! Sending Graph requests: the bearer token, the governor's permits, retries that honour
//! `Retry-After` (capped: a pause longer than `max_wait` stops the mailbox for the run instead),
//! one token renewal on a 401, a 403 that names the permission, bounded reply sizes, and links
//! (`@odata.nextLink`, `importUrl`) that may only lead where the API documents. Redirects are
//! never followed.

use crate::error::{Endpoint, GraphError};
use crate::governor::{Governor, Permit};
use crate::token::{Credential, Tokens};
use exarch_item_data::Limits;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub struct GraphConfig {
    /// The API base with its version (`https://graph.microsoft.com/v1.0`).
    pub graph_url: String,
    /// The identity platform's authority host (`https://login.microsoftonline.com`).
    pub login_url: String,
    pub tenant: String,
    pub client_id: String,
    pub credential: Credential,
    /// Extra CA certificate (PEM) to trust, for a test server.
    pub ca_cert: Option<PathBuf>,
    /// Requests in flight in all, and per mailbox (at most 4).
    pub concurrency: usize,
    pub per_mailbox: usize,
    pub timeout: Duration,
    /// No request starts after this.
    pub deadline: Option<Instant>,
    /// The longest `Retry-After` waited out; a longer one stops the mailbox for this run.
    pub max_wait: Duration,
    pub limits: Limits,
}

/// What the client did, for summaries and tests.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub requests: BTreeMap<&'static str, u64>,
    /// Replies 429/503 that asked us to wait, and how long they had us wait.
    pub throttled: u64,
    pub waited_ms: u64,
    /// Items exportItems delivered.
    pub items_exported: u64,
    pub tokens_fetched: u64,
}

pub struct GraphClient {
    pub(crate) http: reqwest::blocking::Client,
    base: String,
    origin: reqwest::Url,
    tokens: Tokens,
    gov: Governor,
    deadline: Option<Instant>,
    max_wait: Duration,
    pub(crate) limits: Limits,
    stats: Mutex<Stats>,
}

/// A reply whose body is still to be read, with the permit held until it is.
pub(crate) struct Reply<'a> {
    pub resp: reqwest::blocking::Response,
    _permit: Option<Permit<'a>>,
}

/// Largest JSON reply read into memory (delta pages, users, sessions); exports are streamed.
const MAX_JSON_REPLY: u64 = 64 << 20;
/// Tries for a request that failed on the way or was throttled.
const MAX_TRIES: u32 = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
}

impl GraphClient {
    pub fn new(cfg: GraphConfig) -> Result<GraphClient, GraphError> {
        let base = cfg.graph_url.trim_end_matches('/').to_string();
        let origin = reqwest::Url::parse(&base)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
            .ok_or_else(|| GraphError::Config(format!("--graph-url {base:?} is not an http(s) URL")))?;
        let login = reqwest::Url::parse(&cfg.login_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http") && u.host_str().is_some())
            .ok_or_else(|| GraphError::Config(format!("--login-url {:?} is not an http(s) URL", cfg.login_url)))?;
        let mut b = reqwest::blocking::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .connect_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(cfg.concurrency.max(1));
        if let Some(ca) = &cfg.ca_cert {
            let pem = std::fs::read(ca)
                .map_err(|e| GraphError::Config(format!("reading CA certificate {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| GraphError::Config(format!("CA certificate {}: {e}", ca.display())))?;
            b = b.add_root_certificate(cert);
        }
        let http = b.build().map_err(|e| GraphError::Config(format!("HTTP client: {e}")))?;
        let graph_origin = origin.origin().ascii_serialization();
        let tokens = Tokens::new(login.as_str(), &cfg.tenant, &graph_origin, &cfg.client_id, cfg.credential);
        Ok(GraphClient {
            http,
            base,
            origin,
            tokens,
            gov: Governor::new(cfg.concurrency, cfg.per_mailbox),
            deadline: cfg.deadline,
            max_wait: cfg.max_wait,
            limits: cfg.limits,
            stats: Mutex::new(Stats::default()),
        })
    }

    /// The API base (`…/v1.0`), without credentials.
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats.lock().expect("stats").clone();
        s.tokens_fetched = self.tokens.fetched();
        s
    }

    /// Gets a token now: a wrong secret shows before any mailbox work starts.
    pub fn sign_in(&self) -> Result<(), GraphError> {
        self.tokens.bearer(&self.http).map(|_| ())
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A link from a reply (next page, delta) must stay on Graph's origin.
    pub(crate) fn check_link(&self, ep: Endpoint, link: &str) -> Result<(), GraphError> {
        match reqwest::Url::parse(link) {
            Ok(u) if u.origin() == self.origin.origin() => Ok(()),
            _ => Err(GraphError::protocol(
                ep.name(),
                format!(
                    "a link to {link:?}, off Graph's origin {}: not followed",
                    self.origin.origin().ascii_serialization()
                ),
            )),
        }
    }

    /// An import URL may only point at Exchange Online's documented host (over https), or at the
    /// host `--graph-url` names (a simulator or a proxy on the same machine).
    pub(crate) fn check_import_url(&self, url: &str) -> Result<(), GraphError> {
        let ok = reqwest::Url::parse(url).ok().is_some_and(|u| {
            (u.scheme() == "https" && u.host_str() == Some(crate::IMPORT_HOST))
                || (u.scheme() == self.origin.scheme() && u.host_str() == self.origin.host_str())
        });
        if ok {
            Ok(())
        } else {
            Err(GraphError::protocol(
                Endpoint::CreateImportSession.name(),
                format!(
                    "an importUrl on an unexpected host (only https://{} is accepted): not used",
                    crate::IMPORT_HOST
                ),
            ))
        }
    }

    pub(crate) fn count_exported(&self) {
        self.stats.lock().expect("stats").items_exported += 1;
    }

    fn count(&self, ep: Endpoint) {
        *self.stats.lock().expect("stats").requests.entry(ep.name()).or_default() += 1;
    }

    /// Sends a request to Graph for `mailbox` (the governor's key), retrying what is safe to retry.
    pub(crate) fn send(
        &self,
        mailbox: &str,
        ep: Endpoint,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<Reply<'_>, GraphError> {
        let mut renewed = false;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let permit = self.gov.acquire(mailbox, self.deadline).ok_or_else(window_ended)?;
            let token = self.tokens.bearer(&self.http)?;
            self.count(ep);
            let mut req = match method {
                Method::Get => self.http.get(url),
                Method::Post => self.http.post(url),
            };
            req = req.bearer_auth(token.as_str()).header("Accept", "application/json");
            if let Some(b) = body {
                req = req.header("Content-Type", "application/json").body(b.to_vec());
            } else if method == Method::Post {
                req = req.header("Content-Length", "0");
            }
            let started = Instant::now();
            let sent = req.send();
            log_request(ep, mailbox, &sent, started);
            let resp = match sent {
                Ok(r) => r,
                Err(e) if tries < 3 => {
                    drop(permit);
                    std::thread::sleep(backoff(tries));
                    let _ = e;
                    continue;
                }
                Err(e) => return Err(GraphError::Transport(format!("{}: {}", ep.name(), plain(&e)))),
            };
            let status = resp.status().as_u16();
            match status {
                200..=299 => return Ok(Reply { resp, _permit: Some(permit) }),
                401 if !renewed => {
                    renewed = true;
                    self.tokens.expire(token.as_str());
                    continue;
                }
                429 | 503 | 504 if tries < MAX_TRIES => {
                    let pause = self.retry_after(&resp, tries, ep)?;
                    drop(permit);
                    self.gov.pause(mailbox, pause);
                    continue;
                }
                500 | 502 if tries < 3 => {
                    drop(permit);
                    std::thread::sleep(backoff(tries));
                    continue;
                }
                _ => return Err(error_reply(ep, resp)),
            }
        }
    }

    /// How long a 429/503 says to wait: `Retry-After` (seconds or an HTTP date) or exponential.
    fn retry_after(
        &self,
        resp: &reqwest::blocking::Response,
        tries: u32,
        ep: Endpoint,
    ) -> Result<Duration, GraphError> {
        self.stats.lock().expect("stats").throttled += 1;
        let hint = resp.headers().get("Retry-After").and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let pause = hint.unwrap_or_else(|| backoff(tries));
        self.stats.lock().expect("stats").waited_ms += pause.as_millis() as u64;
        if pause > self.max_wait {
            return Err(GraphError::Stopped(format!(
                "{}: the service asks for a pause of {} s, longer than we wait ({} s); the next run continues",
                ep.name(),
                pause.as_secs(),
                self.max_wait.as_secs()
            )));
        }
        Ok(pause)
    }

    /// A JSON reply, read whole (bounded).
    pub(crate) fn json(
        &self,
        mailbox: &str,
        ep: Endpoint,
        method: Method,
        url: &str,
        body: Option<&[u8]>,
    ) -> Result<serde_json::Value, GraphError> {
        // A reply cut off on the way is asked for again where asking twice is harmless.
        let mut tries = 0;
        loop {
            tries += 1;
            let r = self.send(mailbox, ep, method, url, body)?;
            match read_json(ep, r.resp) {
                Err(GraphError::Transport(_)) if method == Method::Get && tries < 3 => continue,
                other => return other,
            }
        }
    }

    /// POSTs an item to a pre-authenticated import URL: no bearer token goes there. Waits out
    /// throttling (a 429 was not processed); any other failure is the caller's to judge.
    pub(crate) fn post_import(&self, mailbox: &str, url: &str, body: Vec<u8>) -> Result<serde_json::Value, GraphError> {
        self.check_import_url(url)?;
        let ep = Endpoint::ImportItem;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let permit = self.gov.acquire(mailbox, self.deadline).ok_or_else(window_ended)?;
            self.count(ep);
            let started = Instant::now();
            let sent = self.http.post(url).header("Content-Type", "application/json").body(body.clone()).send();
            log_request(ep, mailbox, &sent, started);
            let resp = sent.map_err(|e| GraphError::Transport(format!("{}: {}", ep.name(), plain(&e))))?;
            let status = resp.status().as_u16();
            if (200..300).contains(&status) {
                let v = read_json(ep, resp);
                drop(permit);
                return v;
            }
            if status == 429 && tries < MAX_TRIES {
                let pause = self.retry_after(&resp, tries, ep)?;
                drop(permit);
                self.gov.pause(mailbox, pause);
                continue;
            }
            return Err(error_reply(ep, resp));
        }
    }
}

fn window_ended() -> GraphError {
    GraphError::Stopped("the time window (--max-duration) ended".into())
}

fn backoff(tries: u32) -> Duration {
    let base = Duration::from_millis(250u64 << tries.min(7));
    base + Duration::from_millis(rand::random::<u64>() % 250)
}

/// A reqwest error without the URL (which may carry an import token).
fn plain(e: &reqwest::Error) -> String {
    let e = e.to_string();
    match e.find(" for url (") {
        Some(i) => e[..i].to_string(),
        None => e,
    }
}

/// `Retry-After`: delay-seconds or an HTTP date (RFC 9110).
pub(crate) fn parse_retry_after(v: &str) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(v, &fmt).ok()?.assume_utc();
    let now = time::OffsetDateTime::now_utc();
    Some(if at > now { (at - now).try_into().unwrap_or(Duration::ZERO) } else { Duration::ZERO })
}

pub(crate) fn read_json(ep: Endpoint, resp: reqwest::blocking::Response) -> Result<serde_json::Value, GraphError> {
    let mut buf = Vec::new();
    resp.take(MAX_JSON_REPLY + 1)
        .read_to_end(&mut buf)
        .map_err(|e| GraphError::Transport(format!("{}: reading the reply: {e}", ep.name())))?;
    if buf.len() as u64 > MAX_JSON_REPLY {
        return Err(GraphError::protocol(ep.name(), "a reply larger than 64 MiB"));
    }
    serde_json::from_slice(&buf).map_err(|e| {
        if e.is_eof() {
            // Cut off on the way: the request may have taken effect.
            GraphError::Transport(format!("{}: the reply ends early (truncated)", ep.name()))
        } else {
            GraphError::protocol(ep.name(), format!("not JSON: {e}"))
        }
    })
}

/// An error reply in the layer's terms, with Graph's `error.code` and `error.message`.
fn error_reply(ep: Endpoint, resp: reqwest::blocking::Response) -> GraphError {
    let status = resp.status().as_u16();
    let mut buf = Vec::new();
    let _ = resp.take(64 * 1024).read_to_end(&mut buf);
    let v: serde_json::Value = serde_json::from_slice(&buf).unwrap_or_default();
    let code = v["error"]["code"].as_str().unwrap_or("").to_string();
    let mut message: String = v["error"]["message"].as_str().unwrap_or("").chars().take(500).collect();
    if message.is_empty() {
        message = String::from_utf8_lossy(&buf[..buf.len().min(200)]).trim().to_string();
    }
    let what = ep.name().to_string();
    match status {
        401 => GraphError::Auth(format!("{what}: Graph refused a fresh token ({code}: {message})")),
        403 => GraphError::Forbidden {
            what,
            permission: ep.permission(),
            message: if code.is_empty() { message } else { format!("{code}: {message}") },
        },
        404 => GraphError::NotFound { what, message },
        _ => GraphError::Http { what, status, code, message },
    }
}

/// One debug line per request: endpoint, mailbox, HTTP status (or the failure) and time to the
/// reply's headers. Never a URL's query, a header or a body: they carry tokens and mail.
fn log_request(
    ep: Endpoint,
    mailbox: &str,
    sent: &Result<reqwest::blocking::Response, reqwest::Error>,
    started: Instant,
) {
    let ms = started.elapsed().as_millis() as u64;
    let op = ep.name();
    match sent {
        Ok(r) => tracing::debug!(op, mailbox, status = r.status().as_u16(), ms, "Graph request"),
        Err(e) => tracing::debug!(op, mailbox, error = %plain(e), ms, "Graph request failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(graph_url: &str) -> GraphConfig {
        GraphConfig {
            graph_url: graph_url.into(),
            login_url: crate::DEFAULT_LOGIN_URL.into(),
            tenant: "t".into(),
            client_id: "c".into(),
            credential: Credential::Secret("s".to_string().into()),
            ca_cert: None,
            concurrency: 1,
            per_mailbox: 1,
            timeout: Duration::from_secs(5),
            deadline: None,
            max_wait: Duration::from_secs(1),
            limits: Limits::default(),
        }
    }

    fn client(graph_url: &str) -> GraphClient {
        GraphClient::new(config(graph_url)).unwrap()
    }

    #[test]
    fn links_stay_on_graphs_origin_and_imports_on_the_documented_host() {
        let c = client(crate::DEFAULT_GRAPH_URL);
        let ep = Endpoint::ItemDelta;
        assert!(c.check_link(ep, "https://graph.microsoft.com/v1.0/admin/x?$skiptoken=1").is_ok());
        for bad in [
            "https://evil.example/v1.0/x",
            "http://graph.microsoft.com/v1.0/x",
            "https://graph.microsoft.com:8443/x",
            "not a url",
        ] {
            assert!(c.check_link(ep, bad).is_err(), "{bad}");
        }
        assert!(c
            .check_import_url("https://outlook.office365.com/api/gv1.0/Mailboxes('M')/importItem?authtoken=x")
            .is_ok());
        for bad in [
            "http://outlook.office365.com/api/x",
            "https://outlook.office365.com.evil.example/x",
            "https://evil.example/x",
        ] {
            assert!(c.check_import_url(bad).is_err(), "{bad}");
        }
        // A simulator or proxy on the host --graph-url names may serve imports on another port.
        let local = client("http://127.0.0.1:8080/v1.0");
        assert!(local.check_import_url("http://127.0.0.1:9090/api/gv1.0/x").is_ok());
        assert!(local.check_import_url("http://127.0.0.2:9090/api/gv1.0/x").is_err());
    }

    #[test]
    fn bad_urls_are_refused_before_any_request() {
        for bad in ["ftp://graph/v1.0", "graph.microsoft.com", ""] {
            let r = GraphClient::new(config(bad));
            assert!(matches!(r, Err(GraphError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        assert_eq!(parse_retry_after("7"), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
