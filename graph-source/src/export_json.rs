//! Reads an exportItems reply (`{"value": [{"itemId", "changeKey", "data", "error"}, ...]}`) as it
//! arrives. Each item's `data` (base64, up to the size of the largest item Exchange holds) goes
//! straight into an `exarch_item_data::Decoder` — memory for small items, a temporary file for
//! large ones — and is handed on as soon as its object closes; nothing else may be large: other
//! strings are capped at 64 KiB and nesting at 64 levels, so no server can make this buffer
//! without bound.

use crate::error::GraphError;
use exarch_item_data::{Decoder, ItemData, ItemProblem, Limits};
use std::io::BufRead;

/// One item's result.
#[derive(Debug)]
pub enum Exported {
    Ok {
        id: String,
        change_key: String,
        data: ItemData,
    },
    /// The service could not export this item: its reason.
    Failed {
        id: String,
        reason: String,
    },
}

const MAX_STRING: usize = 64 * 1024;
const MAX_DEPTH: usize = 64;
const WHAT: &str = "exportItems";

struct Lexer<R> {
    r: R,
    pos: u64,
}

fn bad(pos: u64, m: impl std::fmt::Display) -> GraphError {
    GraphError::protocol(WHAT, format!("at byte {pos}: {m}"))
}

impl<R: BufRead> Lexer<R> {
    fn peek(&mut self) -> Result<Option<u8>, GraphError> {
        loop {
            let buf =
                self.r.fill_buf().map_err(|e| GraphError::Transport(format!("{WHAT}: reading the reply: {e}")))?;
            match buf.first() {
                None => return Ok(None),
                Some(b' ' | b'\t' | b'\r' | b'\n') => {
                    self.r.consume(1);
                    self.pos += 1;
                }
                Some(&b) => return Ok(Some(b)),
            }
        }
    }

    fn next(&mut self) -> Result<u8, GraphError> {
        let b = self.peek()?.ok_or_else(|| bad(self.pos, "the reply ends early (truncated)"))?;
        self.r.consume(1);
        self.pos += 1;
        Ok(b)
    }

    /// The next raw byte, whitespace included (inside strings).
    fn raw(&mut self) -> Result<u8, GraphError> {
        let buf = self.r.fill_buf().map_err(|e| GraphError::Transport(format!("{WHAT}: reading the reply: {e}")))?;
        let b = *buf.first().ok_or_else(|| bad(self.pos, "the reply ends early (truncated)"))?;
        self.r.consume(1);
        self.pos += 1;
        Ok(b)
    }

    fn expect(&mut self, want: u8) -> Result<(), GraphError> {
        let b = self.next()?;
        if b != want {
            return Err(bad(self.pos, format!("expected {:?}, found {:?}", want as char, b as char)));
        }
        Ok(())
    }

