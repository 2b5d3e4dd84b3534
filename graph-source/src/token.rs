//! App-only access tokens from the Microsoft identity platform (OAuth 2.0 client credentials):
//! `POST {login}/{tenant}/oauth2/v2.0/token` with the client secret or a certificate's signed
//! assertion, scope `{graph origin}/.default`. A token is renewed before it expires (a quarter of
//! its lifetime ahead, at most five minutes), and once more when Graph answers 401. Tokens and
//! secrets are never logged; the identity platform's own error text is shown when it refuses.

use crate::assertion::CertificateKey;
use crate::error::GraphError;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// How the app proves who it is.
pub enum Credential {
    Secret(secrecy::SecretString),
    Certificate(Box<CertificateKey>),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Secret(_) => f.write_str("Secret(…)"),
            Credential::Certificate(c) => write!(f, "{c:?}"),
        }
    }
}

struct Token {
    value: Zeroizing<String>,
    renew_at: Instant,
}

pub(crate) struct Tokens {
    endpoint: String,
    scope: String,
    client_id: String,
    credential: Credential,
    current: Mutex<Option<Token>>,
    fetched: std::sync::atomic::AtomicU64,
}

/// The longest answer the token endpoint may give.
const MAX_TOKEN_REPLY: u64 = 1 << 20;

impl Tokens {
    pub(crate) fn new(
        login_url: &str,
        tenant: &str,
        graph_origin: &str,
        client_id: &str,
        credential: Credential,
    ) -> Tokens {
        Tokens {
            endpoint: format!("{}/{}/oauth2/v2.0/token", login_url.trim_end_matches('/'), tenant),
            scope: format!("{}/.default", graph_origin.trim_end_matches('/')),
            client_id: client_id.to_string(),
            credential,
            current: Mutex::new(None),
            fetched: Default::default(),
        }
    }

    /// How many tokens were fetched so far.
    pub(crate) fn fetched(&self) -> u64 {
        self.fetched.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A token that is not about to expire.
    pub(crate) fn bearer(&self, http: &reqwest::blocking::Client) -> Result<Zeroizing<String>, GraphError> {
        let mut cur = self.current.lock().expect("tokens");
        if let Some(t) = cur.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(t.value.clone());
        }
        let t = self.fetch(http)?;
        let v = t.value.clone();
        *cur = Some(t);
        Ok(v)
    }

    /// Graph refused `used` (401): the next `bearer` fetches a new one.
    pub(crate) fn expire(&self, used: &str) {
        let mut cur = self.current.lock().expect("tokens");
        if cur.as_ref().is_some_and(|t| t.value.as_str() == used) {
            *cur = None;
        }
    }

    fn fetch(&self, http: &reqwest::blocking::Client) -> Result<Token, GraphError> {
        let mut form: Vec<(&str, String)> = vec![
            ("grant_type", "client_credentials".into()),
            ("client_id", self.client_id.clone()),
            ("scope", self.scope.clone()),
        ];
        match &self.credential {
            Credential::Secret(s) => form.push(("client_secret", secrecy::ExposeSecret::expose_secret(s).to_string())),
            Credential::Certificate(c) => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()));
                form.push(("client_assertion", c.assertion(&self.client_id, &self.endpoint, now)?));
            }
        }
        let body =
            Zeroizing::new(form.iter().map(|(k, v)| format!("{k}={}", urlencode(v))).collect::<Vec<_>>().join("&"));
        let mut last = String::new();
        for attempt in 0..3u32 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(500 << attempt));
            }
            let sent = http
                .post(&self.endpoint)
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(body.as_bytes().to_vec())
                .send();
            let resp = match sent {
                Ok(r) => r,
                Err(e) => {
                    last = format!("the token endpoint {} cannot be reached: {e}", self.endpoint);
                    continue;
                }
            };
            let status = resp.status().as_u16();
            tracing::debug!(op = "token", status, "identity platform request");
            let mut text = Vec::new();
            use std::io::Read as _;
            let _ = resp.take(MAX_TOKEN_REPLY).read_to_end(&mut text);
            let v: serde_json::Value = serde_json::from_slice(&text).unwrap_or_default();
            if status == 200 {
                let Some(token) = v["access_token"].as_str().filter(|t| !t.is_empty()) else {
                    // (a reply cut off on the way reads as no token: asked for again)
                    last = format!("the token endpoint {} answered 200 without an access_token", self.endpoint);
                    continue;
                };
                let life = Duration::from_secs(match &v["expires_in"] {
                    serde_json::Value::Number(n) => n.as_u64().unwrap_or(3600),
                    serde_json::Value::String(s) => s.parse().unwrap_or(3600),
                    _ => 3600,
                });
                let margin = (life / 4).min(Duration::from_secs(300));
                self.fetched.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Ok(Token {
                    value: Zeroizing::new(token.to_string()),
                    renew_at: Instant::now() + life - margin,
                });
            }
            let said = match (v["error"].as_str(), v["error_description"].as_str()) {
                (Some(e), Some(d)) => format!("{e}: {}", d.lines().next().unwrap_or(d).trim()),
                (Some(e), None) => e.to_string(),
                _ => format!("HTTP {status} from the token endpoint {}", self.endpoint),
            };
            if (400..500).contains(&status) {
                return Err(GraphError::Auth(said));
            }
            last = said;
        }
        Err(GraphError::Transport(last))
    }
}

/// `application/x-www-form-urlencoded` for one value.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn form_values_are_escaped() {
        assert_eq!(super::urlencode("a b&c=d/é~"), "a+b%26c%3Dd%2F%C3%A9~");
    }
}
