//! Key slots: the master key wrapped by a passphrase through Argon2id.
//!
//! Several slots may open one repository (one per administrator, or a recovery passphrase kept in a
//! safe). A slot's file name is the BLAKE3 of its bytes. Changing a passphrase writes a new slot and
//! then removes the old one, so a crash in between leaves both working, never none.

use crate::crypto::{open_with, seal_with, Entropy, MasterKey};
use crate::error::{Error, Result};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use zeroize::Zeroize;

pub const KEY_MAGIC: &[u8; 8] = b"EXRKEY01";
pub const KDF_ARGON2ID: u8 = 1;
const MAX_LABEL: usize = 1024;

/// Argon2id cost parameters, stored in each slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    /// RFC 9106's second recommended option (64 MiB, 3 passes, 4 lanes). The lanes are computed
    /// in parallel: opening takes 0.08 s on two cores where one lane took 0.12 s, at the same
    /// memory cost (SPEC §4).
    fn default() -> Self {
        KdfParams { m_cost: 64 * 1024, t_cost: 3, p_cost: 4 }
    }
}

/// Largest Argon2id memory accepted, in KiB (1 GiB).
pub const MAX_M_COST: u32 = 1024 * 1024;

impl KdfParams {
    /// Refuses parameters that would make an attacker's work trivial, or make opening take more
    /// than seconds (a tampered slot must not hold every command up for minutes): memory at most
    /// 1 GiB, passes at most 16, lanes at most 16, and memory × passes at most 4 GiB.
    fn check(&self) -> Result<()> {
        if self.m_cost < 8
            || self.m_cost > MAX_M_COST
            || self.t_cost == 0
            || self.t_cost > 16
            || self.p_cost == 0
            || self.p_cost > 16
            || self.m_cost as u64 * self.t_cost as u64 > MAX_M_COST as u64 * 4
        {
            return Err(Error::damaged("key slot", format!("implausible Argon2id parameters {self:?}")));
        }
        Ok(())
    }
}

/// A parsed key slot.
#[derive(Debug, Clone)]
pub struct KeySlot {
    pub params: KdfParams,
    pub salt: [u8; 32],
    pub created: i64,
    pub label: String,
    /// nonce || sealed master key || tag
    sealed: Vec<u8>,
    header_len: usize,
    raw: Vec<u8>,
}

fn wrapping_cipher(passphrase: &[u8], params: KdfParams, salt: &[u8; 32]) -> Result<XChaCha20Poly1305> {
    params.check()?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
            .map_err(|e| Error::Other(format!("Argon2 parameters: {e}")))?,
    );
    let mut k = [0u8; 32];
    argon.hash_password_into(passphrase, salt, &mut k).map_err(|e| Error::Other(format!("Argon2: {e}")))?;
    let c = XChaCha20Poly1305::new((&k).into());
    k.zeroize();
    Ok(c)
}

