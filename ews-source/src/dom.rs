//! A small element tree for EWS responses: local names only (prefixes dropped), attributes, text.
//!
//! Responses to sync and resolve calls are small; this keeps their parsing obvious. (ExportItems
//! responses, which carry megabytes of base64, get a streaming parser of their own.)

use quick_xml::events::Event;
use quick_xml::Reader;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
    pub children: Vec<Element>,
}

/// Malformed XML, with where it went wrong.
#[derive(Debug, thiserror::Error)]
#[error("malformed XML at byte {position}: {message}")]
pub struct XmlError {
    pub position: u64,
    pub message: String,
    /// The document simply ended early (a cut-off body: worth asking again), as opposed to bytes
    /// that are not XML at all or not EWS's (an HTML page, invalid UTF-8: asking again is pointless).
    pub truncated: bool,
}

/// Deepest element nesting accepted; EWS responses nest a dozen levels.
pub const MAX_DEPTH: usize = 256;

pub(crate) fn local(name: &[u8]) -> String {
    let s = String::from_utf8_lossy(name);
    match s.rsplit_once(':') {
        Some((_, l)) => l.to_string(),
        None => s.into_owned(),
    }
}

/// Parses a whole document; returns its root element.
pub fn parse(xml: &[u8]) -> Result<Element, XmlError> {
    let mut reader = Reader::from_reader(xml);
    let mut stack: Vec<Element> = vec![Element::default()];
    let end = xml.len() as u64;
    let err = |r: &Reader<&[u8]>, m: String| XmlError {
        position: r.buffer_position(),
        message: m,
        truncated: r.buffer_position() >= end,
    };
    loop {
        let ev = reader.read_event().map_err(|e| err(&reader, e.to_string()))?;
        match ev {
            Event::DocType(_) => {
                return Err(XmlError {
                    position: reader.buffer_position(),
                    message: "a DOCTYPE: this is not an EWS response (an HTML page from a proxy or login portal?)"
                        .into(),
                    truncated: false,
                })
            }
            Event::Start(ref s) | Event::Empty(ref s) => {
                let is_empty = matches!(ev, Event::Empty(_));
                if stack.len() > MAX_DEPTH {
                    return Err(err(&reader, format!("elements nested deeper than {MAX_DEPTH}")));
                }
                let mut el = Element { name: local(s.name().as_ref()), ..Element::default() };
                for a in s.attributes() {
                    let a = a.map_err(|e| err(&reader, e.to_string()))?;
                    let v = a.unescape_value().map_err(|e| err(&reader, e.to_string()))?.into_owned();
                    el.attrs.push((local(a.key.as_ref()), v));
                }
                if is_empty {
                    stack.last_mut().expect("root").children.push(el);
                } else {
                    stack.push(el);
                }
            }
            Event::End(_) => {
                if stack.len() < 2 {
                    return Err(err(&reader, "unbalanced end tag".into()));
                }
                let el = stack.pop().expect("two on the stack");
                stack.last_mut().expect("parent").children.push(el);
            }
            Event::Text(t) => {
                let t = t.unescape().map_err(|e| err(&reader, e.to_string()))?;
                stack.last_mut().expect("open element").text.push_str(&t);
            }
            Event::CData(c) => {
                stack.last_mut().expect("open element").text.push_str(&String::from_utf8_lossy(&c));
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(XmlError {
            position: reader.buffer_position(),
            message: format!("{} element(s) not closed (truncated body?)", stack.len() - 1),
            truncated: true,
        });
    }
    let mut doc = stack.pop().expect("document");
    match doc.children.len() {
        1 => Ok(doc.children.pop().expect("one")),
        0 => Err(XmlError { position: 0, message: "empty document".into(), truncated: xml.is_empty() }),
        _ => Err(XmlError { position: 0, message: "more than one root element".into(), truncated: false }),
    }
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }

    /// The first descendant (depth-first) with this name.
    pub fn find(&self, name: &str) -> Option<&Element> {
        for c in &self.children {
            if c.name == name {
                return Some(c);
            }
            if let Some(f) = c.find(name) {
                return Some(f);
            }
        }
        None
    }

    /// Text of the child at this path of names, if present.
    pub fn text_at(&self, path: &[&str]) -> Option<&str> {
        let mut cur = self;
        for p in path {
            cur = cur.child(p)?;
        }
        Some(cur.text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects_truncation() {
        let x = br#"<?xml version="1.0"?><s:Envelope xmlns:s="x"><s:Body><m:A Id="1&amp;2">hi &lt;there&gt;</m:A><m:B/></s:Body></s:Envelope>"#;
        let d = parse(x).unwrap();
        assert_eq!(d.name, "Envelope");
        let a = d.find("A").unwrap();
        assert_eq!(a.attr("Id"), Some("1&2"));
        assert_eq!(a.text, "hi <there>");
        assert!(d.find("B").is_some());
        assert!(parse(&x[..x.len() - 20]).is_err());
        assert!(parse(b"").is_err());
        assert!(parse(b"<a><b></a>").is_err());
        // a cut-off body is worth asking for again; an HTML page, bad UTF-8 or deep nesting is not
        assert!(parse(&x[..x.len() - 20]).unwrap_err().truncated);
        assert!(!parse(b"<!DOCTYPE html><html><body>Sign in</body></html>").unwrap_err().truncated);
        assert!(!parse(b"<a>\xff\xfe</a>").unwrap_err().truncated);
        let deep = "<a>".repeat(100_000);
        assert!(!parse(deep.as_bytes()).unwrap_err().truncated);
    }
}
