//! The file names `extract` writes: every item gets a path of its own, safe on Linux, macOS and
//! Windows, chosen by rules simple enough that another reader (SPEC.md §13.1) arrives at the
//! same paths.
//!
//! Each folder and item name is made safe on its own (forbidden characters, trailing dots and
//! spaces, Windows device names, the temporary files' prefix, length), then made unique in its
//! directory, ignoring case: folders first in manifest order, then items in manifest order; a name
//! already taken gets `~2`, `~3`, ... before its extension. Nothing is ever written over.

use std::collections::{HashMap, HashSet};

/// Longest component written, in UTF-8 bytes (file systems allow 255; this leaves room).
pub const MAX_COMPONENT: usize = 200;
/// Where partial files wait until they verified (at the top of the target directory).
pub const TEMP_PREFIX: &str = ".exarch-tmp";
/// The parent index of a root folder.
const NO_PARENT: u32 = u32::MAX;

const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8", "COM9", "LPT1", "LPT2",
    "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// The extension used by the length and uniqueness rules: from the last `.` on, if that `.` is
/// not the first character and the extension is at most 16 bytes; else empty.
fn split_ext(s: &str) -> (&str, &str) {
    match s.rfind('.') {
        Some(i) if i > 0 && s.len() - i <= 16 => (&s[..i], &s[i..]),
        _ => (s, ""),
    }
}

/// `stem` cut at a character boundary so that `stem + tail` fits in `MAX_COMPONENT` bytes.
fn fit(stem: &str, tail: &str) -> String {
    let room = MAX_COMPONENT.saturating_sub(tail.len());
    let mut cut = stem.len().min(room);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{tail}", &stem[..cut])
}

/// One stored name made safe as a single path component (rules 1–4 of SPEC.md §13.1).
pub fn safe_component(name: &str) -> String {
    // 1. characters no file system takes
    let mut s: String = name
        .chars()
        .map(|c| match c {
            '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|' => '_',
            c if (c as u32) < 0x20 || c as u32 == 0x7f => '_',
            c => c,
        })
        .collect();
    // 2. trailing dots and spaces, which Windows drops (this also covers "." and "..")
    let kept = s.trim_end_matches(['.', ' ']).len();
    let dropped = s.len() - kept;
    s.truncate(kept);
    s.extend(std::iter::repeat_n('_', dropped));
    // 3. empty names, Windows device names (with any extension), and our temporary directory
    let base = s.split('.').next().unwrap_or("");
    if s.is_empty()
        || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(base))
        || starts_with_ignoring_ascii_case(&s, TEMP_PREFIX)
    {
        s.insert(0, '_');
    }
    // 4. length: cut, and keep the name distinct with a hash of the original
    if s.len() > MAX_COMPONENT {
        let hash = blake3::hash(name.as_bytes()).to_hex();
        let (stem, ext) = split_ext(&s);
        s = fit(stem, &format!("~{}{ext}", &hash[..16]));
    }
    s
}

/// The key names are compared by: each character lowercased (Unicode's mapping, no context).
fn key(s: &str) -> String {
    s.chars().flat_map(char::to_lowercase).collect()
}

/// Where each folder and item goes, relative to the target directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Per folder: its directory's components (empty for a root folder).
    pub folder_dirs: Vec<Vec<String>>,
    /// Per item: its file name in its folder's directory.
    pub item_names: Vec<String>,
}

