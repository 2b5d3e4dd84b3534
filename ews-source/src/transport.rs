//! HTTP, TLS and authentication: one POST to the EWS endpoint, with Basic, NTLM or a bearer token.
//!
//! TLS is verified (rustls, system-independent roots plus `--ca-cert` for on-premises CAs).
//! NTLM authenticates a TCP connection, not a request, so every NTLM request takes a *lease*: an
//! HTTP client of its own holding at most one connection, used by one request at a time and handed
//! back when the response has been read. A lease's connection is authenticated once (NEGOTIATE with
//! an empty body, CHALLENGE, then the real request with AUTHENTICATE) and then carries requests
//! without further handshakes; when the server has closed it meanwhile, the next 401 starts a new
//! handshake. `Auto` tries NTLM first and settles on Basic when the server does not offer NTLM.

use crate::ntlm;
use crate::response::EwsError;
use base64::Engine as _;
use secrecy::{ExposeSecret as _, SecretString};
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone)]
pub enum Auth {
    Basic {
        user: String,
        password: SecretString,
    },
    /// NTLMv2, the on-premises default (`DOMAIN\user` or a UPN).
    Ntlm {
        user: String,
        password: SecretString,
    },
    /// NTLM when the server offers it, Basic otherwise.
    Auto {
        user: String,
        password: SecretString,
    },
    /// An OAuth access token (e.g. app-only with `full_access_as_app` in Exchange Online).
    Bearer(SecretString),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::Basic { user, .. } => write!(f, "Basic({user}, ***)"),
            Auth::Ntlm { user, .. } => write!(f, "Ntlm({user}, ***)"),
            Auth::Auto { user, .. } => write!(f, "Auto({user}, ***)"),
            Auth::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Basic,
    Ntlm,
}

struct Lease {
    http: reqwest::blocking::Client,
    authenticated: bool,
}

type Leases = Arc<Mutex<Vec<Lease>>>;

/// A response body still to be read; for NTLM it holds the lease until dropped.
pub struct Body {
    resp: Option<reqwest::blocking::Response>,
    lease: Option<(Lease, Leases)>,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.resp.as_mut().expect("body present until dropped").read(buf)
    }
}

impl Body {
    /// The whole body, up to `MAX_BODY` (a larger one is an error, not a memory hazard).
    pub fn bytes(mut self) -> Result<Vec<u8>, EwsError> {
        let mut v = Vec::new();
        (&mut self).take(MAX_BODY + 1).read_to_end(&mut v).map_err(|e| EwsError::Transport(e.to_string()))?;
        if v.len() as u64 > MAX_BODY {
            return Err(EwsError::Unexpected {
                operation: "response".into(),
                detail: format!("a response body larger than {} MiB", MAX_BODY >> 20),
            });
        }
        Ok(v)
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        // The response first, so its connection is idle again before the lease is reused.
        drop(self.resp.take());
        if let Some((lease, pool)) = self.lease.take() {
            pool.lock().expect("leases").push(lease);
        }
    }
}

/// Whether NTLM binds its logon to the TLS channel (Extended Protection).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ChannelBinding {
    /// Bind when the connection is TLS, as Windows clients do.
    #[default]
    Auto,
    /// Never: for a TLS-inspecting proxy in between, whose certificate the server does not know.
    Never,
}

pub struct Transport {
    http: reqwest::blocking::Client,
    url: String,
    channel_binding: ChannelBinding,
    /// `HTTP/<host>`: the service an NTLM logon says it means.
    service: String,
    auth: Auth,
    ca: Option<reqwest::Certificate>,
    timeout: Duration,
    leases: Leases,
    /// For `Auto`: the scheme the server turned out to take.
    settled: Mutex<Option<Scheme>>,
}

enum Header<'a> {
    None,
    Basic(&'a str, &'a str),
    Bearer(&'a str),
    Ntlm(Vec<u8>),
}

impl Transport {
    pub fn new(
        url: String,
        auth: Auth,
        ca_cert: Option<&std::path::Path>,
        timeout: Duration,
        idle: usize,
        channel_binding: ChannelBinding,
    ) -> Result<Transport, EwsError> {
        let ca = match ca_cert {
            Some(ca) => {
                let pem = std::fs::read(ca)
                    .map_err(|e| EwsError::Transport(format!("reading CA certificate {}: {e}", ca.display())))?;
                Some(
                    reqwest::Certificate::from_pem(&pem)
                        .map_err(|e| EwsError::Transport(format!("CA certificate {}: {e}", ca.display())))?,
                )
            }
            None => None,
        };
        let http = build(ca.as_ref(), timeout, idle)?;
        let host = reqwest::Url::parse(&url).ok().and_then(|u| u.host_str().map(str::to_string)).unwrap_or_default();
        Ok(Transport {
            http,
            url,
            channel_binding,
            service: format!("HTTP/{host}"),
            auth,
            ca,
            timeout,
            leases: Arc::new(Mutex::new(Vec::new())),
            settled: Mutex::new(None),
        })
    }

