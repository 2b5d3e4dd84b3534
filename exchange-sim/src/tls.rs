//! HTTPS for the simulator: a self-signed certificate made at start (for 127.0.0.1 and
//! localhost), which clients trust through its PEM file (`exarch --ca-cert`), and Windows
//! Extended Protection on top of NTLM: the channel binding a logon must carry is derived from this
//! certificate, as IIS derives it from its own.

use exarch_ews_source::ntlm::Protection;

/// The server's certificate and key.
pub struct Tls {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
}

impl Tls {
    /// A fresh self-signed certificate for `hosts` (names or IP addresses).
    pub fn self_signed(hosts: &[&str]) -> Result<Tls, String> {
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).map_err(|e| format!("making a certificate: {e}"))?;
        Ok(Tls { cert_pem: ck.cert.pem(), key_pem: ck.key_pair.serialize_pem(), cert_der: ck.cert.der().to_vec() })
    }

    pub(crate) fn ssl_config(&self) -> tiny_http::SslConfig {
        tiny_http::SslConfig {
            certificate: self.cert_pem.clone().into_bytes(),
            private_key: self.key_pem.clone().into_bytes(),
        }
    }
}

/// Extended Protection as the simulator applies it to NTLM logons.
#[derive(Debug, Clone, Default)]
pub struct ExtendedProtection {
    pub protection: Protection,
    /// The binding of the server's certificate (None over plain HTTP).
    pub channel_bindings: Option<[u8; 16]>,
}
