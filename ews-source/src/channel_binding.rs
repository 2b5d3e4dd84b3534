//! Channel bindings for NTLM over TLS (Windows "Extended Protection for Authentication").
//!
//! RFC 5929 `tls-server-end-point`: a hash of the server's certificate as it was sent in the TLS
//! handshake. The hash is the one the certificate's signature uses, except that MD5 and SHA-1 (and
//! signatures that name no single hash) give SHA-256. NTLM carries it (MS-NLMP 2.2.2.1,
//! `MsvAvChannelBindings`) as the MD5 of a GSS-API channel-bindings structure (RFC 2744 §3.11:
//! initiator and acceptor address types and lengths, all zero here, then the length and bytes of
//! the application data `tls-server-end-point:` + hash), all integers 32-bit little-endian.
//! A server behind which a TLS-inspecting proxy sits sees another certificate, so the binding can
//! never match there; the client can be told not to send one.

use md5::Md5;
use sha2::{Digest, Sha256, Sha384, Sha512};

/// OIDs (DER content bytes) of signature algorithms that use SHA-384 or SHA-512.
const SHA384_SIGS: &[&[u8]] = &[
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c], // sha384WithRSAEncryption
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x03],       // ecdsa-with-SHA384
];
const SHA512_SIGS: &[&[u8]] = &[
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0d], // sha512WithRSAEncryption
    &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x04],       // ecdsa-with-SHA512
];

/// One DER element at the start of `b`: (tag, content, rest). None when malformed.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&first, mut b) = b.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let len = b[..n].iter().fold(0usize, |a, &x| a << 8 | x as usize);
        b = &b[n..];
        len
    };
    (b.len() >= len).then(|| (tag, &b[..len], &b[len..]))
}

/// The OID of the certificate's `signatureAlgorithm` (RFC 5280: Certificate ::= SEQUENCE {
/// tbsCertificate, signatureAlgorithm AlgorithmIdentifier, signatureValue }).
fn signature_oid(cert_der: &[u8]) -> Option<&[u8]> {
    let (0x30, cert, _) = tlv(cert_der)? else { return None };
    let (_, _tbs, rest) = tlv(cert)?;
    let (0x30, alg, _) = tlv(rest)? else { return None };
    let (0x06, oid, _) = tlv(alg)? else { return None };
    Some(oid)
}

/// RFC 5929 `tls-server-end-point` for a certificate (DER).
pub fn tls_server_end_point(cert_der: &[u8]) -> Vec<u8> {
    match signature_oid(cert_der) {
        Some(oid) if SHA384_SIGS.contains(&oid) => Sha384::digest(cert_der).to_vec(),
        Some(oid) if SHA512_SIGS.contains(&oid) => Sha512::digest(cert_der).to_vec(),
        _ => Sha256::digest(cert_der).to_vec(),
    }
}

/// The MD5 of the GSS channel-bindings structure holding `application_data`.
pub fn gss_hash(application_data: &[u8]) -> [u8; 16] {
    let mut m = Md5::new();
    m.update([0u8; 16]); // initiator addrtype and length, acceptor addrtype and length
    m.update((application_data.len() as u32).to_le_bytes());
    m.update(application_data);
    m.finalize().into()
}

/// What NTLM's `MsvAvChannelBindings` holds for a TLS connection to a server with this certificate.
pub fn for_certificate(cert_der: &[u8]) -> [u8; 16] {
    let mut data = b"tls-server-end-point:".to_vec();
    data.extend_from_slice(&tls_server_end_point(cert_der));
    gss_hash(&data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate-shaped DER value whose signatureAlgorithm is `oid`.
    fn cert_with(oid: &[u8]) -> Vec<u8> {
        let mut alg = vec![0x06, oid.len() as u8];
        alg.extend_from_slice(oid);
        let mut body = vec![0x30, 0x03, 0x02, 0x01, 0x01]; // tbsCertificate (a stand-in)
        body.extend_from_slice(&[0x30, alg.len() as u8]);
        body.extend_from_slice(&alg);
        body.extend_from_slice(&[0x03, 0x02, 0x00, 0xff]); // signatureValue
        let mut der = vec![0x30, body.len() as u8];
        der.extend_from_slice(&body);
        der
    }

    #[test]
    fn the_hash_follows_the_signature_algorithm() {
        let sha256_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];
        let sha1_rsa = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x05];
        let c = cert_with(&sha256_rsa);
        assert_eq!(tls_server_end_point(&c), Sha256::digest(&c).to_vec());
        let c = cert_with(&sha1_rsa);
        assert_eq!(tls_server_end_point(&c), Sha256::digest(&c).to_vec(), "SHA-1 gives SHA-256");
        let c = cert_with(SHA384_SIGS[1]);
        assert_eq!(tls_server_end_point(&c), Sha384::digest(&c).to_vec());
        let c = cert_with(SHA512_SIGS[0]);
        assert_eq!(tls_server_end_point(&c), Sha512::digest(&c).to_vec());
        // not DER at all: SHA-256, no panic
        assert_eq!(tls_server_end_point(b"\x30\x84\xff"), Sha256::digest(b"\x30\x84\xff").to_vec());
        assert_eq!(signature_oid(&[0x30, 0x80]), None);
    }

    #[test]
    fn the_bindings_structure_is_five_fields_then_the_data() {
        // Nothing bound: five zero 32-bit fields.
        assert_eq!(gss_hash(b""), <[u8; 16]>::from(Md5::digest([0u8; 20])));
        let mut s = vec![0u8; 16];
        s.extend_from_slice(&[3, 0, 0, 0]);
        s.extend_from_slice(b"abc");
        assert_eq!(gss_hash(b"abc"), <[u8; 16]>::from(Md5::digest(&s)));
        // An independent implementation agrees: pyspnego's GssChannelBindings, packed and hashed
        // with MD5, for application data "tls-server-end-point:" + SHA-256("abc").
        let mut data = b"tls-server-end-point:".to_vec();
        data.extend_from_slice(&Sha256::digest(b"abc"));
        let want = "af170326dfd6fc6cc21c3364343df0b2";
        assert_eq!(gss_hash(&data).iter().map(|b| format!("{b:02x}")).collect::<String>(), want);
        let c = cert_with(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b]);
        let mut data = b"tls-server-end-point:".to_vec();
        data.extend_from_slice(&Sha256::digest(&c));
        assert_eq!(for_certificate(&c), gss_hash(&data));
    }
}
