//! Reading `Component.toml` and `app.toml` files, with errors that name the
//! file, the key and the problem.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use wasm_core::{AppManifest, Codec, ComponentManifest, Injection};
use wasm_messaging::Policy;

use crate::error::ManifestError;

/// A component manifest with the directory its relative paths start from.
#[derive(Debug, Clone)]
pub struct LoadedComponent {
    /// The parsed manifest.
    pub manifest: ComponentManifest,
    /// The manifest file.
    pub file: PathBuf,
    /// `component.wasm` resolved against the manifest's directory.
    pub wasm_path: PathBuf,
    /// `component.build` (the Rust crate `wasm` is built from) resolved
    /// against the manifest's directory.
    pub build_dir: Option<PathBuf>,
}

/// An app manifest with its components loaded.
#[derive(Debug, Clone)]
pub struct LoadedApp {
    /// The app file.
    pub file: PathBuf,
    /// The parsed app manifest.
    pub manifest: AppManifest,
    /// Its components, in manifest order.
    pub components: Vec<LoadedComponent>,
}

fn read_toml<T: DeserializeOwned>(file: &Path) -> Result<T, ManifestError> {
    let text = std::fs::read_to_string(file).map_err(|source| ManifestError::Read { file: file.to_owned(), source })?;
    toml::from_str(&text).map_err(|e| ManifestError::Parse { file: file.to_owned(), detail: e.to_string() })
}

/// Reads and checks a component manifest: TOML syntax, known keys and types,
/// then the values (codec names, capability patterns, rates, limits).
/// Relative paths (`component.wasm`, `[wasi] dirs`) are resolved against the
/// manifest's directory.
///
/// # Errors
/// [`ManifestError`] naming the file and, for bad values, the key.
pub fn load_component(file: &Path) -> Result<LoadedComponent, ManifestError> {
    let mut manifest: ComponentManifest = read_toml(file)?;
    Policy::from_manifest(&manifest).map_err(|e| ManifestError::Invalid {
        file: file.to_owned(),
        key: e.key,
        problem: e.problem,
    })?;
    let base = file.parent().unwrap_or(Path::new("."));
    let wasm_path = base.join(&manifest.component.wasm);
    let build_dir = manifest.component.build.as_ref().map(|dir| base.join(dir));
    for dir in &mut manifest.wasi.dirs {
        dir.host = base.join(&dir.host);
    }
    Ok(LoadedComponent { manifest, file: file.to_owned(), wasm_path, build_dir })
}

/// Reads an app manifest and every component manifest it lists, and checks
/// its injections (known codec, exactly one of `text` and `bytes`, a target
/// that the app defines).
///
/// # Errors
/// The first [`ManifestError`], naming its file and key.
pub fn load_app(file: &Path) -> Result<LoadedApp, ManifestError> {
    let manifest: AppManifest = read_toml(file)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let components =
        manifest.components.iter().map(|path| load_component(&base.join(path))).collect::<Result<Vec<_>, _>>()?;
    let invalid = |key: String, problem: String| ManifestError::Invalid { file: file.to_owned(), key, problem };
    for (i, injection) in manifest.injections.iter().enumerate() {
        if Codec::from_name(&injection.codec).is_none() {
            return Err(invalid(format!("inject[{i}].codec"), format!("unknown codec {:?}", injection.codec)));
        }
        if injection.text.is_some() == injection.bytes.is_some() {
            return Err(invalid(format!("inject[{i}]"), "give exactly one of `text` and `bytes`".into()));
        }
        if !components.iter().any(|c| c.manifest.component.id == injection.to) {
            return Err(invalid(format!("inject[{i}].to"), format!("no component `{}` in this app", injection.to)));
        }
    }
    Ok(LoadedApp { file: file.to_owned(), manifest, components })
}

/// The payload of an injection: its codec's multicodec prefix, then the body.
#[must_use]
pub fn injection_payload(injection: &Injection) -> Vec<u8> {
    let codec = Codec::from_name(&injection.codec).unwrap_or(Codec::Raw);
    let body = match (&injection.text, &injection.bytes) {
        (Some(text), _) => text.as_bytes().to_vec(),
        (None, Some(bytes)) => bytes.clone(),
        (None, None) => Vec::new(),
    };
    wasm_core::MessagePayload::encode(codec, &body).into_bytes()
}
