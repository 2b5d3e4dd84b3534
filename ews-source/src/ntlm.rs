//! NTLMv2 authentication over HTTP (MS-NLMP), the default on on-premises Exchange.
//!
//! Only what an HTTP client needs: the NEGOTIATE message, reading the server's CHALLENGE, and the
//! AUTHENTICATE message with an NTLMv2 response. No signing or sealing is negotiated (TLS protects
//! the channel), so no session key is sent. As Windows clients do for Extended Protection, the
//! AUTHENTICATE message names the service it means (`MsvAvTargetName`, `HTTP/<host>`), carries
//! the TLS channel binding (`MsvAvChannelBindings`, see `channel_binding.rs`; zeros when there is
//! none) and a MIC over all three messages, which `MsvAvFlags` announces. `verify` checks an
//! AUTHENTICATE message the way a server does, under an Extended Protection setting (off, allow,
//! require); the simulated Exchange uses it.
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
const NEGOTIATE_VERSION: u32 = 0x0200_0000;
const NEGOTIATE_KEY_EXCH: u32 = 0x4000_0000;
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

/// The CHALLENGE message a server sends (for the simulated Exchange and tests). Like a Windows
/// server's, its target info carries the server's time (`MsvAvTimestamp`), which tells clients to
/// send a MIC.
pub fn challenge(server_challenge: [u8; 8], target_name: &str, filetime: u64) -> Vec<u8> {
    let name = utf16(target_name);
    let mut info = Vec::new();
    for (id, v) in [(2u16, &name[..]), (1u16, &name[..]), (7u16, &filetime.to_le_bytes()[..])] {
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

/// The NTLMv2 response to `server_challenge`: NTProofStr followed by the client's blob holding
/// `target_info` (the client's AV pairs).
pub fn ntlmv2_response(
    key: &[u8; 16],
    server_challenge: &[u8; 8],
    target_info: &[u8],
    client_challenge: [u8; 8],
    filetime: u64,
) -> (Vec<u8>, Vec<u8>) {
    let mut blob = vec![1, 1, 0, 0, 0, 0, 0, 0];
    blob.extend_from_slice(&filetime.to_le_bytes());
    blob.extend_from_slice(&client_challenge);
    blob.extend_from_slice(&[0, 0, 0, 0]);
    blob.extend_from_slice(target_info);
    blob.extend_from_slice(&[0, 0, 0, 0]);
    let proof = hmac_md5(key, &[server_challenge, &blob]);
    let mut nt = proof.to_vec();
    nt.extend_from_slice(&blob);
    let mut lm = hmac_md5(key, &[server_challenge, &client_challenge]).to_vec();
    lm.extend_from_slice(&client_challenge);
    (lm, nt)
}

/// AV pair ids (MS-NLMP 2.2.2.1).
const AV_EOL: u16 = 0;
const AV_FLAGS: u16 = 6;
const AV_TARGET_NAME: u16 = 9;
const AV_CHANNEL_BINDINGS: u16 = 10;
/// `MsvAvFlags`: the AUTHENTICATE message carries a MIC.
const AV_FLAG_MIC: u32 = 0x2;

/// The AV pairs of a target info block, up to `MsvAvEOL`.
fn av_pairs(mut b: &[u8]) -> Result<Vec<(u16, &[u8])>, NtlmError> {
    let mut out = Vec::new();
    loop {
        let id = u16_at(b, 0)?;
        let len = u16_at(b, 2)? as usize;
        if id == AV_EOL {
            return Ok(out);
        }
        let v = b.get(4..4 + len).ok_or(NtlmError("AV pair outside the target info"))?;
        out.push((id, v));
        b = &b[4 + len..];
        if out.len() > 64 {
            return Err(NtlmError("too many AV pairs"));
        }
    }
}

fn push_av(out: &mut Vec<u8>, id: u16, v: &[u8]) {
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(v.len() as u16).to_le_bytes());
    out.extend_from_slice(v);
}

/// What a client binds its logon to: the service it means and the TLS channel it uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    /// `HTTP/<host>` (the host as in the URL).
    pub target_name: String,
    /// `channel_binding::for_certificate` of the server's certificate; None without TLS or when
    /// told not to bind (a TLS-inspecting proxy in between).
    pub channel_bindings: Option<[u8; 16]>,
}

/// The client's AV pairs: the server's, with `MsvAvFlags` (MIC present), `MsvAvTargetName` and
/// `MsvAvChannelBindings` (all zeros when unbound, as Windows sends) in place of any it had.
fn client_target_info(server_info: &[u8], b: &Binding) -> Result<Vec<u8>, NtlmError> {
    let mut out = Vec::new();
    for (id, v) in av_pairs(server_info)? {
        if !matches!(id, AV_FLAGS | AV_TARGET_NAME | AV_CHANNEL_BINDINGS) {
            push_av(&mut out, id, v);
        }
    }
    push_av(&mut out, AV_FLAGS, &AV_FLAG_MIC.to_le_bytes());
    push_av(&mut out, AV_TARGET_NAME, &utf16(&b.target_name));
    push_av(&mut out, AV_CHANNEL_BINDINGS, &b.channel_bindings.unwrap_or([0; 16]));
    push_av(&mut out, AV_EOL, &[]);
    Ok(out)
}

