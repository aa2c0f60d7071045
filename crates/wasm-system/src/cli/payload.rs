//! Payloads as `run` shows them: the codec of the multicodec prefix and a
//! short preview of the body.

use std::fmt::Write;

use wasm_core::{Codec, decode_prefix};

/// How much of a body a preview shows, in bytes.
pub(crate) const PREVIEW_BYTES: usize = 64;

/// The codec of `payload`'s multicodec prefix (`None` when the prefix is not
/// one this host knows) and a preview of the body after it (of all of
/// `payload` when there is no known prefix); see [`preview`].
pub(crate) fn describe(payload: &[u8]) -> (Option<Codec>, String) {
    match decode_prefix(payload) {
        Ok((codec, at)) => (Some(codec), preview(&payload[at..])),
        Err(_) => (None, preview(payload)),
    }
}

/// The first [`PREVIEW_BYTES`] of `body`: as text when they are UTF-8 (a
/// character cut at the end is left out) without control characters other
/// than tab, line feed and carriage return, which are escaped (`\t`, `\n`,
/// `\r`); otherwise `hex:` and the bytes in lowercase hex. An `…` at the end
/// says that the body is longer.
pub(crate) fn preview(body: &[u8]) -> String {
    let head = &body[..body.len().min(PREVIEW_BYTES)];
    let text = match std::str::from_utf8(head) {
        Ok(text) => Some(text),
        // Only a character cut at the end of `head`: the text before it.
        Err(error) if error.error_len().is_none() => std::str::from_utf8(&head[..error.valid_up_to()]).ok(),
        Err(_) => None,
    };
    let mut shown = match text {
        Some(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) => {
            text.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
        }
        _ => {
            let mut hex = String::with_capacity(4 + 2 * head.len());
            hex.push_str("hex:");
            for byte in head {
                let _ = write!(hex, "{byte:02x}");
            }
            hex
        }
    };
    if body.len() > head.len() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use wasm_core::MessagePayload;

    use super::*;

    #[test]
    fn text_is_shown_as_text_with_control_characters_escaped() {
        assert_eq!(preview(b"hello"), "hello");
        assert_eq!(preview(b"a\tb\nc"), "a\\tb\\nc");
        assert_eq!(preview("grüße".as_bytes()), "grüße");
        assert_eq!(preview(b""), "");
    }

    #[test]
    fn binary_is_shown_as_hex() {
        assert_eq!(preview(&[0x19, 0x03, 0xe8]), "hex:1903e8");
        assert_eq!(preview(b"nul\0byte"), "hex:6e756c0062797465");
    }

    #[test]
    fn long_bodies_are_cut_at_64_bytes_and_marked() {
        let long = "x".repeat(100);
        assert_eq!(preview(long.as_bytes()), format!("{}…", "x".repeat(64)));
        // A two-byte character across the cut is left out, not turned into hex.
        let across = format!("{}é", "y".repeat(63));
        assert_eq!(preview(across.as_bytes()), format!("{}…", "y".repeat(63)));
    }

    #[test]
    fn describe_reads_the_codec_prefix() {
        let json = MessagePayload::encode(Codec::Json, br#"{"n":1}"#).into_bytes();
        assert_eq!(describe(&json), (Some(Codec::Json), r#"{"n":1}"#.to_owned()));
        assert_eq!(describe(&[0x7f, 0x01]), (None, "hex:7f01".to_owned()));
    }
}
