//! `wasm-system new`: scaffold a component crate that uses the guest SDK.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Where the guest SDK sits in the source tree this binary was built from.
fn default_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join("wasm-guest")
}

/// Creates the component crate `dir` (which must not exist yet): `Cargo.toml`,
/// `src/lib.rs`, `Component.toml`, `app.toml`, `.cargo/config.toml` and
/// `.gitignore`. Its name is the directory's name. `sdk` is the path of the
/// `wasm-guest` crate (default: the one in this binary's source tree).
///
/// # Errors
/// A name that is not both a crate name and a component id (`[a-z][a-z0-9_-]*`,
/// at most 64 bytes), an existing `dir`, an SDK path without the SDK, or an
/// I/O error.
pub(crate) fn new_component(dir: &Path, sdk: Option<&Path>) -> anyhow::Result<()> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("{} has no usable directory name", dir.display()))?;
    check_name(name)?;
    if dir.exists() {
        bail!("{} already exists; `new` only creates a new directory", dir.display());
    }
    let sdk = sdk.map_or_else(default_sdk, Path::to_path_buf);
    let sdk = sdk.canonicalize().ok().filter(|p| p.join("Cargo.toml").exists()).with_context(|| {
        format!("the guest SDK (crate wasm-guest) is not at {}; pass its directory with --sdk", sdk.display())
    })?;
    let type_name = camel_case(name);
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        ("src/lib.rs", lib_rs(name, &type_name)),
        ("Component.toml", component_toml(name)),
        ("app.toml", app_toml(name)),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        (".gitignore", format!("/target\n/{name}.wasm\n")),
    ];
    for (file, text) in files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let shown = dir.display();
    println!("created component crate `{name}` in {shown}");
    println!("  build and run it:  wasm-system run --build {shown}/app.toml");
    println!("  check it:          wasm-system check {shown}/Component.toml");
    Ok(())
}

/// A name that is both a Cargo package name and a component id.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let starts = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !starts
        || name.len() > 64
        || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        bail!(
            "{name:?} cannot name a component crate: use a lowercase letter, then lowercase letters, digits, \
             `-` or `_` (at most 64 bytes), so that it is both a crate name and a component id"
        );
    }
    Ok(())
}

/// `order-book` -> `OrderBook`.
fn camel_case(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect::<String>()
        })
        .collect()
}

fn cargo_toml(name: &str, sdk: &Path) -> String {
    // A TOML basic string: escape what TOML needs escaped in a path.
    let sdk = sdk.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
# A component: `wasm-system build` (or `cargo build --release`, with the
# target set in .cargo/config.toml) links it for wasm32-wasip2.
crate-type = ["cdylib"]

[dependencies]
# The guest SDK: bindings, typed payloads, send/request/cancel.
wasm-guest = {{ path = "{sdk}" }}
serde = {{ version = "1", features = ["derive"] }}

# A crate of its own, even when created inside another workspace.
[workspace]
"#
    )
}

fn lib_rs(name: &str, type_name: &str) -> String {
    format!(
        r#"//! `{name}`: a component of the airssys wasm host, written with the guest SDK.
//!
//! It answers `{{"name": "..."}}` (json, cbor or messagepack) with a greeting
//! in the same codec, and logs each greeting through `println!`.

use serde::{{Deserialize, Serialize}};
use wasm_guest::{{Component, HandlerError, Message, Payload}};

/// What this component is asked.
#[derive(Debug, Deserialize)]
struct Greet {{
    name: String,
}}

/// What it answers.
#[derive(Debug, Serialize)]
struct Greeting {{
    text: String,
    count: u64,
}}

/// The component's state: one value per instance, created with `Default`.
#[derive(Default)]
struct {type_name} {{
    greeted: u64,
}}

impl Component for {type_name} {{
    fn handle_message(&mut self, sender: &str, message: Message) -> Result<Payload, HandlerError> {{
        let greet: Greet = message.decode()?;
        self.greeted += 1;
        let text = format!("hello, {{}}!", greet.name);
        println!("{{text}} (from {{sender}}, greeting number {{}})", self.greeted);
        Ok(Payload::encode(message.codec(), &Greeting {{ text, count: self.greeted }})?)
    }}
}}

wasm_guest::export!({type_name});
"#
    )
}

fn component_toml(name: &str) -> String {
    format!(
        r#"# The component's manifest: identity, code, and what the host grants it.
[component]
id = "{name}"
# Written by `wasm-system build` from the crate in `build`.
wasm = "{name}.wasm"
build = "."

[codecs]
accept = ["json", "cbor", "messagepack"]

# Targets it may message, and whether it may send requests:
# [capabilities]
# send = ["other-component"]
# request = true
"#
    )
}

fn app_toml(name: &str) -> String {
    format!(
        r#"# An app of one component, with one message to start it.
components = ["Component.toml"]

[app]
name = "{name}"

[[inject]]
to = "{name}"
codec = "json"
text = '{{"name": "world"}}'
"#
    )
}

const CARGO_CONFIG: &str = r#"# Plain `cargo build` builds the component.
[build]
target = "wasm32-wasip2"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_crate_names_and_component_ids() {
        for good in ["demo", "order-book", "svc_2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Demo", "2fast", "a.b", "a b", "über", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(camel_case("order-book_2"), "OrderBook2");
    }
}