/// Names every folder (`(parent, name)`, parent `u32::MAX` for a root) and item (`(folder,
/// name)`) of a manifest, in manifest order.
pub fn plan(folders: &[(u32, &str)], items: &[(u32, &str)]) -> Plan {
    // A folder's directory: a root folder is the target itself.
    const ROOT: u32 = NO_PARENT;
    let dir_of = |f: u32| -> u32 {
        match folders.get(f as usize) {
            Some((p, _)) if *p != NO_PARENT => f,
            _ => ROOT,
        }
    };
    let mut taken: HashMap<u32, HashSet<String>> = HashMap::new();
    let mut claim = |dir: u32, wanted: String| -> String {
        let set = taken.entry(dir).or_default();
        if set.insert(key(&wanted)) {
            return wanted;
        }
        let (stem, ext) = split_ext(&wanted);
        let (stem, ext) = (stem.to_string(), ext.to_string());
        (2u64..).map(|n| fit(&stem, &format!("~{n}{ext}"))).find(|c| set.insert(key(c))).expect("some suffix is free")
    };
    let mut names: Vec<String> = Vec::with_capacity(folders.len());
    for (parent, name) in folders {
        names.push(if *parent == NO_PARENT { String::new() } else { claim(dir_of(*parent), safe_component(name)) });
    }
    let item_names = items.iter().map(|(f, name)| claim(dir_of(*f), safe_component(name))).collect();
    // Directory paths: walk up to a root (a cycle or a broken parent ends the walk).
    let folder_dirs = (0..folders.len())
        .map(|i| {
            let mut parts = Vec::new();
            let mut cur = i as u32;
            let mut guard = 0;
            while let Some((p, _)) = folders.get(cur as usize) {
                if *p == NO_PARENT || guard > folders.len() {
                    break;
                }
                parts.push(names[cur as usize].clone());
                cur = *p;
                guard += 1;
            }
            parts.reverse();
            parts
        })
        .collect();
    Plan { folder_dirs, item_names }
}

fn starts_with_ignoring_ascii_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// The temporary name of item `index` while it is written, in its own directory: no stored name
/// can become it (rule 3 puts `_` in front of every name that starts with the prefix), and the
/// rename into place stays within one directory (a rename across directories takes a lock of the
/// whole file system on Linux, which parallel writers would queue on).
pub fn temp_name(index: usize) -> String {
    format!("{TEMP_PREFIX}.{index}.partial")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_names_are_made_safe() {
        assert_eq!(safe_component("a:b"), "a_b");
        assert_eq!(safe_component("re: \"x\"?"), "re_ _x__");
        assert_eq!(safe_component(".."), "__");
        assert_eq!(safe_component("."), "_");
        assert_eq!(safe_component(""), "_");
        assert_eq!(safe_component("notes. "), "notes__");
        assert_eq!(safe_component("CON"), "_CON");
        assert_eq!(safe_component("com1.txt"), "_com1.txt");
        assert_eq!(safe_component("COM10.txt"), "COM10.txt");
        assert_eq!(safe_component(".exarch-tmp"), "_.exarch-tmp");
        assert_eq!(safe_component(".EXARCH-TMP.7.partial"), "_.EXARCH-TMP.7.partial");
        assert_eq!(safe_component(".exarch-tm"), ".exarch-tm");
        assert_eq!(safe_component("tab\there"), "tab_here");
        let long = "é".repeat(130) + ".eml"; // 264 bytes
        let s = safe_component(&long);
        assert!(s.len() <= MAX_COMPONENT && s.ends_with(".eml") && s.contains('~'), "{s}");
        assert_ne!(s, safe_component(&("é".repeat(131) + ".eml")), "distinct long names stay distinct");
    }

    #[test]
    fn collisions_get_stable_suffixes() {
        let folders = [(NO_PARENT, ""), (0, "Inbox"), (0, "inbox"), (1, "x")];
        let items = [(1, "a:b"), (1, "a_b"), (1, "A_B"), (0, "Inbox"), (1, "a_b~2"), (3, "m.eml"), (3, "m.eml")];
        let p = plan(&folders, &items);
        assert_eq!(
            p.folder_dirs,
            vec![
                vec![],
                vec!["Inbox".to_string()],
                vec!["inbox~2".to_string()],
                vec!["Inbox".to_string(), "x".to_string()]
            ]
        );
        assert_eq!(p.item_names, vec!["a_b", "a_b~2", "A_B~3", "Inbox~3", "a_b~2~2", "m.eml", "m~2.eml"]);
        // the same input always gives the same names
        assert_eq!(plan(&folders, &items), p);
    }
}
