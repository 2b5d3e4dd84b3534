//! What bytes of a passphrase enter Argon2id (SPEC §4.1), so that one passphrase opens a
//! repository however it was supplied: typed on a terminal, read from a file written on Windows
//! (`\r\n`, a byte-order mark), or printed by a secret store's command, and whichever Unicode
//! normal form the keyboard or editor produced ("é" as one code point or as "e" + U+0301).

use std::borrow::Cow;
use unicode_normalization::{is_nfc, UnicodeNormalization};

/// The passphrase text in a file or a command's output: the first line, without its line ending
/// (`\n` or `\r\n`, or a lone `\r` ending the text) and without a leading UTF-8 byte-order mark.
/// Nothing else is trimmed: spaces and tabs are part of the passphrase.
pub fn first_line(text: &str) -> &str {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let line = match text.find('\n') {
        Some(i) => &text[..i],
        None => text,
    };
    line.strip_suffix('\r').unwrap_or(line)
}

/// The bytes Argon2id hashes: the passphrase's Unicode Normalization Form C when it is UTF-8,
/// its bytes unchanged otherwise.
pub fn kdf_input(passphrase: &[u8]) -> Cow<'_, [u8]> {
    match std::str::from_utf8(passphrase) {
        Ok(s) if !is_nfc(s) => Cow::Owned(s.nfc().collect::<String>().into_bytes()),
        _ => Cow::Borrowed(passphrase),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_strips_only_the_line_ending_and_a_bom() {
        assert_eq!(first_line("secret\n"), "secret");
        assert_eq!(first_line("secret\r\n"), "secret");
        assert_eq!(first_line("secret\r"), "secret");
        assert_eq!(first_line("secret"), "secret");
        assert_eq!(first_line(" two words \t\r\nsecond line\n"), " two words \t");
        assert_eq!(first_line("\u{feff}Grüße\r\n"), "Grüße");
        assert_eq!(first_line("a\rb\n"), "a\rb");
        assert_eq!(first_line("\n"), "");
    }

    #[test]
    fn composed_and_decomposed_forms_hash_alike() {
        let composed = "Gr\u{fc}\u{df}e caf\u{e9}";
        let decomposed = "Gru\u{308}\u{df}e cafe\u{301}";
        assert_ne!(composed.as_bytes(), decomposed.as_bytes());
        assert_eq!(kdf_input(decomposed.as_bytes()), kdf_input(composed.as_bytes()));
        assert_eq!(kdf_input(composed.as_bytes()).as_ref(), composed.as_bytes());
        // not UTF-8: used as is
        assert_eq!(kdf_input(&[0xff, 0x41]).as_ref(), &[0xff, 0x41]);
        // NFC, not NFKC: compatibility characters stay distinct
        assert_eq!(kdf_input("\u{fb01}".as_bytes()).as_ref(), "\u{fb01}".as_bytes());
    }
}
