//! What stands before the simulated Graph API: the identity platform's token endpoint (client
//! secret, or a certificate's signed assertion; tokens that expire), bearer checks, consent (a
//! permission can be left ungranted to see the 403), import sessions (pre-authenticated URLs on
//! a second listener that expire), and Exchange Online's limits per app and mailbox: at most 4
//! requests in flight and a request budget per window, answered with 429 and `Retry-After`. A
//! request that comes before the `Retry-After` it was given has passed is a penalty (counted,
//! and the pause grows).

use crate::server::Simulator;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How the simulated tenant is set up.
#[derive(Debug, Clone)]
pub struct GraphSettings {
    /// Only this application may sign in (any, when unset).
    pub client_id: Option<String>,
    /// Its secret (any secret is taken when neither a secret nor a certificate is set).
    pub client_secret: Option<String>,
    /// Certificates (DER) registered for the application.
    pub client_certs: Vec<Vec<u8>>,
    pub token_lifetime: Duration,
    /// Application permissions the admin has not consented to.
    pub denied: Vec<String>,
    /// Requests one mailbox may have in flight, and its budget per window.
    pub per_mailbox: usize,
    pub budget: usize,
    pub window: Duration,
    /// How long an import URL works.
    pub session_lifetime: Duration,
    /// Largest page of a listing.
    pub page_size: usize,
}

impl Default for GraphSettings {
    fn default() -> Self {
        GraphSettings {
            client_id: None,
            client_secret: None,
            client_certs: Vec::new(),
            token_lifetime: Duration::from_secs(3600),
            denied: Vec::new(),
            per_mailbox: 4,
            budget: 10_000,
            window: Duration::from_secs(600),
            session_lifetime: Duration::from_secs(3600),
            page_size: 200,
        }
    }
}

#[derive(Default)]
struct MailboxLimit {
    inflight: usize,
    started: VecDeque<Instant>,
    not_before: Option<Instant>,
}

/// The Graph side's changing state.
#[derive(Default)]
pub(crate) struct GraphRuntime {
    tokens: Mutex<HashMap<String, Instant>>,
    /// Import token → (store index, expiry).
    sessions: Mutex<HashMap<String, (usize, Instant)>>,
    pub(crate) import_base: OnceLock<String>,
    /// The main listener's base URL (for links in replies).
    pub(crate) main_base: OnceLock<String>,
    limits: Mutex<HashMap<String, MailboxLimit>>,
}

/// A reply from the Graph side: status, JSON body, extra headers.
pub(crate) struct GraphReply {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(&'static str, String)>,
}

impl GraphReply {
    pub(crate) fn json(status: u16, v: serde_json::Value) -> GraphReply {
        GraphReply { status, body: v.to_string(), headers: Vec::new() }
    }

    /// Graph's error shape: `{"error": {"code", "message"}}`.
    pub(crate) fn error(status: u16, code: &str, message: &str) -> GraphReply {
        GraphReply::json(status, serde_json::json!({"error": {"code": code, "message": message}}))
    }
}

fn random_token() -> String {
    let b: [u8; 24] = rand::random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `application/x-www-form-urlencoded` → pairs.
pub(crate) fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((decode(&k.replace('+', " ")), decode(&v.replace('+', " "))))
        })
        .collect()
}

