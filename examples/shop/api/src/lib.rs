//! The shop example's message types: what its components say to each other,
//! as serde types. Every payload between them is json (multicodec 0x0200);
//! the SDK adds and checks the prefix.
//!
//! The flow of one order:
//!
//! ```text
//! host --Command--> shopper --OrderRequest--> orders --Reserve--> inventory
//!                                              orders --Charge---> billing
//! shopper <--OrderUpdate-- orders   (fire-and-forget, once per order)
//! ```

use serde::{Deserialize, Serialize};

/// What the host (the app's `[[inject]]` entries) tells the shopper to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Place an order.
    Place(Order),
    /// Withdraw the order with this number.
    Cancel(u64),
    /// Look at this many product pages (fire-and-forget views to inventory).
    Browse(u32),
}

/// An order line: a number chosen by the customer, an item and a quantity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// The customer's order number.
    pub order: u64,
    /// The item.
    pub sku: String,
    /// How many.
    pub qty: u32,
}

/// Shopper to orders (a request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderRequest {
    /// Take this order.
    Place(Order),
    /// Withdraw this order if its stock reservation is still pending.
    Cancel {
        /// The order number.
        order: u64,
    },
}

/// Orders' answer to an [`OrderRequest`]: taken now, settled later by an
/// [`OrderUpdate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The order number.
    pub order: u64,
    /// `accepted`, `cancelling` or `not-pending`.
    pub status: String,
}

/// Orders to inventory (a request): hold stock for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserve {
    /// The item.
    pub sku: String,
    /// How many.
    pub qty: u32,
}

/// Inventory's answer to [`Reserve`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reserved {
    /// Whether the stock was there (and is now held).
    pub ok: bool,
    /// What is left of the item.
    pub left: u32,
}

/// Shopper to inventory (fire-and-forget): someone looked at a product page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    /// The item.
    pub sku: String,
}

/// Orders to billing (a request): take payment for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    /// The order number.
    pub order: u64,
    /// The item, for the price.
    pub sku: String,
    /// How many.
    pub qty: u32,
}

/// Billing's answer to [`Charge`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charged {
    /// The amount taken, in cents.
    pub cents: u64,
    /// The receipt number.
    pub receipt: u64,
}

/// Orders to the customer (fire-and-forget): how an order ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderUpdate {
    /// The order number.
    pub order: u64,
    /// `confirmed` or `failed`.
    pub status: String,
    /// The receipt, or why it failed.
    pub detail: String,
}
