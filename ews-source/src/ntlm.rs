//! NTLMv2 authentication over HTTP (MS-NLMP), the default on on-premises Exchange.
//!
//! Only what an HTTP client needs: the NEGOTIATE message, reading the server's CHALLENGE, and the
//! AUTHENTICATE message with an NTLMv2 response. No signing or sealing is negotiated (TLS protects
//! the channel), so no session key is sent. `verify` checks an AUTHENTICATE message the way a
//! server does; the simulated Exchange uses it.
//!
//! NTLM authenticates a connection, not a request: the three messages must travel on one TCP
//! connection. The client keeps that affinity by giving each request in flight a connection of
//! its own (see `client.rs`).

use hmac::{Hmac, Mac};
use md4::{Digest, Md4};

type HmacMd5 = Hmac<md5::Md5>;

const SIGNATURE: &[u8; 8] = b"NTLMSSP\0";
const NEGOTIATE_UNICODE: u32 = 0x0000_0001;
const REQUEST_TARGET: u32 = 0x0000_0004;
const NEGOTIATE_NTLM: u32 = 0x0000_0200;
const NEGOTIATE_ALWAYS_SIGN: u32 = 0x0000_8000;
const NEGOTIATE_EXTENDED_SESSIONSECURITY: u32 = 0x0008_0000;
const NEGOTIATE_TARGET_INFO: u32 = 0x0080_0000;
const NEGOTIATE_128: u32 = 0x2000_0000;
const NEGOTIATE_56: u32 = 0x8000_0000;
const FLAGS: u32 = NEGOTIATE_UNICODE
    | REQUEST_TARGET
    | NEGOTIATE_NTLM
    | NEGOTIATE_ALWAYS_SIGN
    | NEGOTIATE_EXTENDED_SESSIONSECURITY
    | NEGOTIATE_TARGET_INFO
    | NEGOTIATE_128
    | NEGOTIATE_56;

/// A malformed NTLM message.
#[derive(Debug, thiserror::Error)]
#[error("malformed NTLM message: {0}")]
pub struct NtlmError(pub &'static str);

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(|u| u.to_le_bytes()).collect()
}

fn hmac_md5(key: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut m = HmacMd5::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().into()
}

/// NTOWFv2: the key of the NTLMv2 response, from the password, user and domain.
pub fn ntowf_v2(password: &str, user: &str, domain: &str) -> [u8; 16] {
    let nt_hash: [u8; 16] = Md4::digest(utf16(password)).into();
    hmac_md5(&nt_hash, &[&utf16(&user.to_uppercase()), &utf16(domain)])
}

/// Splits `DOMAIN\user` into (user, domain); `user@domain` (a UPN) stays whole with no domain.
pub fn split_user(account: &str) -> (String, String) {
    match account.split_once('\\') {
        Some((d, u)) => (u.to_string(), d.to_string()),
        None => (account.to_string(), String::new()),
    }
}

/// The NEGOTIATE message (type 1).
pub fn negotiate() -> Vec<u8> {
    let mut m = SIGNATURE.to_vec();
    m.extend_from_slice(&1u32.to_le_bytes());
    m.extend_from_slice(&FLAGS.to_le_bytes());
    m.extend_from_slice(&[0u8; 16]); // empty domain and workstation fields
    m
}

/// What a CHALLENGE message (type 2) carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub flags: u32,
    pub server_challenge: [u8; 8],
    pub target_info: Vec<u8>,
}

fn u16_at(b: &[u8], at: usize) -> Result<u16, NtlmError> {
    b.get(at..at + 2).map(|x| u16::from_le_bytes([x[0], x[1]])).ok_or(NtlmError("too short"))
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, NtlmError> {
    b.get(at..at + 4).map(|x| u32::from_le_bytes(x.try_into().expect("4"))).ok_or(NtlmError("too short"))
}

/// The bytes a security buffer (length, max length, offset) at `at` points to.
fn field(b: &[u8], at: usize) -> Result<&[u8], NtlmError> {
    let len = u16_at(b, at)? as usize;
    let off = u32_at(b, at + 4)? as usize;
    b.get(off..off + len).ok_or(NtlmError("field outside the message"))
}

fn check_header(b: &[u8], kind: u32) -> Result<(), NtlmError> {
    if b.get(..8) != Some(&SIGNATURE[..]) {
        return Err(NtlmError("no NTLMSSP signature"));
    }
    if u32_at(b, 8)? != kind {
        return Err(NtlmError("unexpected message type"));
    }
    Ok(())
}

pub fn parse_challenge(b: &[u8]) -> Result<Challenge, NtlmError> {
    check_header(b, 2)?;
    Ok(Challenge {
        flags: u32_at(b, 20)?,
        server_challenge: b.get(24..32).ok_or(NtlmError("too short"))?.try_into().expect("8"),
        target_info: if b.len() >= 48 { field(b, 40)?.to_vec() } else { Vec::new() },
    })
}

/// The CHALLENGE message a server sends (for the simulated Exchange and tests).
pub fn challenge(server_challenge: [u8; 8], target_name: &str) -> Vec<u8> {
    let name = utf16(target_name);
    let mut info = Vec::new();
    for (id, v) in [(2u16, &name), (1u16, &name)] {
        info.extend_from_slice(&id.to_le_bytes());
        info.extend_from_slice(&(v.len() as u16).to_le_bytes());
        info.extend_from_slice(v);
    }
    info.extend_from_slice(&[0, 0, 0, 0]); // MsvAvEOL
    let mut m = SIGNATURE.to_vec();
    m.extend_from_slice(&2u32.to_le_bytes());
    let header = 48u32;
    m.extend_from_slice(&(name.len() as u16).to_le_bytes());
    m.extend_from_slice(&(name.len() as u16).to_le_bytes());
    m.extend_from_slice(&header.to_le_bytes());
    m.extend_from_slice(&FLAGS.to_le_bytes());
    m.extend_from_slice(&server_challenge);
    m.extend_from_slice(&[0u8; 8]);
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(info.len() as u16).to_le_bytes());
    m.extend_from_slice(&(header + name.len() as u32).to_le_bytes());
    m.extend_from_slice(&name);
    m.extend_from_slice(&info);
    m
}

