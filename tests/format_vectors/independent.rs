//! A reader written from SPEC.md alone, using only the primitive crates (Argon2,
//! XChaCha20-Poly1305, BLAKE3, zstd, MD5, Unicode normalisation) and none of exarch's code.

use argon2::{Algorithm, Argon2, Params, Version};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::collections::HashMap;
use std::path::Path;

fn u32le(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}

fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Vec<u8> {
    let c = XChaCha20Poly1305::new(key.into());
    c.decrypt(XNonce::from_slice(&sealed[..24]), Payload { msg: &sealed[24..], aad }).expect("authentic")
}

fn unflag(p: &[u8]) -> Vec<u8> {
    match p[0] {
        0 => p[1..].to_vec(),
        1 => zstd::stream::decode_all(&p[1..]).unwrap(),
        f => panic!("flag {f}"),
    }
}

/// rkyv `Vec<T>` at `at`: relative offset (i32) from the field itself, then length (u32).
fn vec_at(buf: &[u8], at: usize, elem: usize) -> (usize, usize) {
    let rel = i32::from_le_bytes(buf[at..at + 4].try_into().unwrap()) as isize;
    let start = (at as isize + rel) as usize;
    let len = u32le(buf, at + 4) as usize;
    assert!(start + len * elem <= buf.len());
    (start, len)
}

fn bytes_at(buf: &[u8], at: usize) -> Vec<u8> {
    let (s, n) = vec_at(buf, at, 1);
    buf[s..s + n].to_vec()
}

/// One snapshot as stored: its mailbox, folders `(parent, name)` and items `(folder, name, bytes)`,
/// in manifest order.
pub struct Snap {
    pub id: String,
    pub mailbox: String,
    pub folders: Vec<(u32, String)>,
    pub items: Vec<(u32, String, Vec<u8>)>,
}

/// §4.1: the passphrase in a file: without a leading BOM, up to the first `\n`, one `\r` removed.
pub fn passphrase_from_file(bytes: &[u8]) -> String {
    let text = std::str::from_utf8(bytes).unwrap();
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let line = text.split('\n').next().unwrap();
    line.strip_suffix('\r').unwrap_or(line).to_string()
}

/// §7: `GEAR[i]` = first 8 bytes (big-endian) of MD5 of 64 bytes equal to i.
pub fn gear() -> Vec<u64> {
    use md5::{Digest, Md5};
    (0..=255u8).map(|i| u64::from_be_bytes(Md5::digest([i; 64])[..8].try_into().unwrap())).collect()
}

const MASKS: [(u32, u64); 17] = [
    (7, 0x0000000018035100),
    (8, 0x0000001800035300),
    (9, 0x0000019000353000),
    (10, 0x0000590003530000),
    (11, 0x0000d90003530000),
    (12, 0x0000d90103530000),
    (13, 0x0000d90303530000),
    (14, 0x0000d90313530000),
    (15, 0x0000d90f03530000),
    (16, 0x0000d90303537000),
    (17, 0x0000d90703537000),
    (18, 0x0000d90707537000),
    (19, 0x0000d91707537000),
    (20, 0x0000d91747537000),
    (21, 0x0000d91767537000),
    (22, 0x0000d93767537000),
    (23, 0x0000d93777537000),
];

/// §7's cut points (chunk lengths) of `data`.
pub fn chunk_lengths(data: &[u8], seed: u64, min: usize, avg: usize, max: usize) -> Vec<usize> {
    let base = gear();
    let g: Vec<u64> = base.iter().map(|v| v ^ seed).collect();
    let g_ls: Vec<u64> = base.iter().map(|v| (v << 1) ^ (seed << 1)).collect();
    let bits = (avg as f64).log2().round() as u32;
    let mask = |k: u32| MASKS.iter().find(|m| m.0 == k).unwrap().1;
    let (ms, ml) = (mask(bits + 1), mask(bits - 1));
    let (ms_ls, ml_ls) = (ms << 1, ml << 1);
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = rest.len();
        let cut = if n <= min {
            n
        } else {
            let limit = n.min(max);
            let center = if limit >= avg { avg } else { limit };
            let mut i = min / 2;
            let mut h: u64 = 0;
            let mut cut = limit;
            'scan: for (end, small, large) in [(center / 2, ms, ms_ls), (limit / 2, ml, ml_ls)] {
                while i < end {
                    let a = 2 * i;
                    h = (h << 2).wrapping_add(g_ls[rest[a] as usize]);
                    if h & large == 0 {
                        cut = a;
                        break 'scan;
                    }
                    h = h.wrapping_add(g[rest[a + 1] as usize]);
                    if h & small == 0 {
                        cut = a + 1;
                        break 'scan;
                    }
                    i += 1;
                }
            }
            cut
        };
        out.push(cut);
        rest = &rest[cut..];
    }
    out
}