    fn request(
        &self,
        http: &reqwest::blocking::Client,
        action: &str,
        anchor: Option<&str>,
        body: bytes::Bytes,
        header: Header,
    ) -> Result<reqwest::blocking::Response, EwsError> {
        let mut req = http
            .post(&self.url)
            .header("Content-Type", "text/xml; charset=utf-8")
            .header("SOAPAction", format!("\"http://schemas.microsoft.com/exchange/services/2006/messages/{action}\""))
            .body(body);
        if let Some(m) = anchor {
            req = req.header("X-AnchorMailbox", m);
        }
        req = match header {
            Header::None => req,
            Header::Basic(u, p) => req.basic_auth(u, Some(p)),
            Header::Bearer(t) => req.bearer_auth(t),
            Header::Ntlm(m) => {
                req.header("Authorization", format!("NTLM {}", base64::engine::general_purpose::STANDARD.encode(m)))
            }
        };
        req.send().map_err(classify)
    }

    /// POSTs `body` (the SOAP envelope of `action`); returns the status (200, or 500 with a SOAP
    /// fault) and the body to read. Other statuses are errors.
    pub fn post(&self, action: &str, anchor: Option<&str>, body: String) -> Result<(u16, Body), EwsError> {
        self.post_bytes(action, anchor, bytes::Bytes::from(body))
    }

    /// `post` with a body that is cheap to send twice (NTLM may need to).
    fn post_bytes(&self, action: &str, anchor: Option<&str>, body: bytes::Bytes) -> Result<(u16, Body), EwsError> {
        let (user, password, scheme) = match &self.auth {
            Auth::Bearer(t) => {
                return finish(self.request(&self.http, action, anchor, body, Header::Bearer(t.expose_secret()))?, None)
            }
            Auth::Basic { user, password } => (user, password, Some(Scheme::Basic)),
            Auth::Ntlm { user, password } => (user, password, Some(Scheme::Ntlm)),
            Auth::Auto { user, password } => (user, password, *self.settled.lock().expect("settled")),
        };
        if scheme == Some(Scheme::Basic) {
            return finish(
                self.request(&self.http, action, anchor, body, Header::Basic(user, password.expose_secret()))?,
                None,
            );
        }
        let mut lease = self.leases.lock().expect("leases").pop().map_or_else(
            || Ok::<_, EwsError>(Lease { http: build(self.ca.as_ref(), self.timeout, 1)?, authenticated: false }),
            Ok,
        )?;
        for _ in 0..2 {
            if lease.authenticated {
                let resp = self.request(&lease.http, action, anchor, body.clone(), Header::None)?;
                if resp.status().as_u16() != 401 {
                    return finish(resp, Some((lease, self.leases.clone())));
                }
                // The server closed the authenticated connection meanwhile: authenticate again.
                drop(resp);
                lease.authenticated = false;
                continue;
            }
            let negotiate = ntlm::negotiate();
            let resp =
                self.request(&lease.http, action, anchor, bytes::Bytes::new(), Header::Ntlm(negotiate.clone()))?;
            let status = resp.status().as_u16();
            let challenge = resp
                .headers()
                .get_all("WWW-Authenticate")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| v.strip_prefix("NTLM "))
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
                .filter(|m| ntlm::parse_challenge(m).is_ok());
            // The certificate this connection's TLS handshake showed: what the logon binds to.
            let bindings = match self.channel_binding {
                ChannelBinding::Auto => resp
                    .extensions()
                    .get::<reqwest::tls::TlsInfo>()
                    .and_then(|t| t.peer_certificate())
                    .map(crate::channel_binding::for_certificate),
                ChannelBinding::Never => None,
            };
            let retry_after_ms = retry_after_ms(&resp);
            let _ = resp.bytes(); // read to the end so the connection stays usable
            let Some(challenge) = challenge else {
                let auto = matches!(self.auth, Auth::Auto { .. });
                match status {
                    // Not NTLM, or no authentication at all: Basic from now on.
                    401 | 200 | 500 if auto => {
                        *self.settled.lock().expect("settled") = Some(Scheme::Basic);
                        return self.post_bytes(action, anchor, body);
                    }
                    401 => return Err(EwsError::Unauthorized),
                    // The server asked for no logon at all: send the request as it is.
                    200 | 500 => {
                        lease.authenticated = true;
                        continue;
                    }
                    // Busy or broken before any logon: the caller retries after its back-off.
                    s => return Err(EwsError::Http { status: s, retry_after_ms }),
                }
            };
            let mut client_challenge = [0u8; 8];
            rand::Rng::fill(&mut rand::thread_rng(), &mut client_challenge);
            let binding = ntlm::Binding { target_name: self.service.clone(), channel_bindings: bindings };
            let msg = ntlm::authenticate(
                user,
                password.expose_secret(),
                &negotiate,
                &challenge,
                &binding,
                client_challenge,
                filetime_now(),
            )
            .map_err(|e| EwsError::Unexpected { operation: "NTLM".into(), detail: e.to_string() })?;
            let resp = self.request(&lease.http, action, anchor, body, Header::Ntlm(msg))?;
            if resp.status().as_u16() == 401 {
                return Err(EwsError::Unauthorized);
            }
            lease.authenticated = true;
            if matches!(self.auth, Auth::Auto { .. }) {
                *self.settled.lock().expect("settled") = Some(Scheme::Ntlm);
            }
            return finish(resp, Some((lease, self.leases.clone())));
        }
        Err(EwsError::Unauthorized)
    }
}

