//! A misbehaving server, for tests: one mailbox (or the public folders) gets the answers a broken
//! or hostile server might send, while the others are served normally. What a client must survive
//! without a panic, without waiting for ever, and without sending mail to another host.

use std::io::Read;

/// Ways to misbehave towards one mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hostile {
    /// ExportItems answers one more message than it was asked for.
    ExtraMessages,
    /// Every request gets HTTP 503 with `Retry-After: 100000000` (three years).
    HugeRetryAfter,
    /// FindFolder lists a folder as its own child (public folders).
    FolderLoop,
    /// Every request is redirected (307) to another origin: 127.0.0.2, same port.
    Redirect,
    /// Every request gets an HTML page with a DOCTYPE (a login portal in the way).
    Doctype,
    /// Responses carry bytes that are not UTF-8.
    BadUtf8,
    /// The first item of every ExportItems answer is `HUGE_ITEM_BYTES` long, generated on the fly.
    HugeItem,
}

/// Size of the item `HugeItem` sends: 500 MB.
pub const HUGE_ITEM_BYTES: u64 = 500_000_000;

impl std::str::FromStr for Hostile {
    type Err = String;
    fn from_str(s: &str) -> Result<Hostile, String> {
        Ok(match s {
            "extra-messages" => Hostile::ExtraMessages,
            "huge-retry-after" => Hostile::HugeRetryAfter,
            "folder-loop" => Hostile::FolderLoop,
            "redirect" => Hostile::Redirect,
            "doctype" => Hostile::Doctype,
            "bad-utf8" => Hostile::BadUtf8,
            "huge-item" => Hostile::HugeItem,
            _ => {
                return Err(format!(
                    "`{s}`: use extra-messages, huge-retry-after, folder-loop, redirect, doctype, bad-utf8 or huge-item"
                ))
            }
        })
    }
}

/// A mode and the mailbox it applies to (`KIND@MAILBOX`; `public-folders` for the public store).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub kind: Hostile,
    pub mailbox: String,
}

impl std::str::FromStr for Rule {
    type Err = String;
    fn from_str(s: &str) -> Result<Rule, String> {
        let (kind, mailbox) = s.split_once('@').ok_or_else(|| format!("`{s}`: expected KIND@MAILBOX"))?;
        Ok(Rule { kind: kind.parse()?, mailbox: mailbox.to_string() })
    }
}

/// An HTTP answer: status, headers, body (possibly generated as it is sent).
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Box<dyn Read + Send>,
    pub len: Option<usize>,
}

impl Answer {
    fn text(status: u16, content_type: &str, body: Vec<u8>) -> Answer {
        let len = body.len();
        Answer {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: Box::new(std::io::Cursor::new(body)),
            len: Some(len),
        }
    }
}

const XML: &str = "text/xml; charset=utf-8";