/// The NTLMv2 response to `c`: NTProofStr followed by the client's blob.
pub fn ntlmv2_response(key: &[u8; 16], c: &Challenge, client_challenge: [u8; 8], filetime: u64) -> (Vec<u8>, Vec<u8>) {
    let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
    blob.extend_from_slice(&filetime.to_le_bytes());
    blob.extend_from_slice(&client_challenge);
    blob.extend_from_slice(&[0, 0, 0, 0]);
    blob.extend_from_slice(&c.target_info);
    blob.extend_from_slice(&[0, 0, 0, 0]);
    let proof = hmac_md5(key, &[&c.server_challenge, &blob]);
    let mut nt = proof.to_vec();
    nt.extend_from_slice(&blob);
    let mut lm = hmac_md5(key, &[&c.server_challenge, &client_challenge]).to_vec();
    lm.extend_from_slice(&client_challenge);
    (lm, nt)
}

/// The AUTHENTICATE message (type 3) for `account` (`DOMAIN\user` or a UPN).
pub fn authenticate(account: &str, password: &str, c: &Challenge, client_challenge: [u8; 8], filetime: u64) -> Vec<u8> {
    let (user, domain) = split_user(account);
    let key = ntowf_v2(password, &user, &domain);
    let (lm, nt) = ntlmv2_response(&key, c, client_challenge, filetime);
    let fields: [Vec<u8>; 6] = [lm, nt, utf16(&domain), utf16(&user), utf16("EXARCH"), Vec::new()];
    let header = 64usize;
    let mut m = SIGNATURE.to_vec();
    m.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = header;
    for f in &fields {
        m.extend_from_slice(&(f.len() as u16).to_le_bytes());
        m.extend_from_slice(&(f.len() as u16).to_le_bytes());
        m.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += f.len();
    }
    m.extend_from_slice(&(FLAGS & c.flags | NEGOTIATE_UNICODE | NEGOTIATE_NTLM).to_le_bytes());
    for f in &fields {
        m.extend_from_slice(f);
    }
    m
}

/// Checks an AUTHENTICATE message against the challenge the server sent and the account's
/// password; returns the user name it names.
pub fn verify(msg: &[u8], server_challenge: [u8; 8], password: &str) -> Result<String, NtlmError> {
    check_header(msg, 3)?;
    let nt = field(msg, 20)?;
    let domain = field(msg, 28)?;
    let user = field(msg, 36)?;
    let text = |b: &[u8]| {
        String::from_utf16_lossy(&b.chunks_exact(2).map(|c| u16::from_le_bytes([c[0], c[1]])).collect::<Vec<_>>())
    };
    let (user, domain) = (text(user), text(domain));
    if nt.len() < 16 + 28 {
        return Err(NtlmError("not an NTLMv2 response"));
    }
    let key = ntowf_v2(password, &user, &domain);
    let proof = hmac_md5(&key, &[&server_challenge, &nt[16..]]);
    if proof[..] != nt[..16] {
        return Err(NtlmError("wrong password or challenge"));
    }
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    #[test]
    fn ms_nlmp_ntlmv2_vectors() {
        // MS-NLMP 4.2.4: User "User", domain "Domain", password "Password".
        assert_eq!(ntowf_v2("Password", "User", "Domain").to_vec(), hex("0c868a403bfd7a93a3001ef22ef02e3f"));
        let mut info = Vec::new();
        for (id, v) in [(2u16, "Domain"), (1u16, "Server")] {
            let v = utf16(v);
            info.extend_from_slice(&id.to_le_bytes());
            info.extend_from_slice(&(v.len() as u16).to_le_bytes());
            info.extend_from_slice(&v);
        }
        info.extend_from_slice(&[0, 0, 0, 0]);
        let c = Challenge {
            flags: FLAGS,
            server_challenge: hex("0123456789abcdef").try_into().unwrap(),
            target_info: info,
        };
        let key = ntowf_v2("Password", "User", "Domain");
        let (lm, nt) = ntlmv2_response(&key, &c, [0xaa; 8], 0);
        assert_eq!(nt[..16].to_vec(), hex("68cd0ab851e51c96aabc927bebef6a1c"));
        assert_eq!(lm[..16].to_vec(), hex("86c35097ac9cec102554764a57cccc19"));
    }

    #[test]
    fn a_server_accepts_the_right_password_only() {
        let ch = challenge([7; 8], "EXCHANGE");
        let c = parse_challenge(&ch).unwrap();
        assert_eq!(c.server_challenge, [7; 8]);
        let msg = authenticate("CORP\\svc-backup", "s3cret", &c, [1; 8], 133_000_000_000_000_000);
        assert_eq!(verify(&msg, [7; 8], "s3cret").unwrap(), "svc-backup");
        assert!(verify(&msg, [7; 8], "wrong").is_err());
        assert!(verify(&msg, [8; 8], "s3cret").is_err(), "a replay against another challenge fails");
        assert!(verify(&msg[..40], [7; 8], "s3cret").is_err());
        assert!(parse_challenge(&negotiate()).is_err());
        assert_eq!(split_user("svc@corp.example"), ("svc@corp.example".into(), String::new()));
    }
}
