//! Streaming ExportItems responses with memory that does not grow with the item.
//!
//! An exported item is one base64 text node, and an item can be hundreds of megabytes. An XML
//! parser would gather that text in memory (several copies of it, in fact), so the bytes of each
//! `Data` element never reach the parser: `Divert` sits between the HTTP body and quick-xml, hands
//! the parser every byte except the content of `Data` elements, and decodes that content as it
//! passes into an `ItemData` — in memory up to `Limits::in_memory`, then in an unnamed temporary
//! file — hashing it on the way. Items beyond `Limits::max_item_bytes` are counted but not kept,
//! and reported as too large. Outside `Data`, text and tags are bounded too, so no server can make
//! the parser buffer without limit.

use crate::dom::XmlError;
use crate::response::{unexpected, EwsError, Exported, Status};
use exarch_item_data::{Decoder, ItemProblem};
pub use exarch_item_data::{ItemData, Limits, DEFAULT_MAX_ITEM_BYTES};
use std::cell::RefCell;
use std::io::{BufRead, Read};
use std::rc::Rc;

/// Longest text between two tags outside `Data`, and longest tag: EWS needs a few kilobytes.
const MAX_TEXT: usize = 1024 * 1024;
const MAX_TAG: usize = 64 * 1024;

/// What the diverting reader shares with the parser. The reader runs ahead of the parser, so
/// finished items wait in order; the reader pauses at each `Data` start tag, so at most one does.
#[derive(Default)]
struct Shared {
    current: Option<Decoder>,
    /// `Data` elements that closed and the parser has not reached the end of yet, in order.
    done: std::collections::VecDeque<Result<ItemData, ItemProblem>>,
    eof: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Text,
    /// Inside `<...>`; `quote` is the open attribute quote, if any.
    Tag {
        quote: Option<u8>,
    },
    Data,
}

/// Passes a response through to the parser, minus the content of `Data` elements.
struct Divert<R> {
    inner: R,
    shared: Rc<RefCell<Shared>>,
    limits: Limits,
    mode: Mode,
    run: usize,
    tag: Vec<u8>,
}

/// A tag just closed (its text between `<` and `>`): is it a `Data` start tag (not self-closing)?
fn opens_data(t: &[u8]) -> bool {
    {
        if t.first().is_some_and(|c| matches!(c, b'/' | b'?' | b'!')) || t.last() == Some(&b'/') {
            return false;
        }
        let name_end = t.iter().position(|c| c.is_ascii_whitespace() || *c == b'/').unwrap_or(t.len());
        let name = &t[..name_end];
        let local = name.rsplit(|c| *c == b':').next().unwrap_or(name);
        local == b"Data"
    }
}

impl<R: BufRead> Read for Divert<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let too_long = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
        loop {
            let input = self.inner.fill_buf()?;
            if input.is_empty() {
                self.shared.borrow_mut().eof = true;
                return Ok(0);
            }
            let mut n_in = 0;
            let mut n_out = 0;
            while n_in < input.len() && n_out < out.len() {
                let b = input[n_in];
                match self.mode {
                    Mode::Data => {
                        // Everything up to the next '<' is the item's base64.
                        let end = input[n_in..].iter().position(|c| *c == b'<').map_or(input.len(), |p| n_in + p);
                        let mut sh = self.shared.borrow_mut();
                        if let Some(d) = sh.current.as_mut() {
                            d.push(&input[n_in..end], &self.limits);
                        }
                        n_in = end;
                        if end < input.len() {
                            if let Some(d) = sh.current.take() {
                                let d = d.finish(&self.limits);
                                sh.done.push_back(d);
                            }
                            self.mode = Mode::Text;
                            self.run = 0;
                        }
                        continue;
                    }
                    Mode::Text => {
                        if b == b'<' {
                            self.mode = Mode::Tag { quote: None };
                            self.tag.clear();
                            self.run = 0;
                        } else {
                            self.run += 1;
                            if self.run > MAX_TEXT {
                                return Err(too_long("text between tags longer than 1 MiB"));
                            }
                        }
                    }
                    Mode::Tag { quote } => {
                        if self.tag.len() >= MAX_TAG {
                            return Err(too_long("a tag longer than 64 KiB"));
                        }
                        match (quote, b) {
                            (Some(q), c) if c == q => self.mode = Mode::Tag { quote: None },
                            (Some(_), c) => self.tag.push(c),
                            (None, b'"' | b'\'') => self.mode = Mode::Tag { quote: Some(b) },
                            (None, b'>') => {
                                self.mode = Mode::Text;
                                if opens_data(&self.tag) {
                                    self.mode = Mode::Data;
                                    self.shared.borrow_mut().current = Some(Decoder::new());
                                    // Let the parser catch up before the content is taken in.
                                    out[n_out] = b;
                                    n_out += 1;
                                    n_in += 1;
                                    break;
                                }
                            }
                            (None, c) => self.tag.push(c),
                        }
                    }
                }
                out[n_out] = b;
                n_out += 1;
                n_in += 1;
            }
            self.inner.consume(n_in);
            if n_out > 0 {
                return Ok(n_out);
            }
        }
    }
}

