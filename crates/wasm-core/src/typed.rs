//! Typed payloads, for the host and the guest SDK alike: [`Payload`] (built by
//! codec constructors) and [`Message`] (decoded on demand by the codec its
//! prefix names), over [`MessagePayload`] and the one codec table.
//!
//! The serde codecs are features: `json` (serde_json), `cbor` (ciborium,
//! RFC 8949) and `messagepack` (rmp-serde, structs as maps). Without a
//! feature, its constructor is absent and decoding that codec is a
//! [`DecodeError::NoSerdeCodec`].

use std::any::type_name;
use std::fmt;

use crate::error::PayloadError;
use crate::payload::{Codec, MessagePayload};
use serde::Serialize;
use serde::de::DeserializeOwned;
use thiserror::Error;

/// A payload to send or answer with: `<varint codec><body>`.
///
/// Built with a codec constructor, so the prefix always names a codec of the
/// shared table:
///
/// ```
/// use wasm_core::{Codec, Payload};
///
/// assert_eq!(Payload::raw(b"hi").as_bytes(), b"\x55hi");
/// # #[cfg(feature = "json")] {
/// let p = Payload::json(&serde_json::json!({ "sku": "apple", "qty": 3 })).unwrap();
/// assert_eq!(p.codec(), Codec::Json);
/// assert_eq!(&p.as_bytes()[..2], &[0x80, 0x04]); // 0x0200 as a varint
/// # }
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Payload(MessagePayload);

impl Payload {
    /// A `raw` (0x55) payload with this body.
    #[must_use]
    pub fn raw(body: impl AsRef<[u8]>) -> Self {
        Self::encoded(Codec::Raw, body)
    }

    /// A `raw` payload with no body: the answer to a fire-and-forget message,
    /// which the host discards.
    #[must_use]
    pub fn empty() -> Self {
        Self::raw([])
    }

    /// A payload of `codec` whose body the caller has already encoded (for
    /// example protobuf with prost). No check that the body is valid.
    #[must_use]
    pub fn encoded(codec: Codec, body: impl AsRef<[u8]>) -> Self {
        Self(MessagePayload::encode(codec, body.as_ref()))
    }

    /// `value` as `json` (0x0200), through serde_json.
    ///
    /// # Errors
    /// [`EncodeError`] when serde_json refuses the value (for example a map
    /// with non-string keys).
    #[cfg(feature = "json")]
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, EncodeError> {
        Self::encode(Codec::Json, value)
    }

    /// `value` as `cbor` (0x51, RFC 8949), through ciborium.
    ///
    /// # Errors
    /// [`EncodeError`] when the value's `Serialize` fails.
    #[cfg(feature = "cbor")]
    pub fn cbor<T: Serialize + ?Sized>(value: &T) -> Result<Self, EncodeError> {
        Self::encode(Codec::Cbor, value)
    }

    /// `value` as `messagepack` (0x0201), through rmp-serde (structs as maps,
    /// so fields are named on the wire, as in json).
    ///
    /// # Errors
    /// [`EncodeError`] when the value's `Serialize` fails.
    #[cfg(feature = "messagepack")]
    pub fn messagepack<T: Serialize + ?Sized>(value: &T) -> Result<Self, EncodeError> {
        Self::encode(Codec::MessagePack, value)
    }