/// §10.1's walk (L1–L5): the free range `[lo, hi)`; `claim` checks an object and its children.
struct Walk<'a> {
    b: &'a [u8],
    lo: usize,
    hi: usize,
}

impl Walk<'_> {
    fn claim(&mut self, p: i64, n: usize, a: usize, children: impl FnOnce(&mut Self)) {
        assert!(p >= 0 && p as usize + n <= self.b.len(), "L2");
        let p = p as usize;
        assert!(p >= self.lo, "L5");
        assert!(p + n <= self.hi, "L4");
        assert_eq!(p % a, 0, "L3");
        let saved = self.hi;
        self.hi = p;
        children(self);
        self.lo = p + n;
        self.hi = saved;
    }
    /// A vector field at `f` of elements `size`/`align`, each element's fields checked by `each`.
    fn vec(&mut self, f: usize, size: usize, align: usize, each: &dyn Fn(&mut Self, usize)) {
        let p = f as i64 + i32::from_le_bytes(self.b[f..f + 4].try_into().unwrap()) as i64;
        let k = u32le(self.b, f + 4) as usize;
        self.claim(p, k * size, align, |w| {
            for e in 0..k {
                each(w, p as usize + e * size);
            }
        });
    }
}

fn check_layout(b: &[u8], root_size: usize, root_align: usize, fields: &dyn Fn(&mut Walk, usize)) {
    assert!(b.len() >= root_size && (b.len() - root_size).is_multiple_of(root_align), "L1");
    let mut w = Walk { b, lo: 0, hi: b.len() };
    let r = b.len() - root_size;
    w.claim(r as i64, root_size, root_align, |w| fields(w, r));
}

fn check_summary(b: &[u8]) {
    check_layout(b, 120, 8, &|w, r| {
        for o in [84, 92, 100, 108] {
            w.vec(r + o, 1, 1, &|_, _| {});
        }
    });
}

fn check_manifest(b: &[u8]) {
    check_layout(b, 32, 4, &|w, r| {
        w.vec(r, 28, 4, &|w, f| {
            for o in [4, 12, 20] {
                w.vec(f + o, 1, 1, &|_, _| {});
            }
        });
        w.vec(r + 8, 112, 8, &|w, it| {
            for o in [56, 64, 72, 80, 88, 96] {
                w.vec(it + o, 1, 1, &|_, _| {});
            }
            w.vec(it + 104, 32, 1, &|_, _| {});
        });
        w.vec(r + 16, 20, 4, &|w, sk| {
            for o in [4, 12] {
                w.vec(sk + o, 1, 1, &|_, _| {});
            }
        });
        w.vec(r + 24, 1, 1, &|_, _| {});
    });
}

/// Text as §10.3 says: invalid UTF-8 decoded with replacement.
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Returns, per snapshot (by time), `folder/path/name` → bytes.
pub fn read(repo: &Path, passphrase: &str) -> (Vec<HashMap<String, Vec<u8>>>, serde_json::Value) {
    let (snaps, trace) = read_snaps(repo, passphrase);
    (snaps.into_iter().map(|s| s.0).collect(), trace)
}

fn sorted_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    v.sort();
    v
}

fn name_of(p: &Path) -> String {
    p.file_name().unwrap().to_str().unwrap().to_string()
}

/// Each snapshot's extracted files (path → bytes) with its structure.
pub type SnapFiles = Vec<(HashMap<String, Vec<u8>>, Snap)>;