/// The hostile answer to one request, or None to answer normally. `normal` computes the answer a
/// well-behaved server would give; `parent` is the folder a FindFolder asks about.
pub fn answer(
    rule: &Rule,
    op: &str,
    mailbox: &str,
    parent: Option<&str>,
    port: u16,
    normal: &mut dyn FnMut() -> (u16, String),
) -> Option<Answer> {
    if rule.mailbox != mailbox {
        return None;
    }
    match rule.kind {
        Hostile::HugeRetryAfter => {
            let mut a = Answer::text(503, "text/plain", b"Service Unavailable".to_vec());
            a.headers.push(("Retry-After", "100000000".into()));
            Some(a)
        }
        Hostile::Redirect => {
            let mut a = Answer::text(307, "text/plain", Vec::new());
            a.headers.push(("Location", format!("http://127.0.0.2:{port}/EWS/Exchange.asmx")));
            Some(a)
        }
        Hostile::Doctype => Some(Answer::text(
            200,
            "text/html; charset=utf-8",
            b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>Password</form></body></html>"
                .to_vec(),
        )),
        Hostile::BadUtf8 => {
            let (status, text) = normal();
            let mut body = text.into_bytes();
            let at = body.windows(7).position(|w| w == b"NoError").map(|p| p + 2)?;
            body.splice(at..at, [0xff, 0xfe]);
            Some(Answer::text(status, XML, body))
        }
        Hostile::ExtraMessages if op == "ExportItems" => {
            let (status, text) = normal();
            let end_tag = "</m:ExportItemsResponseMessage>";
            let start = text.rfind("<m:ExportItemsResponseMessage")?;
            let end = text.rfind(end_tag)? + end_tag.len();
            let mut out = text.clone();
            out.insert_str(end, &text[start..end]);
            Some(Answer::text(status, XML, out.into_bytes()))
        }
        Hostile::FolderLoop if op == "FindFolder" => {
            let parent = parent?;
            let (status, text) = normal();
            let me = format!(
                "<t:Folder><t:FolderId Id=\"{parent}\" ChangeKey=\"loop\"/><t:ParentFolderId Id=\"{parent}\"/>\
                 <t:FolderClass>IPF.Note</t:FolderClass><t:DisplayName>loop</t:DisplayName></t:Folder>"
            );
            let at = text.find("<t:Folders>")? + "<t:Folders>".len();
            let mut out = text;
            out.insert_str(at, &me);
            Some(Answer::text(status, XML, out.into_bytes()))
        }
        Hostile::HugeItem if op == "ExportItems" => {
            let (status, text) = normal();
            let open = text.find("<m:Data>")? + "<m:Data>".len();
            let close = text[open..].find("</m:Data>")? + open;
            let (head, tail) = (text.as_bytes()[..open].to_vec(), text.as_bytes()[close..].to_vec());
            let b64_len = HUGE_ITEM_BYTES.div_ceil(3) * 4;
            let len = head.len() + b64_len as usize + tail.len();
            let body =
                std::io::Cursor::new(head).chain(HugeBase64::new(HUGE_ITEM_BYTES)).chain(std::io::Cursor::new(tail));
            Some(Answer { status, headers: vec![("Content-Type", XML.into())], body: Box::new(body), len: Some(len) })
        }
        _ => None,
    }
}

/// The bytes of the huge item: position-dependent, so any lost or doubled block shows.
pub fn huge_item_byte(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// Base64 of `huge_item_byte(0..len)`, produced as it is read.
struct HugeBase64 {
    next: u64,
    len: u64,
    out: Vec<u8>,
    at: usize,
}

impl HugeBase64 {
    fn new(len: u64) -> HugeBase64 {
        HugeBase64 { next: 0, len, out: Vec::new(), at: 0 }
    }
}

impl Read for HugeBase64 {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use base64::Engine as _;
        if self.at == self.out.len() {
            if self.next == self.len {
                return Ok(0);
            }
            let n = (self.len - self.next).min(3 * 64 * 1024);
            let raw: Vec<u8> = (self.next..self.next + n).map(huge_item_byte).collect();
            self.next += n;
            self.out = base64::engine::general_purpose::STANDARD.encode(raw).into_bytes();
            self.at = 0;
        }
        let n = buf.len().min(self.out.len() - self.at);
        buf[..n].copy_from_slice(&self.out[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_parse_and_the_huge_item_is_valid_base64() {
        let r: Rule = "huge-item@user1@example.com".parse().unwrap();
        assert_eq!(r, Rule { kind: Hostile::HugeItem, mailbox: "user1@example.com".into() });
        assert!("nonsense@x".parse::<Rule>().is_err());
        let mut b = String::new();
        HugeBase64::new(1_000_000).read_to_string(&mut b).unwrap();
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD.decode(b).unwrap();
        assert_eq!(raw.len(), 1_000_000);
        assert!(raw.iter().enumerate().all(|(i, b)| *b == huge_item_byte(i as u64)));
    }
}
