//! A test guest written only against the SDK (`wasm-guest`), the way the SDK's
//! docs tell authors to: typed payloads, `Requests` for per-request state, no
//! wit-bindgen and no multicodec bytes of its own.
//!
//! One wasm, two roles; the test starts it as `shop` and as `client`:
//!
//! - **shop**: a payload in a serde codec is an [`Order`], decoded in whatever
//!   codec it came in; a request's answer is a [`Receipt`] in the same codec.
//!   The raw command `sleep:MS` answers after MS ms; `panic:TEXT` panics
//!   with TEXT (a trap: the host restarts the instance with fresh state).
//! - **client**: raw commands (from the host), answered with raw text:
//!   - `order:CODEC:SKU:QTY` requests the order from `shop` in CODEC, with
//!     `CODEC` as the request's state; `send:CODEC:SKU:QTY` sends it
//!     fire-and-forget;
//!   - `bad:CODEC` requests with a body that is valid CODEC but not an order;
//!   - `slow:MS` requests `sleep:1000` from `shop` with an MS ms timeout;
//!   - `cancel` requests `sleep:1000` and cancels it at once;
//!   - `report` answers a json object: every settled callback as a line
//!     (`ok|err STATE TEXT`) and how many requests are still recorded.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use wasm_guest::{Callback, Codec, Component, HandlerError, Message, Payload, Requests};

/// What a client orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Stock-keeping unit.
    pub sku: String,
    /// How many.
    pub qty: u32,
}

/// What the shop answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Receipt {
    /// The order's sku.
    pub sku: String,
    /// The order's quantity.
    pub qty: u32,
    /// Price in cents: 125 per item.
    pub total_cents: u64,
}

/// What `report` answers for the client.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Report {
    /// One line per callback, in arrival order.
    pub callbacks: Vec<String>,
    /// Requests still recorded in the per-request state.
    pub pending: usize,
    /// Orders the shop received, as `SENDER CODEC SKU xQTY`.
    pub received: Vec<String>,
}

/// Both roles; the state of whichever this instance plays.
#[derive(Default)]
pub struct Typed {
    /// Client: the codec each request was sent in.
    requests: Requests<String>,
    report: Report,
}

fn codec(name: &str) -> Result<Codec, HandlerError> {
    Codec::from_name(name).ok_or_else(|| HandlerError::new(1, format!("no codec named {name:?}")))
}

impl Typed {
    fn client(&mut self, command: &str) -> Result<Payload, HandlerError> {
        let mut parts = command.split(':');
        let verb = parts.next().unwrap_or_default();
        let mut arg = || parts.next().unwrap_or_default();
        let id = match verb {
            "order" | "send" => {
                let codec_name = arg();
                let order = Order { sku: arg().to_owned(), qty: arg().parse().unwrap_or(1) };
                let payload = Payload::encode(codec(codec_name)?, &order)?;
                if verb == "send" {
                    wasm_guest::send("shop", &payload)?;
                    return Ok(Payload::raw("sent"));
                }
                self.requests.request("shop", &payload, Duration::from_secs(5), codec_name.to_owned())?
            }
            "bad" => {
                let codec_name = arg();
                let payload = Payload::encode(codec(codec_name)?, &("not", "an", "order"))?;
                self.requests.request("shop", &payload, Duration::from_secs(5), format!("bad-{codec_name}"))?
            }
            "slow" => {
                let ms = arg().parse().unwrap_or(10);
                self.requests.request("shop", &Payload::raw("sleep:1000"), Duration::from_millis(ms), "slow".into())?
            }
            "cancel" => {
                let id = self.requests.request(
                    "shop",
                    &Payload::raw("sleep:1000"),
                    Duration::from_secs(5),
                    "cancel".into(),
                )?;
                wasm_guest::cancel(&id)?;
                id
            }
            "report" => {
                self.report.pending = self.requests.len();
                return Ok(Payload::json(&self.report)?);
            }
            _ => return Err(HandlerError::new(2, format!("unknown command {command:?}"))),
        };
        Ok(Payload::raw(id.as_str()))
    }

    fn shop(&mut self, sender: &str, message: &Message) -> Result<Payload, HandlerError> {
        let order: Order = message.decode()?;
        self.report.received.push(format!("{sender} {} {} x{}", message.codec().name(), order.sku, order.qty));
        let receipt = Receipt { total_cents: u64::from(order.qty) * 125, sku: order.sku, qty: order.qty };
        Ok(Payload::encode(message.codec(), &receipt)?)
    }
}

impl Component for Typed {
    fn handle_message(&mut self, sender: &str, message: Message) -> Result<Payload, HandlerError> {
        if message.codec() != Codec::Raw {
            return self.shop(sender, &message);
        }
        let command = message.text()?;
        if let Some(ms) = command.strip_prefix("sleep:") {
            std::thread::sleep(Duration::from_millis(ms.parse().unwrap_or(0)));
            return Ok(Payload::raw("slept"));
        }
        if let Some(text) = command.strip_prefix("panic:") {
            panic!("{text}");
        }
        let command = command.to_owned();
        self.client(&command)
    }

    fn handle_callback(&mut self, callback: Callback) -> Result<(), HandlerError> {
        let (state, outcome) = self.requests.settle(callback);
        let state = state.unwrap_or_else(|| "unrecorded".into());
        let line = match outcome {
            Ok(response) => match codec(&state).and_then(|c| Ok(response.decode_as::<Receipt>(c)?)) {
                Ok(receipt) => format!("ok {state} {} x{} = {}", receipt.sku, receipt.qty, receipt.total_cents),
                Err(e) => format!("ok {state} undecodable: {}", e.message),
            },
            Err(error) => format!("err {state} {error}"),
        };
        self.report.callbacks.push(line);
        Ok(())
    }
}

wasm_guest::export!(Typed);
