//! Certificate credentials: the signed JWT client assertion the Microsoft identity platform takes
//! instead of a client secret (RFC 7523 `private_key_jwt`), and the check a server makes of it.
//!
//! The assertion is `base64url(header).base64url(claims).base64url(signature)`: header
//! `{"alg":"PS256","typ":"JWT","x5t#S256":<base64url SHA-256 of the certificate's DER>}`, claims
//! `aud` (the token endpoint), `iss` = `sub` (the client id), a random `jti`, `nbf`/`iat` (now) and
//! `exp` (ten minutes on), signed RSASSA-PSS with SHA-256 by the certificate's key. The key never
//! leaves this process; only the assertion is sent.

use crate::error::GraphError;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use ring::signature::{RsaKeyPair, UnparsedPublicKey, RSA_PSS_2048_8192_SHA256, RSA_PSS_SHA256};
use sha2::Digest as _;

/// A certificate and its private key, read from PEM.
pub struct CertificateKey {
    cert_der: Vec<u8>,
    key: RsaKeyPair,
}

impl std::fmt::Debug for CertificateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertificateKey(x5t#S256 {})", self.thumbprint())
    }
}

impl CertificateKey {
    /// Reads a certificate (`CERTIFICATE`) and an RSA key (`PRIVATE KEY` or `RSA PRIVATE KEY`)
    /// from PEM text; both may be in one file. `name` says where they came from, for errors.
    pub fn from_pem(pem_text: &[u8], name: &str) -> Result<CertificateKey, GraphError> {
        let blocks = pem::parse_many(pem_text).map_err(|e| GraphError::Config(format!("{name}: not PEM ({e})")))?;
        let cert_der = blocks
            .iter()
            .find(|b| b.tag() == "CERTIFICATE")
            .map(|b| b.contents().to_vec())
            .ok_or_else(|| GraphError::Config(format!("{name}: no CERTIFICATE block")))?;
        let key = blocks
            .iter()
            .find_map(|b| match b.tag() {
                "PRIVATE KEY" => Some(RsaKeyPair::from_pkcs8(b.contents()).map_err(|e| e.to_string())),
                "RSA PRIVATE KEY" => Some(RsaKeyPair::from_der(b.contents()).map_err(|e| e.to_string())),
                _ => None,
            })
            .ok_or_else(|| {
                GraphError::Config(format!(
                    "{name}: no private key (a PRIVATE KEY or RSA PRIVATE KEY block; give it with --client-key FILE \
                     if it is in a file of its own)"
                ))
            })?
            .map_err(|e| GraphError::Config(format!("{name}: the private key is not a usable RSA key ({e})")))?;
        Ok(CertificateKey { cert_der, key })
    }

    /// base64url of the SHA-256 of the certificate's DER: how the identity platform finds it.
    pub fn thumbprint(&self) -> String {
        B64URL.encode(sha2::Sha256::digest(&self.cert_der))
    }

    /// A fresh assertion for `client_id` at the token endpoint `audience`, valid ten minutes.
    pub fn assertion(&self, client_id: &str, audience: &str, now_unix: i64) -> Result<String, GraphError> {
        let header = serde_json::json!({"alg": "PS256", "typ": "JWT", "x5t#S256": self.thumbprint()});
        let jti: [u8; 16] = rand::random();
        let claims = serde_json::json!({
            "aud": audience, "iss": client_id, "sub": client_id, "jti": hex_lower(&jti),
            "nbf": now_unix, "iat": now_unix, "exp": now_unix + 600,
        });
        let signing_input = format!("{}.{}", B64URL.encode(header.to_string()), B64URL.encode(claims.to_string()));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PSS_SHA256, &ring::rand::SystemRandom::new(), signing_input.as_bytes(), &mut sig)
            .map_err(|_| GraphError::Config("signing the client assertion failed".into()))?;
        Ok(format!("{signing_input}.{}", B64URL.encode(sig)))
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What a verified assertion said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    pub client_id: String,
    pub audience: String,
    pub expires_unix: i64,
}