/// Like `read`, with each snapshot's structure too.
pub fn read_snaps(repo: &Path, passphrase: &str) -> (SnapFiles, serde_json::Value) {
    use unicode_normalization::UnicodeNormalization;
    // 1. key slot → master key; the passphrase's NFC bytes enter Argon2id (§4.1)
    let slot_path = sorted_files(&repo.join("keys")).remove(0);
    let slot = std::fs::read(slot_path).unwrap();
    assert_eq!(&slot[..8], b"EXRKEY01");
    assert_eq!(slot[8], 1);
    let (m, t, p) = (u32le(&slot, 9), u32le(&slot, 13), u32le(&slot, 17));
    let salt = &slot[21..53];
    let label_len = u16::from_le_bytes([slot[61], slot[62]]) as usize;
    let header_end = 63 + label_len;
    let nfc: String = passphrase.nfc().collect();
    let mut wrap = [0u8; 32];
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(m, t, p, Some(32)).unwrap())
        .hash_password_into(nfc.as_bytes(), salt, &mut wrap)
        .unwrap();
    let master: [u8; 32] = open(&wrap, &slot[..header_end], &slot[header_end..]).try_into().unwrap();
    let enc = blake3::derive_key("exarch 2026-11 repository v1 encryption key", &master);
    let chunk_key = blake3::derive_key("exarch 2026-11 repository v1 chunk id key", &master);
    let seed = blake3::derive_key("exarch 2026-11 repository v1 chunker seed", &master);
    let seed = u64::from_le_bytes(seed[..8].try_into().unwrap());
    let mut trace = serde_json::json!({
        "passphrase": passphrase,
        "passphrase_nfc_utf8_hex": hex::encode(nfc.as_bytes()),
        "argon2id": {"m_cost_kib": m, "t_cost": t, "p_cost": p, "salt": hex::encode(salt)},
        "wrapping_key": hex::encode(wrap),
        "master_key": hex::encode(master),
        "encryption_key": hex::encode(enc),
        "chunk_id_key": hex::encode(chunk_key),
        "chunker_seed_u64": seed,
        "key_slot_nonce": hex::encode(&slot[header_end..header_end + 24]),
    });
    let mut chunks_seen = serde_json::Map::new();
    let mut nonces = serde_json::Map::new();
    // 2. config
    let cfg_raw = std::fs::read(repo.join("config")).unwrap();
    nonces.insert("config".into(), hex::encode(&cfg_raw[8..32]).into());
    let cfg: serde_json::Value = serde_json::from_slice(&unflag(&open(&enc, b"EXRCONF1", &cfg_raw[8..]))).unwrap();
    assert_eq!(cfg["version"], 1);
    let size = |k: &str| cfg["chunker"][k].as_u64().unwrap() as usize;
    let (cmin, cavg, cmax) = (size("min_size"), size("avg_size"), size("max_size"));
    // 3. index: chunk id → (pack, offset, length, raw length, compression)
    let mut index = HashMap::new();
    for f in sorted_files(&repo.join("index")) {
        let raw = std::fs::read(&f).unwrap();
        nonces.insert(format!("index/{}", name_of(&f)), hex::encode(&raw[8..32]).into());
        let body = unflag(&open(&enc, b"EXRINDX1", &raw[8..]));
        assert_eq!(body[0], 1);
        let (np, ne) = (u32le(&body, 1) as usize, u32le(&body, 5) as usize);
        let packs: Vec<&[u8]> = body[9..9 + 32 * np].chunks(32).collect();
        for e in body[9 + 32 * np..].chunks(49).take(ne) {
            let pack = hex::encode(packs[u32le(e, 32) as usize]);
            index.insert(e[..32].to_vec(), (pack, u32le(e, 36) as usize, u32le(e, 40) as usize, u32le(e, 44), e[48]));
        }
    }
    // pack header nonces: the sealed header ends 12 bytes before the pack's end
    for d in sorted_files(&repo.join("data")) {
        for f in sorted_files(&d) {
            let raw = std::fs::read(&f).unwrap();
            let hlen = u32le(&raw, raw.len() - 12) as usize;
            let h = raw.len() - 12 - hlen;
            nonces.insert(format!("data/{}/header", name_of(&f)), hex::encode(&raw[h..h + 24]).into());
        }
    }
    // 4. snapshots
    let mut snaps = Vec::new();
    let mut snap_trace = Vec::new();
    for f in sorted_files(&repo.join("snapshots")) {
        let raw = std::fs::read(&f).unwrap();
        assert_eq!(&raw[..8], b"EXRSNAP1");
        let slen = u32le(&raw, 8) as usize;
        let (sealed_summary, sealed_manifest) = (&raw[12..12 + slen], &raw[12 + slen..]);
        let summary = unflag(&open(&enc, b"EXRSNAP1\x01", sealed_summary));
        check_summary(&summary);
        let root = summary.len() - 120;
        let time = i64::from_le_bytes(summary[root..root + 8].try_into().unwrap());
        let counts: Vec<u64> = (0..3)
            .map(|k| u64::from_le_bytes(summary[root + 8 + 8 * k..root + 16 + 8 * k].try_into().unwrap()))
            .collect();
        let version = u32le(&summary, root + 32);
        let mailbox = text(&bytes_at(&summary, root + 92));
        // The head (folders, skipped) and the buffers holding items: version 1 has one manifest
        // section for everything; version 2 a page table, a head page and item pages (§10.4).
        let (head, item_pages, paged_trace) = match version {
            1 => {
                assert_eq!(&summary[root + 52..root + 84], blake3::hash(sealed_manifest).as_bytes());
                let m = unflag(&open(&enc, b"EXRSNAP1\x02", sealed_manifest));
                check_manifest(&m);
                (m.clone(), vec![m], None)
            }
            2 => {
                let tlen = u32le(sealed_manifest, 0) as usize;
                let sealed_table = &sealed_manifest[4..4 + tlen];
                assert_eq!(&summary[root + 52..root + 84], blake3::hash(sealed_table).as_bytes());
                let table = unflag(&open(&enc, b"EXRSNAP1\x03", sealed_table));
                let count = u32le(&table, 0) as usize;
                assert!(count >= 2 && table.len() == 4 + 40 * count, "P3");
                let mut at = 4 + tlen;
                let mut pages = Vec::new();
                let mut page_trace = Vec::new();
                for k in 0..count {
                    let e = &table[4 + 40 * k..4 + 40 * (k + 1)];
                    let (len, items) = (u32le(e, 0) as usize, u32le(e, 4) as usize);
                    let sealed = &sealed_manifest[at..at + len];
                    assert_eq!(blake3::hash(sealed).as_bytes(), &e[8..40]);
                    let mut aad = b"EXRSNAP1\x04".to_vec();
                    aad.extend_from_slice(&(k as u32).to_le_bytes());
                    let page = unflag(&open(&enc, &aad, sealed));
                    check_manifest(&page);
                    let r = page.len() - 32;
                    let n = [0, 8, 16, 24].map(|o| vec_at(&page, r + o, 1).1);
                    if k == 0 {
                        assert_eq!((n[1], items), (0, 0), "P1");
                    } else {
                        assert!(n[0] == 0 && n[2] == 0 && n[3] == 0 && n[1] >= 1 && n[1] == items, "P2, P3");
                    }
                    page_trace.push(serde_json::json!({"items": items, "section_blake3": hex::encode(&e[8..40]),
                        "nonce": hex::encode(&sealed[..24])}));
                    pages.push(page);
                    at += len;
                }
                assert_eq!(at, sealed_manifest.len(), "the file ends after the last page");
                let head = pages.remove(0);
                let t = serde_json::json!({"table_section_blake3": blake3::hash(sealed_table).to_hex().to_string(),
                    "table_nonce": hex::encode(&sealed_table[..24]), "pages": page_trace});
                (head, pages, Some(t))
            }
            v => panic!("manifest version {v} is not in the spec"),
        };
        let m = &head;
        let root = m.len() - 32;
        let (fs, nf) = vec_at(m, root, 28);
        let folder = |i: usize| -> (u32, String) {
            let at = fs + 28 * i;
            (u32le(m, at), text(&bytes_at(m, at + 4)))
        };
        // T1, T2: folder 0 is a root; every chain of parents reaches a root
        assert!(nf >= 1 && folder(0).0 == u32::MAX);
        let path_of = |mut i: u32| {
            let mut parts = Vec::new();
            while i != u32::MAX {
                assert!((i as usize) < nf && parts.len() <= nf, "T2");
                let (parent, name) = folder(i as usize);
                if parent != u32::MAX {
                    parts.push(name);
                }
                i = parent;
            }
            parts.reverse();
            parts
        };
        // every item, across pages in order: (page, offset of the item)
        let slots: Vec<(usize, usize)> = item_pages
            .iter()
            .enumerate()
            .flat_map(|(p, page)| {
                let (is, ni) = vec_at(page, page.len() - 32 + 8, 112);
                (0..ni).map(move |k| (p, is + 112 * k))
            })
            .collect();
        let ni = slots.len();
        let id = name_of(&f);
        let mut files = HashMap::new();
        let mut snap = Snap { id: id.clone(), mailbox, folders: (0..nf).map(folder).collect(), items: Vec::new() };
        let mut items_trace = Vec::new();
        let mut total = 0u64;
        for &(p, at) in &slots {
            let m = &item_pages[p][..];
            let size = u64::from_le_bytes(m[at + 8..at + 16].try_into().unwrap()) as usize;
            total += size as u64;
            let mut path = path_of(u32le(m, at + 16));
            path.push(text(&bytes_at(m, at + 56)));
            let (cs, nc) = vec_at(m, at + 104, 32);
            let mut data = Vec::new();
            let mut ids = Vec::new();
            for c in 0..nc {
                let id = &m[cs + 32 * c..cs + 32 * c + 32];
                ids.push(id.to_vec());
                let (pack, off, len, raw_len, comp) = &index[id];
                let packfile = std::fs::read(repo.join("data").join(&pack[..2]).join(pack)).unwrap();
                assert_eq!(&blake3::hash(&packfile).to_hex().to_string(), pack);
                let mut aad = id.to_vec();
                aad.push(*comp);
                aad.extend_from_slice(&raw_len.to_le_bytes());
                let sealed = &packfile[*off..*off + *len];
                let stored = open(&enc, &aad, sealed);
                let chunk = if *comp == 1 {
                    // §2: one frame that carries its content size
                    assert_eq!(zstd::zstd_safe::get_frame_content_size(&stored).ok(), Some(Some(*raw_len as u64)));
                    zstd::stream::decode_all(&stored[..]).unwrap()
                } else {
                    stored
                };
                assert_eq!(chunk.len(), *raw_len as usize);
                assert!(chunk.len() <= cmax);
                assert_eq!(blake3::keyed_hash(&chunk_key, &chunk).as_bytes(), id);
                chunks_seen.insert(
                    hex::encode(id),
                    serde_json::json!({"pack": pack, "offset": off, "length": len, "raw_length": raw_len,
                        "compression": comp, "nonce": hex::encode(&sealed[..24])}),
                );
                data.extend_from_slice(&chunk);
            }
            assert_eq!(data.len(), size);
            assert_eq!(blake3::hash(&data).as_bytes(), &m[at + 24..at + 56]);
            // §7: cutting the item again gives the stored chunks
            let mut pos = 0;
            let recut: Vec<Vec<u8>> = chunk_lengths(&data, seed, cmin, cavg, cmax)
                .into_iter()
                .map(|l| {
                    pos += l;
                    blake3::keyed_hash(&chunk_key, &data[pos - l..pos]).as_bytes().to_vec()
                })
                .collect();
            assert_eq!(recut, ids, "{path:?} is cut where §7 says");
            items_trace
                .push(serde_json::json!({"path": path.join("/"), "blob_hash": hex::encode(&m[at + 24..at + 56])}));
            let name = path.pop().unwrap();
            snap.items.push((u32le(m, at + 16), name.clone(), data.clone()));
            path.push(name);
            files.insert(path.join("/"), data);
        }
        // T4: the summary's counts are the manifest's
        let (_, nskipped) = vec_at(m, root + 16, 20);
        assert_eq!(counts, vec![ni as u64, total, nskipped as u64], "T4");
        let mut t = serde_json::json!({
            "id": id, "time_ms": time,
            "summary_section_blake3": blake3::hash(sealed_summary).to_hex().to_string(),
            "summary_nonce": hex::encode(&sealed_summary[..24]),
            "items": items_trace,
        });
        match paged_trace {
            None => {
                t["manifest_section_blake3"] = blake3::hash(sealed_manifest).to_hex().to_string().into();
                t["manifest_nonce"] = hex::encode(&sealed_manifest[..24]).into();
            }
            Some(p) => {
                t["manifest_version"] = 2.into();
                t["paged_manifest"] = p;
            }
        }
        snap_trace.push((time, t));
        snaps.push((time, files, snap));
    }
    snaps.sort_by_key(|s| s.0);
    snap_trace.sort_by_key(|s| s.0);
    trace["chunks"] = serde_json::Value::Object(chunks_seen);
    trace["nonces"] = serde_json::Value::Object(nonces);
    trace["snapshots"] = serde_json::Value::Array(snap_trace.into_iter().map(|s| s.1).collect());
    trace["config"] = cfg;
    (snaps.into_iter().map(|s| (s.1, s.2)).collect(), trace)
}