impl KeySlot {
    /// Wraps `master` under `passphrase`; returns the slot's bytes.
    pub fn create(
        master: &MasterKey,
        passphrase: &[u8],
        params: KdfParams,
        label: &str,
        created: i64,
        entropy: &Entropy,
    ) -> Result<Vec<u8>> {
        if label.len() > MAX_LABEL {
            return Err(Error::Usage(format!("key label longer than {MAX_LABEL} bytes")));
        }
        let mut salt = [0u8; 32];
        entropy.fill(&mut salt);
        let mut out = Vec::with_capacity(128 + label.len());
        out.extend_from_slice(KEY_MAGIC);
        out.push(KDF_ARGON2ID);
        out.extend_from_slice(&params.m_cost.to_le_bytes());
        out.extend_from_slice(&params.t_cost.to_le_bytes());
        out.extend_from_slice(&params.p_cost.to_le_bytes());
        out.extend_from_slice(&salt);
        out.extend_from_slice(&created.to_le_bytes());
        out.extend_from_slice(&(label.len() as u16).to_le_bytes());
        out.extend_from_slice(label.as_bytes());
        let cipher = wrapping_cipher(&crate::passphrase::kdf_input(passphrase), params, &salt)?;
        let sealed = seal_with(&cipher, entropy, &out, &master.0);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    pub fn parse(raw: &[u8], name: &str) -> Result<KeySlot> {
        let bad = |d: &str| Error::damaged(format!("key slot {name}"), d.to_string());
        if raw.len() < 8 || &raw[..8] != KEY_MAGIC {
            return Err(bad("wrong magic"));
        }
        let mut p = 8;
        let take = |p: &mut usize, n: usize| -> Result<&[u8]> {
            let s = raw.get(*p..*p + n).ok_or_else(|| bad("truncated"))?;
            *p += n;
            Ok(s)
        };
        let kdf = take(&mut p, 1)?[0];
        if kdf != KDF_ARGON2ID {
            return Err(Error::UnsupportedVersion { what: "key derivation".into(), version: kdf as u32, supported: 1 });
        }
        let u32at = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
        let m_cost = u32at(take(&mut p, 4)?);
        let t_cost = u32at(take(&mut p, 4)?);
        let p_cost = u32at(take(&mut p, 4)?);
        let salt: [u8; 32] = take(&mut p, 32)?.try_into().expect("32 bytes");
        let created = i64::from_le_bytes(take(&mut p, 8)?.try_into().expect("8 bytes"));
        let label_len = u16::from_le_bytes(take(&mut p, 2)?.try_into().expect("2 bytes")) as usize;
        let label = String::from_utf8_lossy(take(&mut p, label_len)?).into_owned();
        let header_len = p;
        let sealed = raw[p..].to_vec();
        if sealed.len() != 24 + 32 + 16 {
            return Err(bad("wrapped key has the wrong length"));
        }
        Ok(KeySlot {
            params: KdfParams { m_cost, t_cost, p_cost },
            salt,
            created,
            label,
            sealed,
            header_len,
            raw: raw.to_vec(),
        })
    }

    /// The master key if `passphrase` is the one this slot was made with. The passphrase's NFC
    /// form is tried first (SPEC §4.1); when that differs from the bytes given and fails, the bytes
    /// as given are tried too (slots written before passphrases were normalised).
    pub fn unwrap_key(&self, passphrase: &[u8]) -> Result<Option<MasterKey>> {
        let normal = crate::passphrase::kdf_input(passphrase);
        if let Some(k) = self.unwrap_with(&normal)? {
            return Ok(Some(k));
        }
        if normal.as_ref() != passphrase {
            return self.unwrap_with(passphrase);
        }
        Ok(None)
    }

    fn unwrap_with(&self, kdf_input: &[u8]) -> Result<Option<MasterKey>> {
        let cipher = wrapping_cipher(kdf_input, self.params, &self.salt)?;
        Ok(open_with(&cipher, &self.raw[..self.header_len], &self.sealed).map(|mut k| {
            let mut m = [0u8; 32];
            m.copy_from_slice(&k);
            k.zeroize();
            MasterKey(m)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_wrong_passphrase_and_tamper() {
        let params = KdfParams { m_cost: 64, t_cost: 1, p_cost: 1 };
        let e = Entropy::os();
        let raw = KeySlot::create(&MasterKey([9; 32]), b"secret", params, "admin", 1700000000, &e).unwrap();
        let slot = KeySlot::parse(&raw, "x").unwrap();
        assert_eq!(slot.label, "admin");
        assert_eq!(slot.params, params);
        assert_eq!(slot.unwrap_key(b"secret").unwrap().unwrap().0, [9; 32]);
        assert!(slot.unwrap_key(b"Secret").unwrap().is_none());
        // The header is authenticated: weakening the stored parameters breaks the slot.
        let mut bad = raw.clone();
        bad[9] ^= 1; // m_cost 64 -> 65: still valid, but no longer what was authenticated
        let s = KeySlot::parse(&bad, "x").unwrap();
        assert!(s.unwrap_key(b"secret").unwrap().is_none());
        assert!(KeySlot::parse(&raw[..40], "x").is_err());
    }

    #[test]
    fn passphrases_are_normalised_and_old_slots_still_open() {
        let params = KdfParams { m_cost: 64, t_cost: 1, p_cost: 1 };
        let e = Entropy::os();
        let composed = "caf\u{e9}".as_bytes();
        let decomposed = "cafe\u{301}".as_bytes();
        let raw = KeySlot::create(&MasterKey([7; 32]), decomposed, params, "k", 0, &e).unwrap();
        let slot = KeySlot::parse(&raw, "x").unwrap();
        assert_eq!(slot.unwrap_key(composed).unwrap().unwrap().0, [7; 32]);
        assert_eq!(slot.unwrap_key(decomposed).unwrap().unwrap().0, [7; 32]);
        // a slot whose Argon2 input was the decomposed bytes themselves (written before NFC)
        let mut old = KeySlot::parse(&raw, "x").unwrap();
        let cipher = wrapping_cipher(decomposed, params, &old.salt).unwrap();
        old.sealed = seal_with(&cipher, &e, &raw[..old.header_len], &[7; 32]);
        assert_eq!(old.unwrap_key(decomposed).unwrap().unwrap().0, [7; 32]);
        assert!(old.unwrap_key(b"cafe").unwrap().is_none());
    }
}