/// Checks an assertion as the identity platform would: PS256 by the key of the certificate whose
/// thumbprint it names (one of `certs`, DER), `iss` = `sub`, not expired at `now_unix`.
pub fn verify(assertion: &str, certs: &[Vec<u8>], now_unix: i64) -> Result<Claims, String> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [h, c, s] = parts[..] else { return Err("not a JWT (three dot-separated parts)".into()) };
    let json = |p: &str| -> Result<serde_json::Value, String> {
        serde_json::from_slice(&B64URL.decode(p).map_err(|e| format!("not base64url: {e}"))?)
            .map_err(|e| format!("not JSON: {e}"))
    };
    let (header, claims) = (json(h)?, json(c)?);
    if header["alg"] != "PS256" {
        return Err(format!("alg {} is not PS256", header["alg"]));
    }
    let x5t = header["x5t#S256"].as_str().ok_or("no x5t#S256 in the header")?;
    let cert = certs
        .iter()
        .find(|d| B64URL.encode(sha2::Sha256::digest(d)) == x5t)
        .ok_or("the certificate named by x5t#S256 is not registered for the application")?;
    let key = rsa_public_key(cert).ok_or("the registered certificate holds no RSA key")?;
    let sig = B64URL.decode(s).map_err(|e| format!("signature not base64url: {e}"))?;
    UnparsedPublicKey::new(&RSA_PSS_2048_8192_SHA256, key)
        .verify(format!("{h}.{c}").as_bytes(), &sig)
        .map_err(|_| "the signature does not verify".to_string())?;
    let (iss, sub) = (claims["iss"].as_str().unwrap_or(""), claims["sub"].as_str().unwrap_or(""));
    if iss.is_empty() || iss != sub {
        return Err("iss and sub must both be the client id".into());
    }
    let exp = claims["exp"].as_i64().ok_or("no exp")?;
    if exp <= now_unix {
        return Err("the assertion has expired".into());
    }
    Ok(Claims {
        client_id: iss.to_string(),
        audience: claims["aud"].as_str().unwrap_or("").to_string(),
        expires_unix: exp,
    })
}

/// One DER element at the start of `d`: (tag, content, rest).
fn der(d: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, d) = d.split_first()?;
    let (&first, mut d) = d.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || d.len() < n {
            return None;
        }
        let l = d[..n].iter().fold(0usize, |a, b| (a << 8) | *b as usize);
        d = &d[n..];
        l
    };
    (d.len() >= len).then(|| (tag, &d[..len], &d[len..]))
}

/// The RSAPublicKey (PKCS#1 DER) inside an X.509 certificate's SubjectPublicKeyInfo.
fn rsa_public_key(cert: &[u8]) -> Option<&[u8]> {
    let (_, cert, _) = der(cert)?;
    let (_, mut tbs, _) = der(cert)?;
    // version [0] (optional), serial, signature algorithm, issuer, validity, subject, then the key.
    if tbs.first() == Some(&0xa0) {
        tbs = der(tbs)?.2;
    }
    for _ in 0..5 {
        tbs = der(tbs)?.2;
    }
    let (_, spki, _) = der(tbs)?;
    let (_, _, rest) = der(spki)?;
    let (tag, bits, _) = der(rest)?;
    (tag == 0x03 && bits.first() == Some(&0)).then(|| &bits[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &[u8] = include_bytes!("../tests/data/app-cert.pem");

    #[test]
    fn an_assertion_verifies_against_its_certificate_and_nothing_else() {
        let key = CertificateKey::from_pem(PEM, "app-cert.pem").expect("pem");
        let aud = "https://login.example/tenant/oauth2/v2.0/token";
        let a = key.assertion("client-1", aud, 1_000_000).expect("sign");
        let cert = pem::parse_many(PEM).unwrap().into_iter().find(|b| b.tag() == "CERTIFICATE").unwrap();
        let certs = vec![cert.contents().to_vec()];
        let c = verify(&a, &certs, 1_000_100).expect("verifies");
        assert_eq!(c, Claims { client_id: "client-1".into(), audience: aud.into(), expires_unix: 1_000_600 });
        assert!(verify(&a, &certs, 1_000_601).unwrap_err().contains("expired"));
        let mut bad = a.clone().into_bytes();
        let n = bad.len() - 10;
        bad[n] = if bad[n] == b'A' { b'B' } else { b'A' };
        assert!(verify(std::str::from_utf8(&bad).unwrap(), &certs, 1_000_100).is_err(), "a changed signature fails");
        assert!(verify(&a, &[b"other".to_vec()], 1_000_100).is_err(), "an unregistered certificate fails");
    }

    #[test]
    fn a_pem_without_a_key_says_what_is_missing() {
        let cert_only: String =
            String::from_utf8_lossy(PEM).split("-----BEGIN PRIVATE KEY-----").next().unwrap().to_string();
        let e = CertificateKey::from_pem(cert_only.as_bytes(), "c.pem").unwrap_err().to_string();
        assert!(e.contains("no private key") && e.contains("--client-key"), "{e}");
    }
}