/// Where the MIC sits in an AUTHENTICATE message with a Version field, and where its payload starts.
const MIC_AT: usize = 72;
const AUTH_HEADER: usize = 88;

/// The AUTHENTICATE message (type 3) for `account` (`DOMAIN\user` or a UPN), answering
/// `challenge_msg` after `negotiate_msg`, bound as `binding` says, with its MIC.
pub fn authenticate(
    account: &str,
    password: &str,
    negotiate_msg: &[u8],
    challenge_msg: &[u8],
    binding: &Binding,
    client_challenge: [u8; 8],
    filetime: u64,
) -> Result<Vec<u8>, NtlmError> {
    let c = parse_challenge(challenge_msg)?;
    let (user, domain) = split_user(account);
    let key = ntowf_v2(password, &user, &domain);
    let info = client_target_info(&c.target_info, binding)?;
    let (lm, nt) = ntlmv2_response(&key, &c.server_challenge, &info, client_challenge, filetime);
    let session_base_key = hmac_md5(&key, &[&nt[..16]]);
    let fields: [Vec<u8>; 6] = [lm, nt, utf16(&domain), utf16(&user), utf16("EXARCH"), Vec::new()];
    let mut m = SIGNATURE.to_vec();
    m.extend_from_slice(&3u32.to_le_bytes());
    let mut offset = AUTH_HEADER;
    for f in &fields {
        m.extend_from_slice(&(f.len() as u16).to_le_bytes());
        m.extend_from_slice(&(f.len() as u16).to_le_bytes());
        m.extend_from_slice(&(offset as u32).to_le_bytes());
        offset += f.len();
    }
    let flags = (FLAGS & c.flags & !NEGOTIATE_KEY_EXCH) | NEGOTIATE_UNICODE | NEGOTIATE_NTLM | NEGOTIATE_VERSION;
    m.extend_from_slice(&flags.to_le_bytes());
    m.extend_from_slice(&[10, 0, 0x61, 0x4a, 0, 0, 0, 15]); // Version: 10.0.19041, NTLMSSP revision 15
    m.extend_from_slice(&[0u8; 16]); // MIC, filled in below
    for f in &fields {
        m.extend_from_slice(f);
    }
    let mic = hmac_md5(&session_base_key, &[negotiate_msg, challenge_msg, &m]);
    m[MIC_AT..MIC_AT + 16].copy_from_slice(&mic);
    Ok(m)
}

/// A server's Extended Protection setting (IIS: Off, Accept, Require).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protection {
    #[default]
    Off,
    /// A client without a channel binding is accepted; one with a wrong binding is refused.
    Allow,
    /// Only a client whose channel binding matches is accepted.
    Require,
}

/// What a server expects of an AUTHENTICATE message.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    pub protection: Protection,
    /// The binding of the TLS connection the message came on (None over plain HTTP).
    pub channel_bindings: Option<[u8; 16]>,
    /// The service names the server answers to (`HTTP/<host>` for each host it is reached by).
    pub services: Vec<String>,
}