/// Sorts a failed request into what can be retried (a broken exchange, a refused connection, a
/// few times) and what cannot (TLS, a redirect elsewhere), with the whole cause chain as text.
fn classify(e: reqwest::Error) -> EwsError {
    let mut text = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        text.push_str(": ");
        text.push_str(&s.to_string());
        src = s.source();
    }
    let lower = text.to_ascii_lowercase();
    if e.is_redirect() {
        // (the target as the server wrote it: positions in `lower` are those in `text`)
        let marker = "another origin ";
        let target = lower.find(marker).map(|i| {
            let rest = &text[i + marker.len()..];
            rest.split([')', ' ']).next().unwrap_or(rest).to_string()
        });
        return EwsError::Redirect(target.unwrap_or(text));
    }
    if lower.contains("certificate") || lower.contains("tls") || lower.contains("handshake") {
        return EwsError::Tls(text);
    }
    if e.is_connect() {
        return EwsError::Connect(text);
    }
    if e.is_timeout() {
        return EwsError::TimedOut(text);
    }
    EwsError::Transport(text)
}

/// Follows a redirect only within the origin it was sent to (the request carries credentials
/// and, for UploadItems, mail), and at most a few times.
fn same_origin_redirects() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt.previous().first().map(|u| u.origin());
        let next = attempt.url().origin();
        if attempt.previous().len() > 4 {
            attempt.error("more than four redirects")
        } else if first.as_ref() != Some(&next) {
            let target = attempt.url().to_string();
            attempt.error(format!("redirect to another origin {target}"))
        } else {
            attempt.follow()
        }
    })
}

fn build(
    ca: Option<&reqwest::Certificate>,
    timeout: Duration,
    idle: usize,
) -> Result<reqwest::blocking::Client, EwsError> {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(20).min(timeout))
        .redirect(same_origin_redirects())
        .tls_info(true)
        .pool_max_idle_per_host(idle);
    if let Some(c) = ca {
        b = b.add_root_certificate(c.clone());
    }
    b.build().map_err(|e| EwsError::Transport(e.to_string()))
}

fn filetime_now() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (since.as_nanos() / 100) as u64 + 116_444_736_000_000_000
}

/// The server's `Retry-After` (seconds) in milliseconds, saturating (a huge hint stays huge, so
/// the client's cap sees it).
fn retry_after_ms(resp: &reqwest::blocking::Response) -> Option<u64> {
    resp.headers()
        .get("Retry-After")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let v = v.trim();
            match v.parse::<u64>() {
                Ok(s) => Some(s),
                // more digits than fit: as long as it gets
                Err(_) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => Some(u64::MAX),
                Err(_) => None,
            }
        })
        .map(|s| s.saturating_mul(1000))
}

/// Largest body read whole (every response but ExportItems, which is streamed): sync pages and
/// folder lists are far smaller.
pub const MAX_BODY: u64 = 64 * 1024 * 1024;

fn finish(resp: reqwest::blocking::Response, lease: Option<(Lease, Leases)>) -> Result<(u16, Body), EwsError> {
    let status = resp.status().as_u16();
    let retry_after_ms = retry_after_ms(&resp);
    let body = Body { resp: Some(resp), lease };
    let html = body
        .resp
        .as_ref()
        .and_then(|r| r.headers().get("Content-Type"))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("text/html"));
    match status {
        200 | 500 if html => Err(EwsError::Unexpected {
            operation: "response".into(),
            detail: format!(
                "the server answered HTTP {status} with an HTML page, not EWS XML (a login portal or proxy in the way? check the --ews URL)"
            ),
        }),
        200 | 500 => Ok((status, body)),
        401 | 403 => Err(EwsError::Unauthorized),
        413 => Err(EwsError::TooLarge),
        s => Err(EwsError::Http { status: s, retry_after_ms }),
    }
}