    /// A string (the opening quote already read), unescaped, at most `MAX_STRING` bytes.
    fn string(&mut self) -> Result<String, GraphError> {
        let mut out: Vec<u8> = Vec::new();
        loop {
            let b = self.raw()?;
            match b {
                b'"' => break,
                b'\\' => {
                    let e = self.raw()?;
                    match e {
                        b'"' | b'\\' | b'/' => out.push(e),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let mut c = self.hex4()?;
                            if (0xd800..0xdc00).contains(&c) {
                                if self.raw()? != b'\\' || self.raw()? != b'u' {
                                    return Err(bad(self.pos, "a lone surrogate escape"));
                                }
                                let lo = self.hex4()?;
                                c = 0x10000 + ((c - 0xd800) << 10) + (lo.wrapping_sub(0xdc00) & 0x3ff);
                            }
                            let ch = char::from_u32(c).unwrap_or('\u{fffd}');
                            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                        }
                        _ => return Err(bad(self.pos, "a bad escape in a string")),
                    }
                }
                _ => out.push(b),
            }
            if out.len() > MAX_STRING {
                return Err(bad(self.pos, "a string longer than 64 KiB"));
            }
        }
        String::from_utf8(out).map_err(|_| bad(self.pos, "a string that is not UTF-8"))
    }

    fn hex4(&mut self) -> Result<u32, GraphError> {
        let mut v = 0u32;
        for _ in 0..4 {
            let d = (self.raw()? as char).to_digit(16).ok_or_else(|| bad(self.pos, "a bad \\u escape"))?;
            v = v * 16 + d;
        }
        Ok(v)
    }

    /// An item's base64 `data` string (the opening quote already read) into a decoder. Base64 has
    /// no characters JSON must escape; `\/` is the one escape a JSON writer may still use.
    fn data(&mut self, limits: &Limits) -> Result<Result<ItemData, ItemProblem>, GraphError> {
        let mut d = Decoder::new();
        let mut chunk: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            let buf =
                self.r.fill_buf().map_err(|e| GraphError::Transport(format!("{WHAT}: reading the reply: {e}")))?;
            if buf.is_empty() {
                return Err(bad(self.pos, "the reply ends inside an item's data (truncated)"));
            }
            let end = buf.iter().position(|c| *c == b'"' || *c == b'\\').unwrap_or(buf.len());
            chunk.extend_from_slice(&buf[..end]);
            let stop = buf.get(end).copied();
            self.r.consume(end);
            self.pos += end as u64;
            if chunk.len() >= 64 * 1024 {
                d.push(&chunk, limits);
                chunk.clear();
            }
            match stop {
                Some(b'"') => {
                    self.raw()?;
                    d.push(&chunk, limits);
                    return Ok(d.finish(limits));
                }
                Some(_) => {
                    self.raw()?;
                    match self.raw()? {
                        b'/' => chunk.push(b'/'),
                        _ => return Err(bad(self.pos, "an escape other than \\/ in base64 data")),
                    }
                }
                None => {}
            }
        }
    }

    /// Passes over one value; with `keep`, copies its text (at most `MAX_STRING` bytes).
    fn skip(&mut self, mut keep: Option<&mut Vec<u8>>) -> Result<(), GraphError> {
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        let mut first = true;
        loop {
            let b = if in_string || !first && depth == 0 { self.raw()? } else { self.next()? };
            first = false;
            if let Some(k) = keep.as_deref_mut() {
                k.push(b);
                if k.len() > MAX_STRING {
                    return Err(bad(self.pos, "a value longer than 64 KiB"));
                }
            }
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => {
                        in_string = false;
                        if depth == 0 {
                            return Ok(());
                        }
                    }
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(bad(self.pos, "values nested too deep"));
                    }
                }
                b'}' | b']' => {
                    depth = depth.checked_sub(1).ok_or_else(|| bad(self.pos, "unbalanced brackets"))?;
                    if depth == 0 {
                        return Ok(());
                    }
                }
                _ if depth == 0 => {
                    // A scalar: it ends before the next separator.
                    loop {
                        match self.r.fill_buf().ok().and_then(|b| b.first().copied()) {
                            Some(c) if !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n') => {
                                self.raw()?;
                                if let Some(k) = keep.as_deref_mut() {
                                    k.push(c);
                                }
                            }
                            _ => return Ok(()),
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// Reads a 200 reply to exportItems, handing each item to `on` as its object closes. Returns how
/// many results it handed on.
pub fn read_export<R: BufRead>(
    input: R,
    limits: &Limits,
    on: &mut dyn FnMut(Exported) -> Result<(), GraphError>,
) -> Result<usize, GraphError> {
    let mut lx = Lexer { r: input, pos: 0 };
    let mut count = 0usize;
    let mut saw_value = false;
    lx.expect(b'{')?;
    if lx.peek()? == Some(b'}') {
        lx.next()?;
        return Err(bad(lx.pos, "no \"value\" array"));
    }
    loop {
        lx.expect(b'"')?;
        let key = lx.string()?;
        lx.expect(b':')?;
        if key == "value" {
            saw_value = true;
            lx.expect(b'[')?;
            if lx.peek()? == Some(b']') {
                lx.next()?;
            } else {
                loop {
                    on(item(&mut lx, limits)?)?;
                    count += 1;
                    match lx.next()? {
                        b',' => continue,
                        b']' => break,
                        c => return Err(bad(lx.pos, format!("expected , or ] after an item, found {:?}", c as char))),
                    }
                }
            }
        } else {
            lx.skip(None)?;
        }
        match lx.next()? {
            b',' => continue,
            b'}' => break,
            c => return Err(bad(lx.pos, format!("expected , or }} found {:?}", c as char))),
        }
    }
    if !saw_value {
        return Err(bad(lx.pos, "no \"value\" array"));
    }
    Ok(count)
}

fn item<R: BufRead>(lx: &mut Lexer<R>, limits: &Limits) -> Result<Exported, GraphError> {
    lx.expect(b'{')?;
    let (mut id, mut change_key) = (String::new(), String::new());
    let mut data: Option<Result<ItemData, ItemProblem>> = None;
    let mut error: Option<String> = None;
    if lx.peek()? == Some(b'}') {
        lx.next()?;
        return Err(bad(lx.pos, "an empty result object"));
    }
    loop {
        lx.expect(b'"')?;
        let key = lx.string()?;
        lx.expect(b':')?;
        let is_string = lx.peek()? == Some(b'"');
        match key.as_str() {
            "itemId" | "changeKey" if is_string => {
                lx.next()?;
                let s = lx.string()?;
                if key == "itemId" {
                    id = s
                } else {
                    change_key = s
                }
            }
            "data" if is_string => {
                lx.next()?;
                data = Some(lx.data(limits)?);
            }
            "error" if lx.peek()? == Some(b'{') => {
                let mut raw = Vec::new();
                lx.skip(Some(&mut raw))?;
                let v: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
                let (code, message) = (v["code"].as_str().unwrap_or(""), v["message"].as_str().unwrap_or(""));
                error = Some(match (code.is_empty(), message.is_empty()) {
                    (false, false) => format!("{code}: {message}"),
                    (false, true) => code.to_string(),
                    (true, false) => message.to_string(),
                    (true, true) => "the service reported an error without a code".into(),
                });
            }
            _ => lx.skip(None)?,
        }
        match lx.next()? {
            b',' => continue,
            b'}' => break,
            c => return Err(bad(lx.pos, format!("expected , or }} in an item, found {:?}", c as char))),
        }
    }
    if id.is_empty() {
        return Err(bad(lx.pos, "a result without an itemId"));
    }
    Ok(match (error, data) {
        (Some(reason), _) => Exported::Failed { id, reason },
        (None, Some(Ok(data))) => Exported::Ok { id, change_key, data },
        (None, Some(Err(ItemProblem::TooLarge(n)))) => {
            Exported::Failed { id, reason: format!("the item is larger than the limit ({n} bytes or more)") }
        }
        (None, Some(Err(ItemProblem::Broken(why)))) => Exported::Failed { id, reason: why },
        (None, None) => Exported::Failed { id, reason: "the service returned neither data nor an error".into() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &str, limits: &Limits) -> Result<Vec<Exported>, GraphError> {
        let mut out = Vec::new();
        read_export(std::io::BufReader::with_capacity(7, s.as_bytes()), limits, &mut |e| {
            out.push(e);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn items_errors_and_unknown_fields_come_out_in_order() {
        let s = r#"{"@odata.context":"x","value":[
            {"itemId":"A","changeKey":"k1","data":"aGk\/","extra":{"n":[1,2,{"a":"}"}]}},
            {"itemId":"B","error":{"@odata.type":"microsoft.graph.mailTipsError","code":"ErrorItemCorrupt","message":"It broke."}},
            {"itemId":"C","changeKey":"k3","data":""}
        ],"@odata.nextLink":null}"#;
        let out = read(s, &Limits::default()).expect("parses");
        assert_eq!(out.len(), 3);
        match &out[0] {
            Exported::Ok { id, change_key, data } => {
                assert_eq!((id.as_str(), change_key.as_str()), ("A", "k1"));
                let want = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, "aGk/").unwrap();
                assert_eq!(data, &ItemData::from_vec(want));
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(&out[1], Exported::Failed { id, reason } if id == "B" && reason == "ErrorItemCorrupt: It broke.")
        );
        assert!(matches!(&out[2], Exported::Ok { data, .. } if data.len == 0));
    }

    #[test]
    fn big_items_spill_and_oversized_ones_are_refused_not_held() {
        let blob: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &blob);
        let s = format!(r#"{{"value":[{{"itemId":"A","changeKey":"k","data":"{b64}"}}]}}"#);
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits { max_item_bytes: 1 << 20, in_memory: 1000, spill_dir: dir.path().into() };
        let out = read(&s, &limits).unwrap();
        match &out[0] {
            Exported::Ok { data, .. } => {
                assert!(data.in_memory().is_none(), "spilled to a file");
                assert_eq!(data, &ItemData::from_vec(blob.clone()));
            }
            other => panic!("{other:?}"),
        }
        let small = Limits { max_item_bytes: 1000, ..limits };
        assert!(matches!(&read(&s, &small).unwrap()[0], Exported::Failed { reason, .. } if reason.contains("larger")));
    }

    #[test]
    fn damage_is_an_error_never_a_panic() {
        for s in [
            "",
            "{",
            "[]",
            r#"{"value":[{"itemId":"A","data":"abc"#,
            r#"{"value":[{"data":"aGk="}]}"#,
            r#"{"value":[{"itemId":"A","data":"a\nb"}]}"#,
            r#"{"other":1}"#,
            &format!(r#"{{"value":[{{"itemId":"{}"}}]}}"#, "x".repeat(70_000)),
            &format!(r#"{{"value":[{}"#, "[".repeat(100)),
        ] {
            assert!(read(s, &Limits::default()).is_err(), "{:.60}", s);
        }
    }
}