/// Checks an AUTHENTICATE message the way a server does: the NTLMv2 proof against the challenge
/// and the account's password, the MIC over the three messages when the client announces one, and
/// under Extended Protection its channel binding and service name. Returns the user name.
pub fn verify(
    msg: &[u8],
    negotiate_msg: &[u8],
    challenge_msg: &[u8],
    password: &str,
    expected: &Expected,
) -> Result<String, NtlmError> {
    check_header(msg, 3)?;
    let c = parse_challenge(challenge_msg)?;
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
    let proof = hmac_md5(&key, &[&c.server_challenge, &nt[16..]]);
    if proof[..] != nt[..16] {
        return Err(NtlmError("wrong password or challenge"));
    }
    // The client's AV pairs follow the blob's 28-byte header.
    let pairs = av_pairs(&nt[16 + 28..])?;
    let av = |id: u16| pairs.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
    let mic_flag = av(AV_FLAGS).and_then(|v| v.try_into().ok()).map(u32::from_le_bytes).unwrap_or(0) & AV_FLAG_MIC != 0;
    if mic_flag {
        let flags = u32_at(msg, 60)?;
        if flags & NEGOTIATE_KEY_EXCH != 0 {
            return Err(NtlmError("a session key exchange was not offered"));
        }
        // The MIC follows the Version field, which is there only when the flags say so.
        let mic_at = if flags & NEGOTIATE_VERSION != 0 { MIC_AT } else { MIC_AT - 8 };
        // (the payload must start after the MIC, or the MIC would overlap it)
        let payload_from = (12..60)
            .step_by(8)
            .filter(|&at| u16_at(msg, at).is_ok_and(|len| len > 0))
            .filter_map(|at| u32_at(msg, at + 4).ok())
            .min()
            .unwrap_or(u32::MAX);
        if msg.len() < mic_at + 16 || (payload_from as usize) < mic_at + 16 {
            return Err(NtlmError("a MIC is announced but the message has no room for one"));
        }
        let session_base_key = hmac_md5(&key, &[&nt[..16]]);
        let mut zeroed = msg.to_vec();
        zeroed[mic_at..mic_at + 16].fill(0);
        if hmac_md5(&session_base_key, &[negotiate_msg, challenge_msg, &zeroed])[..] != msg[mic_at..mic_at + 16] {
            return Err(NtlmError("the MIC does not match: the messages were altered"));
        }
    }
    if expected.protection == Protection::Off {
        return Ok(user);
    }
    let sent = av(AV_CHANNEL_BINDINGS).filter(|v| v.iter().any(|&b| b != 0));
    match (sent, expected.channel_bindings) {
        (Some(s), Some(e)) if s == e => {}
        (Some(_), _) => return Err(NtlmError("the channel binding does not match this TLS connection")),
        (None, _) if expected.protection == Protection::Require => {
            return Err(NtlmError("Extended Protection requires a channel binding"))
        }
        (None, _) => {}
    }
    if let Some(t) = av(AV_TARGET_NAME) {
        let t = text(t);
        if !t.is_empty() && !expected.services.iter().any(|s| s.eq_ignore_ascii_case(&t)) {
            return Err(NtlmError("the service name names another server"));
        }
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
        let (lm, nt) = ntlmv2_response(&key, &c.server_challenge, &c.target_info, [0xaa; 8], 0);
        assert_eq!(nt[..16].to_vec(), hex("68cd0ab851e51c96aabc927bebef6a1c"));
        assert_eq!(lm[..16].to_vec(), hex("86c35097ac9cec102554764a57cccc19"));
        // MS-NLMP 4.2.4.1.2: the session base key is HMAC_MD5(key, NTProofStr)
        assert_eq!(hmac_md5(&key, &[&nt[..16]]).to_vec(), hex("8de40ccadbc14a82f15cb0ad0de95ca3"));
    }

    fn exchange(binding: &Binding) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let neg = negotiate();
        let ch = challenge([7; 8], "EXCHANGE", 133_400_000_000_000_000);
        let msg =
            authenticate("CORP\\svc-backup", "s3cret", &neg, &ch, binding, [1; 8], 133_000_000_000_000_000).unwrap();
        (neg, ch, msg)
    }

    #[test]
    fn a_server_accepts_the_right_password_only() {
        let (neg, ch, msg) = exchange(&Binding { target_name: "HTTP/mail.example.com".into(), channel_bindings: None });
        let off = Expected::default();
        assert_eq!(verify(&msg, &neg, &ch, "s3cret", &off).unwrap(), "svc-backup");
        assert!(verify(&msg, &neg, &ch, "wrong", &off).is_err());
        let other = challenge([8; 8], "EXCHANGE", 133_400_000_000_000_000);
        assert!(verify(&msg, &neg, &other, "s3cret", &off).is_err(), "a replay against another challenge fails");
        assert!(verify(&msg[..40], &neg, &ch, "s3cret", &off).is_err());
        assert!(parse_challenge(&negotiate()).is_err());
        assert_eq!(split_user("svc@corp.example"), ("svc@corp.example".into(), String::new()));
        // the MIC covers all three messages: a NEGOTIATE altered on the way is noticed
        let mut neg2 = neg.clone();
        neg2[12] ^= 1;
        assert!(verify(&msg, &neg2, &ch, "s3cret", &off).unwrap_err().0.contains("MIC"));
        let mut tampered = msg.clone();
        tampered[60] ^= 0x10; // a flag bit
        assert!(verify(&tampered, &neg, &ch, "s3cret", &off).is_err());
    }

    #[test]
    fn extended_protection_checks_the_binding_and_the_service() {
        let cbt = crate::channel_binding::gss_hash(b"tls-server-end-point:0123");
        let services = vec!["HTTP/mail.example.com".to_string()];
        let allow = Expected { protection: Protection::Allow, channel_bindings: Some(cbt), services: services.clone() };
        let require = Expected { protection: Protection::Require, ..allow.clone() };
        let bound = exchange(&Binding { target_name: "HTTP/mail.example.com".into(), channel_bindings: Some(cbt) });
        let unbound = exchange(&Binding { target_name: "HTTP/mail.example.com".into(), channel_bindings: None });
        let wrong = exchange(&Binding { target_name: "HTTP/mail.example.com".into(), channel_bindings: Some([9; 16]) });
        let elsewhere = exchange(&Binding { target_name: "HTTP/evil.example.net".into(), channel_bindings: Some(cbt) });
        let ok = |(n, c, m): &(Vec<u8>, Vec<u8>, Vec<u8>), e: &Expected| verify(m, n, c, "s3cret", e).is_ok();
        assert!(ok(&bound, &require) && ok(&bound, &allow));
        assert!(!ok(&unbound, &require), "require refuses a client without a binding");
        assert!(ok(&unbound, &allow), "allow accepts it");
        assert!(!ok(&wrong, &allow) && !ok(&wrong, &require), "a wrong binding is refused under both");
        assert!(!ok(&elsewhere, &allow), "a logon meant for another service is refused");
        assert!(ok(&wrong, &Expected::default()), "without Extended Protection nothing is checked");
    }
}