    /// `value` in `codec`, for a codec chosen at run time.
    ///
    /// # Errors
    /// [`EncodeError`] when the value does not encode, or when `codec` has no
    /// serde encoder here (`raw`, `protobuf`, `borsh`, `bincode`, or a codec
    /// whose feature is off).
    #[cfg_attr(
        not(any(feature = "json", feature = "cbor", feature = "messagepack")),
        allow(unused_variables, unreachable_code, reason = "with no serde codec enabled every codec is refused")
    )]
    pub fn encode<T: Serialize + ?Sized>(codec: Codec, value: &T) -> Result<Self, EncodeError> {
        let written = match codec {
            #[cfg(feature = "json")]
            Codec::Json => with_prefix(codec, |out| serde_json::to_writer(out, value).map_err(|e| e.to_string())),
            #[cfg(feature = "cbor")]
            Codec::Cbor => with_prefix(codec, |out| ciborium::into_writer(value, out).map_err(|e| e.to_string())),
            #[cfg(feature = "messagepack")]
            Codec::MessagePack => with_prefix(codec, |out| {
                let mut serializer = rmp_serde::Serializer::new(out).with_struct_map();
                value.serialize(&mut serializer).map_err(|e| e.to_string())
            }),
            _ => Err(no_serde_codec(codec)),
        };
        let failed = |reason: String| EncodeError { codec, type_name: type_name::<T>(), reason };
        let bytes = written.map_err(failed)?;
        // The prefix was written just above, so this validation cannot fail.
        MessagePayload::new(bytes, usize::MAX).map(Self).map_err(|(e, _)| failed(e.to_string()))
    }

    /// The codec named by the prefix.
    #[must_use]
    pub fn codec(&self) -> Codec {
        self.0.codec()
    }

    /// The whole payload, prefix included: what the host receives.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The whole payload, prefix included.
    #[must_use]
    pub fn into_bytes(self) -> Vec<u8> {
        self.0.into_bytes()
    }
}

impl From<Payload> for Vec<u8> {
    /// The wire bytes, prefix included.
    fn from(payload: Payload) -> Self {
        payload.into_bytes()
    }
}

impl From<MessagePayload> for Payload {
    fn from(payload: MessagePayload) -> Self {
        Self(payload)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload").field("codec", &self.codec().name()).field("len", &self.as_bytes().len()).finish()
    }
}

/// `codec`'s prefix followed by what `write` writes.
#[cfg(any(feature = "json", feature = "cbor", feature = "messagepack"))]
fn with_prefix(codec: Codec, write: impl FnOnce(&mut Vec<u8>) -> Result<(), String>) -> Result<Vec<u8>, String> {
    let mut bytes = codec.prefix();
    write(&mut bytes)?;
    Ok(bytes)
}

/// Why `codec` cannot be used with serde here.
fn no_serde_codec(codec: Codec) -> String {
    match codec {
        Codec::Json | Codec::Cbor | Codec::MessagePack => {
            format!("the `{}` feature of wasm-core is off", codec.name())
        }
        _ => format!("there is no serde codec for {}; use Payload::encoded and Message::body", codec.name()),
    }
}

/// A value that did not encode.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("cannot encode {type_name} as {codec}: {reason}")]
pub struct EncodeError {
    /// The codec asked for.
    pub codec: Codec,
    /// The Rust type of the value (`std::any::type_name`).
    pub type_name: &'static str,
    /// What the encoder said.
    pub reason: String,
}

/// A payload received: by a component (a message, a request, or a response
/// in a callback) or by the host (a response). Its prefix has been read; the
/// body is decoded on demand.
#[derive(Clone, PartialEq, Eq)]
pub struct Message(MessagePayload);