/// The file names of SPEC.md §13.1, written from the text alone: `written path` → bytes.
pub fn extract_paths(s: &Snap) -> HashMap<String, Vec<u8>> {
    const NONE: u32 = u32::MAX;
    let ext_of = |n: &str| -> (String, String) {
        match n.rfind('.') {
            Some(i) if i > 0 && n.len() - i <= 16 => (n[..i].to_string(), n[i..].to_string()),
            _ => (n.to_string(), String::new()),
        }
    };
    let cut = |stem: &str, tail: &str| -> String {
        let mut end = 0;
        for (i, c) in stem.char_indices() {
            if i + c.len_utf8() + tail.len() > 200 {
                break;
            }
            end = i + c.len_utf8();
        }
        format!("{}{tail}", &stem[..end])
    };
    let safe = |n: &str| -> String {
        let mut s: String =
            n.chars().map(|c| if "/\\:*?\"<>|".contains(c) || c < ' ' || c == '\u{7f}' { '_' } else { c }).collect();
        let mut tail = 0;
        while s.ends_with('.') || s.ends_with(' ') {
            s.pop();
            tail += 1;
        }
        s.push_str(&"_".repeat(tail));
        let base = s.split('.').next().unwrap().to_ascii_uppercase();
        let devices = ["CON", "PRN", "AUX", "NUL"];
        let numbered = (base.starts_with("COM") || base.starts_with("LPT"))
            && base.len() == 4
            && ('1'..='9').contains(&base.chars().nth(3).unwrap());
        if s.is_empty()
            || devices.contains(&base.as_str())
            || numbered
            || s.to_ascii_lowercase().starts_with(".exarch-tmp")
        {
            s = format!("_{s}");
        }
        if s.len() > 200 {
            let h = blake3::hash(n.as_bytes()).to_hex().to_string();
            let (stem, ext) = ext_of(&s);
            s = cut(&stem, &format!("~{}{ext}", &h[..16]));
        }
        s
    };
    let lower = |n: &str| n.chars().flat_map(char::to_lowercase).collect::<String>();
    let mut taken: HashMap<u32, std::collections::HashSet<String>> = HashMap::new();
    let mut claim = |dir: u32, want: String| -> String {
        let set = taken.entry(dir).or_default();
        if set.insert(lower(&want)) {
            return want;
        }
        let (stem, ext) = ext_of(&want);
        let mut k = 2;
        loop {
            let c = cut(&stem, &format!("~{k}{ext}"));
            if set.insert(lower(&c)) {
                return c;
            }
            k += 1;
        }
    };
    let dir = |f: u32| if s.folders[f as usize].0 == NONE { NONE } else { f };
    let names: Vec<String> =
        s.folders.iter().map(|(p, n)| if *p == NONE { String::new() } else { claim(dir(*p), safe(n)) }).collect();
    let path_of = |mut f: u32| {
        let mut parts = Vec::new();
        while s.folders[f as usize].0 != NONE {
            parts.push(names[f as usize].clone());
            f = s.folders[f as usize].0;
        }
        parts.reverse();
        parts
    };
    let mut out = HashMap::new();
    for (f, n, data) in &s.items {
        let mut p = path_of(*f);
        p.push(claim(dir(*f), safe(n)));
        assert!(out.insert(p.join("/"), data.clone()).is_none(), "two items on one path");
    }
    out
}
