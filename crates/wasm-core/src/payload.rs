//! Self-describing payloads: a multicodec prefix, then the body.
//!
//! Format: `<unsigned-varint code><body>`, with codes from the official
//! multicodec table (<https://github.com/multiformats/multicodec>,
//! `table.csv`) and unsigned varints as in
//! <https://github.com/multiformats/unsigned-varint> (LEB128, minimal, at
//! most 9 bytes). Codecs the table lacks get codes from its private-use
//! range `0x300000..=0x3fffff`.

use std::fmt;

use crate::error::PayloadError;

/// Default cap on a payload, prefix included: 1 MiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A codec this host recognises in a multicodec prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Codec {
    /// `raw`, 0x55: opaque bytes.
    Raw,
    /// `cbor`, 0x51 (RFC 8949).
    Cbor,
    /// `protobuf`, 0x50.
    Protobuf,
    /// `json`, 0x0200 (RFC 8259).
    Json,
    /// `messagepack`, 0x0201.
    MessagePack,
    /// Borsh: not in the table; private-use code 0x300001 (this project's choice).
    Borsh,
    /// bincode: not in the table; private-use code 0x300002 (this project's choice).
    Bincode,
}

impl Codec {
    /// Every codec, in code order.
    pub const ALL: [Codec; 7] =
        [Codec::Protobuf, Codec::Cbor, Codec::Raw, Codec::Json, Codec::MessagePack, Codec::Borsh, Codec::Bincode];

    /// The multicodec code.
    #[must_use]
    pub const fn code(self) -> u64 {
        match self {
            Codec::Raw => 0x55,
            Codec::Cbor => 0x51,
            Codec::Protobuf => 0x50,
            Codec::Json => 0x0200,
            Codec::MessagePack => 0x0201,
            Codec::Borsh => 0x30_0001,
            Codec::Bincode => 0x30_0002,
        }
    }

    /// The codec with this multicodec code, if this host knows it.
    #[must_use]
    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The table's name (`raw`, `json`, ...); also the manifest spelling.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Codec::Raw => "raw",
            Codec::Cbor => "cbor",
            Codec::Protobuf => "protobuf",
            Codec::Json => "json",
            Codec::MessagePack => "messagepack",
            Codec::Borsh => "borsh",
            Codec::Bincode => "bincode",
        }
    }

    /// The codec with this manifest name.
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// The varint prefix for this codec (1 to 4 bytes).
    #[must_use]
    pub fn prefix(self) -> Vec<u8> {
        let mut buf = unsigned_varint::encode::u64_buffer();
        unsigned_varint::encode::u64(self.code(), &mut buf).to_vec()
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:x})", self.name(), self.code())
    }
}

/// Reads the multicodec prefix of `bytes`: the codec and where the body starts.
///
/// # Errors
/// [`PayloadError::Empty`], [`PayloadError::TruncatedVarint`],
/// [`PayloadError::MalformedVarint`] or [`PayloadError::UnknownCodec`].
/// Never panics, whatever the bytes.
pub fn decode_prefix(bytes: &[u8]) -> Result<(Codec, usize), PayloadError> {
    if bytes.is_empty() {
        return Err(PayloadError::Empty);
    }
    let (code, rest) = unsigned_varint::decode::u64(bytes).map_err(|e| match e {
        unsigned_varint::decode::Error::Insufficient => PayloadError::TruncatedVarint,
        unsigned_varint::decode::Error::Overflow => PayloadError::MalformedVarint("overflow"),
        unsigned_varint::decode::Error::NotMinimal => PayloadError::MalformedVarint("not minimal"),
        _ => PayloadError::MalformedVarint("invalid"),
    })?;
    let codec = Codec::from_code(code).ok_or(PayloadError::UnknownCodec(code))?;
    Ok((codec, bytes.len() - rest.len()))
}

/// A validated payload: a known multicodec prefix and a body, at most
/// `max_bytes` long in all.
///
/// ```
/// use wasm_core::{Codec, MessagePayload};
/// let p = MessagePayload::encode(Codec::Json, br#"{"n":1}"#);
/// assert_eq!(p.codec(), Codec::Json);
/// assert_eq!(p.body(), br#"{"n":1}"#);
/// assert_eq!(&p.as_bytes()[..2], &[0x80, 0x04]); // 0x0200 as a varint
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct MessagePayload {
    bytes: Vec<u8>,
    codec: Codec,
    body_at: usize,
}

impl MessagePayload {
    /// Validates `bytes` (prefix and size, cap `max_bytes`).
    ///
    /// # Errors
    /// Any [`PayloadError`] of [`decode_prefix`], or
    /// [`PayloadError::TooLarge`]; the bytes are handed back with it.
    pub fn new(bytes: Vec<u8>, max_bytes: usize) -> Result<Self, (PayloadError, Vec<u8>)> {
        if bytes.len() > max_bytes {
            let len = bytes.len();
            return Err((PayloadError::TooLarge { len, max: max_bytes }, bytes));
        }
        match decode_prefix(&bytes) {
            Ok((codec, body_at)) => Ok(Self { bytes, codec, body_at }),
            Err(e) => Err((e, bytes)),
        }
    }

    /// Builds a payload from a codec and a body.
    #[must_use]
    pub fn encode(codec: Codec, body: &[u8]) -> Self {
        // One allocation of the final size: the prefix goes through a stack
        // buffer, not a `Vec` of its own that the body would then regrow.
        let mut buf = unsigned_varint::encode::u64_buffer();
        let prefix = unsigned_varint::encode::u64(codec.code(), &mut buf);
        let body_at = prefix.len();
        let mut bytes = Vec::with_capacity(body_at + body.len());
        bytes.extend_from_slice(prefix);
        bytes.extend_from_slice(body);
        Self { bytes, codec, body_at }
    }

    /// The codec named by the prefix.
    #[must_use]
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The body after the prefix.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        &self.bytes[self.body_at..]
    }

    /// The whole payload, prefix included.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The whole payload, prefix included.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }
}

impl fmt::Debug for MessagePayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessagePayload").field("codec", &self.codec).field("len", &self.bytes.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn official_codes_round_trip() {
        for codec in Codec::ALL {
            let p = MessagePayload::encode(codec, b"x");
            let again = MessagePayload::new(p.clone().into_bytes(), 64).map_err(|(e, _)| e);
            assert_eq!(again, Ok(p));
            assert_eq!(Codec::from_name(codec.name()), Some(codec));
        }
        assert_eq!(Codec::Raw.prefix(), vec![0x55]);
        assert_eq!(Codec::Json.prefix(), vec![0x80, 0x04]);
    }

    #[test]
    fn refuses_each_malformed_prefix() {
        assert_eq!(decode_prefix(&[]), Err(PayloadError::Empty));
        assert_eq!(decode_prefix(&[0x80]), Err(PayloadError::TruncatedVarint));
        assert_eq!(decode_prefix(&[0x80, 0x00]), Err(PayloadError::MalformedVarint("not minimal")));
        assert_eq!(decode_prefix(&[0x01, 1, 2]), Err(PayloadError::UnknownCodec(1)));
        assert!(matches!(MessagePayload::new(vec![0x55; 10], 9), Err((PayloadError::TooLarge { len: 10, max: 9 }, _))));
    }

    proptest! {
        #[test]
        fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok((codec, at)) = decode_prefix(&bytes) {
                prop_assert!(at >= 1 && at <= bytes.len());
                let prefix = codec.prefix();
                prop_assert_eq!(&bytes[..at], prefix.as_slice());
            }
        }
    }
}