impl Message {
    /// Reads the prefix of `bytes`.
    ///
    /// # Errors
    /// [`DecodeError::Prefix`] when there is no valid prefix from the table.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        MessagePayload::new(bytes, usize::MAX).map(Self).map_err(|(e, _)| DecodeError::Prefix(e))
    }

    /// The codec named by the prefix.
    #[must_use]
    pub fn codec(&self) -> Codec {
        self.0.codec()
    }

    /// The body after the prefix, in whatever codec [`Message::codec`] names.
    #[must_use]
    pub fn body(&self) -> &[u8] {
        self.0.body()
    }

    /// The whole payload, prefix included (to forward it unchanged, wrap it
    /// with [`Message::into_payload`]).
    #[must_use]
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The same bytes as a [`Payload`], to forward or echo without decoding.
    #[must_use]
    pub fn into_payload(self) -> Payload {
        Payload(self.0)
    }

    /// The body of a `raw` payload as UTF-8 text.
    ///
    /// # Errors
    /// [`DecodeError::WrongCodec`] when the payload is not `raw`;
    /// [`DecodeError::Body`] when the body is not UTF-8.
    pub fn text(&self) -> Result<&str, DecodeError> {
        if self.codec() != Codec::Raw {
            return Err(DecodeError::WrongCodec { expected: Codec::Raw, found: self.codec() });
        }
        std::str::from_utf8(self.body()).map_err(|e| DecodeError::Body {
            codec: Codec::Raw,
            type_name: "str",
            reason: e.to_string(),
        })
    }

    /// The body decoded into `T` with the codec the prefix names (`json`,
    /// `cbor` or `messagepack`), so a component accepts all three without
    /// caring which one a sender chose.
    ///
    /// # Errors
    /// [`DecodeError::Body`] naming the codec, the type and the decoder's
    /// reason when the body does not decode into `T`;
    /// [`DecodeError::NoSerdeCodec`] when the codec has no serde decoder here
    /// (`raw`, `protobuf`, `borsh`, `bincode`, or a feature that is off).
    #[cfg_attr(
        not(any(feature = "json", feature = "cbor", feature = "messagepack")),
        allow(unused_variables, unreachable_code, reason = "with no serde codec enabled every codec is refused")
    )]
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        let decoded: Result<T, String> = match self.codec() {
            #[cfg(feature = "json")]
            Codec::Json => serde_json::from_slice(self.body()).map_err(|e| e.to_string()),
            #[cfg(feature = "cbor")]
            Codec::Cbor => ciborium::from_reader(self.body()).map_err(|e| e.to_string()),
            #[cfg(feature = "messagepack")]
            Codec::MessagePack => rmp_serde::from_slice(self.body()).map_err(|e| e.to_string()),
            codec => return Err(DecodeError::NoSerdeCodec { codec, reason: no_serde_codec(codec) }),
        };
        decoded.map_err(|reason| DecodeError::Body { codec: self.codec(), type_name: type_name::<T>(), reason })
    }

    /// [`Message::decode`], but only from `codec`.
    ///
    /// # Errors
    /// [`DecodeError::WrongCodec`] when the prefix names another codec; then
    /// as [`Message::decode`].
    pub fn decode_as<T: DeserializeOwned>(&self, codec: Codec) -> Result<T, DecodeError> {
        if self.codec() != codec {
            return Err(DecodeError::WrongCodec { expected: codec, found: self.codec() });
        }
        self.decode()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message").field("codec", &self.codec().name()).field("len", &self.as_bytes().len()).finish()
    }
}

/// A payload that did not decode. The text names the codec and what went
/// wrong with the body, for example `json (0x200) body does not decode as
/// shop::Order: missing field `qty` at line 1 column 12`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// No multicodec prefix from the table.
    #[error("payload has no valid multicodec prefix: {0}")]
    Prefix(PayloadError),
    /// A codec other than the one asked for.
    #[error("expected a {expected} payload, got {found}")]
    WrongCodec {
        /// The codec asked for.
        expected: Codec,
        /// The codec the prefix names.
        found: Codec,
    },
    /// A codec without a serde decoder here.
    #[error("cannot decode a {codec} payload into a typed value: {reason}")]
    NoSerdeCodec {
        /// The codec the prefix names.
        codec: Codec,
        /// Why (no such codec in the SDK, or its feature is off).
        reason: String,
    },
    /// The body is not a valid value of the type in this codec.
    #[error("{codec} body does not decode as {type_name}: {reason}")]
    Body {
        /// The codec the prefix names.
        codec: Codec,
        /// The Rust type asked for (`std::any::type_name`).
        type_name: &'static str,
        /// What the decoder said.
        reason: String,
    },
}