/// Percent-decoding.
pub(crate) fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Some(v) = std::str::from_utf8(&b[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl Simulator {
    pub(crate) fn count_graph(&self, op: &str) {
        *self.stats.lock().expect("stats").requests.entry(op.to_string()).or_default() += 1;
    }

    /// `POST /{tenant}/oauth2/v2.0/token`, as the identity platform answers it.
    pub(crate) fn graph_token(&self, body: &[u8]) -> GraphReply {
        self.count_graph("token");
        let f = form(body);
        let g = &self.graph;
        let refuse = |status: u16, error: &str, description: &str| {
            GraphReply::json(
                status,
                serde_json::json!({"error": error, "error_description": description, "error_codes": []}),
            )
        };
        if f.get("grant_type").map(String::as_str) != Some("client_credentials") {
            return refuse(400, "unsupported_grant_type", "AADSTS70003: The app requested an unsupported grant type.");
        }
        let client = f.get("client_id").cloned().unwrap_or_default();
        if g.client_id.as_ref().is_some_and(|id| *id != client) {
            return refuse(
                400,
                "unauthorized_client",
                &format!("AADSTS700016: Application with identifier '{client}' was not found in the directory."),
            );
        }
        if let Some(a) = f.get("client_assertion") {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            match exarch_graph_source::assertion::verify(a, &g.client_certs, now) {
                Ok(c) if c.client_id == client => {}
                Ok(_) => {
                    return refuse(401, "invalid_client", "AADSTS700023: The client assertion names another client.")
                }
                Err(why) => {
                    return refuse(
                        401,
                        "invalid_client",
                        &format!("AADSTS700027: Client assertion failed validation: {why}."),
                    )
                }
            }
        } else {
            let secret = f.get("client_secret").cloned().unwrap_or_default();
            let ok = match &g.client_secret {
                Some(s) => *s == secret,
                None => g.client_certs.is_empty() && !secret.is_empty(),
            };
            if !ok {
                return refuse(
                    401,
                    "invalid_client",
                    &format!(
                        "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is \
                         the client secret value, not the client secret ID, for a secret added to app '{client}'."
                    ),
                );
            }
        }
        let token = random_token();
        self.graph_rt.tokens.lock().expect("tokens").insert(token.clone(), Instant::now() + g.token_lifetime);
        GraphReply::json(
            200,
            serde_json::json!({"token_type": "Bearer", "expires_in": g.token_lifetime.as_secs(),
                "ext_expires_in": g.token_lifetime.as_secs(), "access_token": token}),
        )
    }

    /// A 401 unless the request carries a bearer token this tenant issued that has not expired.
    pub(crate) fn graph_bearer(&self, authorization: Option<&str>) -> Option<GraphReply> {
        let token = authorization.and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
        let valid = self.graph_rt.tokens.lock().expect("tokens").get(token).is_some_and(|exp| Instant::now() < *exp);
        if valid {
            return None;
        }
        let mut r =
            GraphReply::error(401, "InvalidAuthenticationToken", "Access token has expired or is not yet valid.");
        r.headers.push(("WWW-Authenticate", "Bearer".into()));
        Some(r)
    }

    /// A 403 when the call needs a permission the admin has not granted.
    pub(crate) fn graph_consent(&self, permission: &str) -> Option<GraphReply> {
        self.graph.denied.iter().any(|d| d.eq_ignore_ascii_case(permission)).then(|| {
            GraphReply::error(
                403,
                "ErrorAccessDenied",
                "Access is denied. Check credentials and try again. (The application lacks the required permission.)",
            )
        })
    }

    /// Admits a request for `mailbox` under the per-mailbox limits, or answers 429.
    pub(crate) fn graph_admit(&self, mailbox: &str) -> Result<(), GraphReply> {
        let g = &self.graph;
        let now = Instant::now();
        let mut limits = self.graph_rt.limits.lock().expect("limits");
        let m = limits.entry(mailbox.to_string()).or_default();
        let too_many = |secs: u64| {
            let mut r = GraphReply::error(
                429,
                "ApplicationThrottled",
                "Application is over its MailboxConcurrency or request limit for this mailbox.",
            );
            r.headers.push(("Retry-After", secs.max(1).to_string()));
            r
        };
        if let Some(nb) = m.not_before.filter(|t| now < *t) {
            // It did not wait as told: the pause grows.
            let until = nb + Duration::from_secs(1);
            m.not_before = Some(until);
            let mut st = self.stats.lock().expect("stats");
            st.penalties += 1;
            st.too_many_requests += 1;
            return Err(too_many((until - now).as_secs_f64().ceil() as u64));
        }
        while m.started.front().is_some_and(|t| now.duration_since(*t) >= g.window) {
            m.started.pop_front();
        }
        let wait = if m.inflight >= g.per_mailbox {
            Some(Duration::from_secs(1))
        } else if m.started.len() >= g.budget {
            Some((m.started[0] + g.window).saturating_duration_since(now))
        } else {
            None
        };
        if let Some(w) = wait {
            let secs = w.as_secs_f64().ceil().max(1.0) as u64;
            m.not_before = Some(now + Duration::from_secs(secs));
            self.stats.lock().expect("stats").too_many_requests += 1;
            return Err(too_many(secs));
        }
        m.inflight += 1;
        m.started.push_back(now);
        Ok(())
    }

    pub(crate) fn graph_release(&self, mailbox: &str) {
        if let Some(m) = self.graph_rt.limits.lock().expect("limits").get_mut(mailbox) {
            m.inflight = m.inflight.saturating_sub(1);
        }
    }

    /// A new import session for store `m`: its URL on the import listener and its expiry.
    pub(crate) fn graph_new_session(&self, m: usize, mailbox_id: &str) -> (String, time::OffsetDateTime) {
        let token = random_token();
        let life = self.graph.session_lifetime;
        self.graph_rt.sessions.lock().expect("sessions").insert(token.clone(), (m, Instant::now() + life));
        let base = self.graph_rt.import_base.get().cloned().unwrap_or_default();
        let url = format!(
            "{base}/api/gv1.0/Mailboxes('{}')/importItem?authtoken={token}",
            exarch_graph_source::api::seg(mailbox_id)
        );
        (url, time::OffsetDateTime::now_utc() + life)
    }

    /// The store an import token opens, if it has not expired.
    pub(crate) fn graph_session(&self, token: &str) -> Option<usize> {
        let s = self.graph_rt.sessions.lock().expect("sessions");
        s.get(token).filter(|(_, exp)| Instant::now() < *exp).map(|(m, _)| *m)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn forms_and_percent_escapes_decode() {
        let f = super::form(b"a=b+c&d=%2F%3D&e=%zz");
        assert_eq!(f["a"], "b c");
        assert_eq!(f["d"], "/=");
        assert_eq!(f["e"], "%zz");
        assert_eq!(super::decode("x%4"), "x%4");
    }
}
