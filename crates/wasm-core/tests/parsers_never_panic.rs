//! Property tests: the payload decoder and the manifest parser take any input
//! without panicking, and what they accept is consistent.

use proptest::prelude::*;
use wasm_core::{Codec, ComponentManifest, MessagePayload, PayloadError, decode_prefix};

/// Arbitrary bytes, biased towards varint-looking prefixes.
fn payload_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        (proptest::collection::vec(0x80u8..=0xff, 0..12), proptest::collection::vec(any::<u8>(), 0..8)).prop_map(
            |(mut continuation, rest)| {
                continuation.extend(rest);
                continuation
            }
        ),
    ]
}

/// Manifest-shaped TOML with arbitrary keys and values, plus raw noise.
fn manifest_text() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("id".to_owned()),
        Just("wasm".to_owned()),
        Just("capacity".to_owned()),
        Just("send".to_owned()),
        Just("accept".to_owned()),
        Just("messages_per_second".to_owned()),
        "[a-z_]{1,12}",
    ];
    let value = prop_oneof![
        "\"[ -~]{0,20}\"",
        any::<i64>().prop_map(|n| n.to_string()),
        Just("[\"a\", \"b-*\"]".to_owned()),
        Just("true".to_owned()),
        "[ -~]{0,10}",
    ];
    let section = prop_oneof![
        Just("component"),
        Just("limits"),
        Just("mailbox"),
        Just("requests"),
        Just("capabilities"),
        Just("rate"),
        Just("codecs"),
        Just("restart"),
        Just("nonsense"),
    ];
    let line = (section, key, value).prop_map(|(s, k, v)| format!("[{s}]\n{k} = {v}\n"));
    prop_oneof![proptest::collection::vec(line, 0..8).prop_map(|lines| lines.concat()), "\\PC{0,200}",]
}

proptest! {
    #[test]
    fn payload_decoder_never_panics_and_agrees_with_the_encoder(bytes in payload_bytes()) {
        match decode_prefix(&bytes) {
            Ok((codec, at)) => {
                let prefix = codec.prefix();
                prop_assert_eq!(&bytes[..at], prefix.as_slice());
                let payload = MessagePayload::new(bytes.clone(), usize::MAX).map_err(|(e, _)| e);
                prop_assert_eq!(payload.map(|p| p.body().to_vec()), Ok(bytes[at..].to_vec()));
            }
            Err(PayloadError::Empty) => prop_assert!(bytes.is_empty()),
            Err(PayloadError::UnknownCodec(code)) => prop_assert!(Codec::from_code(code).is_none()),
            Err(_) => {}
        }
    }

    #[test]
    fn manifest_parser_never_panics(text in manifest_text()) {
        let _ = toml::from_str::<ComponentManifest>(&text);
    }
}