// The tests use all three serde codecs (a workspace build enables them).
#[cfg(all(test, feature = "json", feature = "cbor", feature = "messagepack"))]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Order {
        sku: String,
        qty: u32,
    }

    fn order() -> Order {
        Order { sku: "apple".into(), qty: 3 }
    }

    #[test]
    fn every_serde_codec_round_trips_through_the_wire_bytes() {
        for codec in [Codec::Json, Codec::Cbor, Codec::MessagePack] {
            let payload = Payload::encode(codec, &order()).expect("ok");
            assert_eq!(payload.codec(), codec);
            assert_eq!(&payload.as_bytes()[..codec.prefix().len()], codec.prefix().as_slice());
            let message = Message::from_bytes(payload.into_bytes()).expect("ok");
            assert_eq!(message.codec(), codec);
            assert_eq!(message.decode::<Order>().expect("ok"), order());
            assert_eq!(message.decode_as::<Order>(codec).expect("ok"), order());
        }
        assert_eq!(Payload::json(&order()).expect("ok").as_bytes(), b"\x80\x04{\"sku\":\"apple\",\"qty\":3}");
    }

    #[test]
    fn a_body_that_does_not_decode_names_codec_type_and_reason() {
        let message =
            Message::from_bytes(Payload::json(&serde_json::json!({ "sku": "apple" })).expect("ok").into_bytes())
                .expect("ok");
        let error = message.decode::<Order>().expect_err("an error");
        let text = error.to_string();
        assert!(text.starts_with("json (0x200) body does not decode as "), "{text}");
        assert!(text.contains("Order") && text.contains("missing field `qty`"), "{text}");

        let garbage = Message::from_bytes(Payload::encoded(Codec::Cbor, [0xff, 0x00]).into_bytes()).expect("ok");
        assert!(matches!(garbage.decode::<Order>(), Err(DecodeError::Body { codec: Codec::Cbor, .. })));
        let garbage = Message::from_bytes(Payload::encoded(Codec::MessagePack, [0xc1]).into_bytes()).expect("ok");
        assert!(matches!(garbage.decode::<Order>(), Err(DecodeError::Body { codec: Codec::MessagePack, .. })));
    }

    #[test]
    fn refuses_a_wrong_or_unsupported_codec_and_a_missing_prefix() {
        let raw = Message::from_bytes(Payload::raw("hi").into_bytes()).expect("ok");
        assert_eq!(raw.text().expect("ok"), "hi");
        assert!(matches!(raw.decode::<Order>(), Err(DecodeError::NoSerdeCodec { codec: Codec::Raw, .. })));
        let json = Message::from_bytes(Payload::json(&1).expect("ok").into_bytes()).expect("ok");
        assert_eq!(
            json.decode_as::<u32>(Codec::Cbor),
            Err(DecodeError::WrongCodec { expected: Codec::Cbor, found: Codec::Json })
        );
        assert!(matches!(json.text(), Err(DecodeError::WrongCodec { .. })));
        assert!(matches!(Message::from_bytes(vec![]), Err(DecodeError::Prefix(PayloadError::Empty))));
        assert!(matches!(Message::from_bytes(vec![0x01, 2]), Err(DecodeError::Prefix(PayloadError::UnknownCodec(1)))));
        let error = Payload::encode(Codec::Protobuf, &1).expect_err("an error");
        assert_eq!(error.codec, Codec::Protobuf);
        assert!(error.to_string().contains("Payload::encoded"), "{error}");
    }

    #[test]
    fn forwarding_keeps_the_bytes() {
        let payload = Payload::cbor(&order()).expect("ok");
        let bytes = payload.as_bytes().to_vec();
        assert_eq!(Message::from_bytes(bytes.clone()).expect("ok").into_payload().into_bytes(), bytes);
        assert_eq!(Payload::empty().as_bytes(), &[0x55]);
    }
}
