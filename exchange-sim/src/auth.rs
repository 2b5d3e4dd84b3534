//! Who may talk to the simulator: any Basic credentials, or only the configured account; with
//! `--auth ntlm`, only NTLM, checked per connection as IIS does (NEGOTIATE, CHALLENGE,
//! AUTHENTICATE on one connection, which then stays authenticated).

use crate::server::Simulator;

#[derive(Default)]
pub(crate) struct NtlmConn {
    /// The NEGOTIATE message received and the CHALLENGE message sent (the MIC covers both).
    handshake: Option<(Vec<u8>, Vec<u8>)>,
    authenticated: bool,
}

/// What the NTLM gate decided for one request.
pub enum Gate {
    Pass,
    /// Answer 401 with this `WWW-Authenticate` value.
    Challenge(String),
}

impl Simulator {
    /// Accepts only NTLM (Windows authentication), as on-premises Exchange does by default. Needs
    /// credentials.
    pub fn with_ntlm(mut self) -> Simulator {
        self.ntlm = true;
        self
    }

    /// The NTLM handshake for a request that arrived on connection `peer`: an authenticated
    /// connection passes; NEGOTIATE gets a CHALLENGE; a valid AUTHENTICATE authenticates the
    /// connection and passes. In Basic mode every request passes here.
    pub fn ntlm_gate(&self, peer: Option<std::net::SocketAddr>, auth: Option<&str>) -> Gate {
        if !self.ntlm {
            return Gate::Pass;
        }
        let (Some(peer), Some((user, pass))) = (peer, &self.credentials) else {
            return Gate::Challenge("NTLM".into());
        };
        let mut conns = self.ntlm_conns.lock().expect("ntlm");
        let conn = conns.entry(peer).or_default();
        let msg = auth
            .and_then(|a| a.strip_prefix("NTLM "))
            .and_then(|b| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b.trim()).ok());
        match msg {
            Some(m) if m.get(8) == Some(&1) => {
                let c: [u8; 8] = rand::random();
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                let filetime = (now.as_nanos() / 100) as u64 + 116_444_736_000_000_000;
                let ch = exarch_ews_source::ntlm::challenge(c, "EXCHANGE", filetime);
                conn.handshake = Some((m.clone(), ch.clone()));
                conn.authenticated = false;
                Gate::Challenge(format!(
                    "NTLM {}",
                    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ch)
                ))
            }
            Some(m) if m.get(8) == Some(&3) => {
                let ok = conn.handshake.take().is_some_and(|(neg, ch)| {
                    let verdict = exarch_ews_source::ntlm::verify(&m, &neg, &ch, pass, &self.protection());
                    if let Err(e) = &verdict {
                        // (the server's log, as IIS logs a refused logon; never the password)
                        eprintln!("simulate: NTLM logon refused: {e}");
                    }
                    verdict.is_ok_and(|u| {
                        u.eq_ignore_ascii_case(user)
                            || exarch_ews_source::ntlm::split_user(user).0.eq_ignore_ascii_case(&u)
                    })
                });
                conn.authenticated = ok;
                if ok {
                    Gate::Pass
                } else {
                    Gate::Challenge("NTLM".into())
                }
            }
            _ if conn.authenticated => Gate::Pass,
            _ => Gate::Challenge("NTLM".into()),
        }
    }

    /// Extended Protection for NTLM logons (`--extended-protection`): under `Allow` a logon
    /// without a channel binding passes and one with a wrong binding is refused; under `Require`
    /// only a logon bound to this server's certificate passes.
    pub fn with_extended_protection(mut self, ep: crate::tls::ExtendedProtection) -> Simulator {
        self.extended_protection = ep;
        self
    }

    /// What NTLM logons must show beyond the password.
    fn protection(&self) -> exarch_ews_source::ntlm::Expected {
        exarch_ews_source::ntlm::Expected {
            protection: self.extended_protection.protection,
            channel_bindings: self.extended_protection.channel_bindings,
            services: ["HTTP/127.0.0.1", "HTTP/localhost"].map(String::from).to_vec(),
        }
    }

    pub(crate) fn authorised(&self, header: Option<&str>) -> bool {
        if self.ntlm {
            return true; // the connection passed ntlm_gate
        }
        // A Basic-only server answers an NTLM attempt with 401, whatever the credentials.
        if header.is_some_and(|h| h.starts_with("NTLM ")) {
            return false;
        }
        let Some((user, pass)) = &self.credentials else { return true };
        let Some(v) = header.and_then(|h| h.strip_prefix("Basic ")) else { return false };
        let Ok(raw) = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v.trim()) else {
            return false;
        };
        let raw = String::from_utf8_lossy(&raw);
        raw.split_once(':').is_some_and(|(u, p)| u.eq_ignore_ascii_case(user) && p == pass)
    }
}