/// Reads a successful (HTTP 200) ExportItems response as it arrives, handing each item to
/// `on_item` as soon as its element closes. Returns how many items it handed over. A body that
/// ends early is a truncated `Xml` error after the items that did arrive complete (items always
/// come whole or not at all); bytes that are not an EWS response are an error that is not.
pub fn stream_export_items<R: BufRead>(
    input: R,
    limits: &Limits,
    on_item: &mut dyn FnMut(Exported) -> Result<(), EwsError>,
) -> Result<usize, EwsError> {
    use quick_xml::events::Event;
    let op = "ExportItems";
    let shared = Rc::new(RefCell::new(Shared::default()));
    let divert = Divert {
        inner: input,
        shared: shared.clone(),
        limits: limits.clone(),
        mode: Mode::Text,
        run: 0,
        tag: Vec::new(),
    };
    let mut reader = quick_xml::Reader::from_reader(std::io::BufReader::with_capacity(64 * 1024, divert));
    let mut buf = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let (mut in_msg, mut finished, mut count, mut has_data) = (false, false, 0usize, false);
    let (mut class, mut id, mut code, mut message) = (String::new(), String::new(), String::new(), String::new());
    let xml_err = |pos: u64, m: String, sh: &Rc<RefCell<Shared>>| {
        EwsError::Xml(XmlError { position: pos, message: m, truncated: sh.borrow().eof })
    };
    loop {
        buf.clear();
        let ev =
            reader.read_event_into(&mut buf).map_err(|e| xml_err(reader.buffer_position(), e.to_string(), &shared))?;
        let attr = |s: &quick_xml::events::BytesStart, name: &str| -> Option<String> {
            s.attributes()
                .flatten()
                .find(|a| crate::dom::local(a.key.as_ref()) == name)
                .and_then(|a| a.unescape_value().ok().map(|v| v.into_owned()))
        };
        match ev {
            Event::DocType(_) => {
                return Err(EwsError::Xml(XmlError {
                    position: reader.buffer_position(),
                    message: "a DOCTYPE: this is not an EWS response (an HTML page from a proxy or login portal?)"
                        .into(),
                    truncated: false,
                }))
            }
            Event::Start(ref s) | Event::Empty(ref s) => {
                let name = crate::dom::local(s.name().as_ref());
                match name.as_str() {
                    "Fault" => return Err(unexpected(op, "SOAP fault in a successful response")),
                    "ExportItemsResponseMessage" => {
                        in_msg = true;
                        class = attr(s, "ResponseClass").unwrap_or_default();
                        id.clear();
                        code.clear();
                        message.clear();
                        has_data = false;
                    }
                    "ItemId" if in_msg => id = attr(s, "Id").unwrap_or_default(),
                    "Data" if in_msg && matches!(ev, Event::Start(_)) => has_data = true,
                    _ => {}
                }
                if matches!(ev, Event::Start(_)) {
                    if path.len() >= crate::dom::MAX_DEPTH {
                        return Err(xml_err(reader.buffer_position(), "elements nested too deep".into(), &shared));
                    }
                    path.push(name);
                }
            }
            Event::Text(t) if in_msg => {
                let t = t.unescape().map_err(|e| xml_err(reader.buffer_position(), e.to_string(), &shared))?;
                match path.last().map(String::as_str) {
                    Some("ResponseCode") => code.push_str(&t),
                    Some("MessageText") => message.push_str(&t),
                    _ => {}
                }
            }
            Event::End(_) => {
                let name = path
                    .pop()
                    .ok_or_else(|| xml_err(reader.buffer_position(), "unbalanced end tag".into(), &shared))?;
                match name.as_str() {
                    "ExportItemsResponseMessage" => {
                        in_msg = false;
                        count += 1;
                        let status =
                            Status { class: std::mem::take(&mut class), code: code.clone(), message: message.clone() };
                        let data = if has_data { shared.borrow_mut().done.pop_front() } else { None };
                        if status.is_error() {
                            on_item(Exported::Failed { status })?;
                            continue;
                        }
                        if id.is_empty() {
                            return Err(unexpected(op, "item without ItemId"));
                        }
                        match data.unwrap_or_else(|| Ok(ItemData::from_vec(Vec::new()))) {
                            Ok(data) => on_item(Exported::Ok { id: std::mem::take(&mut id), data })?,
                            Err(ItemProblem::TooLarge(len)) => on_item(Exported::Failed {
                                status: Status {
                                    class: "Error".into(),
                                    code: "ExarchItemTooLarge".into(),
                                    message: format!(
                                        "the item is at least {} MB, more than the cap of {} MB (--max-item-size); \
                                         raise the cap to back it up",
                                        len / 1_000_000,
                                        limits.max_item_bytes / 1_000_000
                                    ),
                                },
                            })?,
                            Err(ItemProblem::Broken(why)) => return Err(unexpected(op, format!("item {id}: {why}"))),
                        }
                    }
                    "ResponseMessages" => finished = true,
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !finished || !path.is_empty() {
        return Err(EwsError::Xml(XmlError {
            position: reader.buffer_position(),
            message: format!("{} element(s) not closed after {count} item(s) (truncated body?)", path.len()),
            truncated: true,
        }));
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn response(items: &[(&str, &str)]) -> String {
        let msgs: String = items
            .iter()
            .map(|(id, b64)| {
                format!(
                    "<m:ExportItemsResponseMessage ResponseClass=\"Success\"><m:ResponseCode>NoError</m:ResponseCode>\
                     <m:ItemId Id=\"{id}\" ChangeKey=\"k\"/><m:Data>{b64}</m:Data></m:ExportItemsResponseMessage>"
                )
            })
            .collect();
        format!(
            "<?xml version=\"1.0\"?><s:Envelope xmlns:s=\"s\"><s:Body><m:ExportItemsResponse xmlns:m=\"m\">\
             <m:ResponseMessages>{msgs}</m:ResponseMessages></m:ExportItemsResponse></s:Body></s:Envelope>"
        )
    }

    fn collect(xml: &[u8], limits: &Limits) -> Result<Vec<Exported>, EwsError> {
        let mut got = Vec::new();
        // a tiny read buffer, so every boundary case between reads is met
        stream_export_items(std::io::BufReader::with_capacity(7, xml), limits, &mut |e| {
            got.push(e);
            Ok(())
        })?;
        Ok(got)
    }

    #[test]
    fn items_stream_through_memory_and_temporary_files() {
        let big = vec![7u8; 300_000];
        let b64 = base64::engine::general_purpose::STANDARD.encode(&big);
        // base64 broken over lines, as some servers send it
        let wrapped: String =
            b64.as_bytes().chunks(76).map(|c| std::str::from_utf8(c).unwrap().to_string() + "\r\n").collect();
        let xml = response(&[("A1", "aGVsbG8="), ("A2", &wrapped), ("A3", "")]);
        let limits = Limits { in_memory: 100_000, ..Limits::default() };
        let got = collect(xml.as_bytes(), &limits).unwrap();
        assert_eq!(got.len(), 3);
        let Exported::Ok { id, data } = &got[0] else { panic!() };
        assert_eq!((id.as_str(), data.in_memory()), ("A1", Some(&b"hello"[..])));
        let mut got = got.into_iter();
        got.next();
        let Some(Exported::Ok { data, .. }) = got.next() else { panic!() };
        assert!(data.in_memory().is_none(), "a large item goes to a temporary file");
        assert_eq!(data.blake3, *blake3::hash(&big).as_bytes());
        assert_eq!(data.into_vec().unwrap(), big);
        let Some(Exported::Ok { data, .. }) = got.next() else { panic!() };
        assert_eq!(data.len, 0);
    }

    #[test]
    fn each_item_keeps_its_own_content_whatever_the_read_sizes() {
        let contents: Vec<Vec<u8>> = (0..60).map(|i| vec![i as u8; 10 + i * 37]).collect();
        let b64: Vec<String> = contents.iter().map(|c| base64::engine::general_purpose::STANDARD.encode(c)).collect();
        let ids: Vec<String> = (0..60).map(|i| format!("I{i}")).collect();
        let pairs: Vec<(&str, &str)> = ids.iter().map(String::as_str).zip(b64.iter().map(String::as_str)).collect();
        let xml = response(&pairs);
        for cap in [1, 7, 4096, 1 << 20] {
            let mut got = Vec::new();
            stream_export_items(std::io::BufReader::with_capacity(cap, xml.as_bytes()), &Limits::default(), &mut |e| {
                got.push(e);
                Ok(())
            })
            .unwrap();
            assert_eq!(got.len(), 60);
            for (i, e) in got.into_iter().enumerate() {
                let Exported::Ok { id, data } = e else { panic!() };
                assert_eq!(id, ids[i]);
                assert_eq!(data.into_vec().unwrap(), contents[i], "read size {cap}, item {i}");
            }
        }
    }

    #[test]
    fn too_large_items_are_reported_and_the_rest_arrive() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(vec![1u8; 200_000]);
        let xml = response(&[("A1", &b64), ("A2", "aGk=")]);
        let limits = Limits { max_item_bytes: 100_000, in_memory: 10_000, ..Limits::default() };
        let got = collect(xml.as_bytes(), &limits).unwrap();
        assert!(matches!(&got[0], Exported::Failed { status } if status.code == "ExarchItemTooLarge"));
        assert!(matches!(&got[1], Exported::Ok { id, .. } if id == "A2"));
    }

    #[test]
    fn hostile_bodies_fail_cleanly() {
        let limits = Limits::default();
        let ok = response(&[("A1", "aGVsbG8=")]);
        // cut off: truncated (worth retrying)
        let e = collect(&ok.as_bytes()[..ok.len() - 30], &limits).unwrap_err();
        assert!(matches!(&e, EwsError::Xml(x) if x.truncated), "{e}");
        // an HTML page, invalid UTF-8, endless text, bad base64: not truncated
        for bad in [
            b"<!DOCTYPE html><html><body>Sign in</body></html>".to_vec(),
            ok.replace("NoError", "No\u{0}Error")
                .into_bytes()
                .into_iter()
                .map(|b| if b == 0 { 0xff } else { b })
                .collect(),
            format!("<a>{}</a>", " ".repeat(2 * MAX_TEXT)).into_bytes(),
            response(&[("A1", "!!!!")]).into_bytes(),
        ] {
            let e = collect(&bad, &limits).unwrap_err();
            assert!(!matches!(&e, EwsError::Xml(x) if x.truncated), "{e}");
        }
        // quotes in attributes may hold '>' and even "<Data>"
        let tricky = ok.replace("ChangeKey=\"k\"", "ChangeKey=\"a>b<m:Data>\"");
        assert_eq!(collect(tricky.as_bytes(), &limits).unwrap().len(), 1);
    }
}
