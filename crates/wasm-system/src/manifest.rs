//! Reading `Component.toml` and `app.toml` files, with errors that name the
//! file, the key and the problem.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use wasm_core::{AppManifest, Codec, ComponentManifest, DEFAULT_MAX_TIMEOUT_MS, Injection};
use wasm_messaging::Policy;

use crate::error::ManifestError;
use crate::shards::MAX_SHARDS;

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

/// Checks the values of a component manifest that its TOML types cannot:
/// the policy's (codec names, capability patterns, rates, limits) and the
/// placement group; returns the policy. `file` names the manifest in the
/// error. What both [`load_component`] and a starting system run, so the
/// CLI's `check` refuses what a start would.
///
/// # Errors
/// [`ManifestError::Invalid`] naming `file`, the key and the problem.
pub(crate) fn check_values(manifest: &ComponentManifest, file: &Path) -> Result<Policy, ManifestError> {
    let invalid = |key: String, problem: String| ManifestError::Invalid { file: file.to_owned(), key, problem };
    manifest.placement.validate().map_err(|problem| invalid("placement.group".to_owned(), problem))?;
    Policy::from_manifest(manifest).map_err(|e| invalid(e.key, e.problem))
}

/// Reads and checks a component manifest: TOML syntax, known keys and types,
/// then the values (`check_values`).
/// Relative paths (`component.wasm`, `[wasi] dirs`) are resolved against the
/// manifest's directory.
///
/// # Errors
/// [`ManifestError`] naming the file and, for bad values, the key.
pub fn load_component(file: &Path) -> Result<LoadedComponent, ManifestError> {
    let mut manifest: ComponentManifest = read_toml(file)?;
    check_values(&manifest, file)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let wasm_path = base.join(&manifest.component.wasm);
    let build_dir = manifest.component.build.as_ref().map(|dir| base.join(dir));
    for dir in &mut manifest.wasi.dirs {
        dir.host = base.join(&dir.host);
    }
    Ok(LoadedComponent { manifest, file: file.to_owned(), wasm_path, build_dir })
}

/// Reads an app manifest and every component manifest it lists, and checks
/// `[app] shards` (at most 256) and its injections (known codec, exactly one
/// of `text` and `bytes`, a target that the app defines, `timeout_ms` only
/// with `request = true` and within 1..=[`DEFAULT_MAX_TIMEOUT_MS`], the
/// host's maximum).
///
/// # Errors
/// The first [`ManifestError`], naming its file and key.
pub fn load_app(file: &Path) -> Result<LoadedApp, ManifestError> {
    let manifest: AppManifest = read_toml(file)?;
    let base = file.parent().unwrap_or(Path::new("."));
    let components =
        manifest.components.iter().map(|path| load_component(&base.join(path))).collect::<Result<Vec<_>, _>>()?;
    let invalid = |key: String, problem: String| ManifestError::Invalid { file: file.to_owned(), key, problem };
    if manifest.app.shards > MAX_SHARDS {
        return Err(invalid("app.shards".into(), format!("{} shards; at most {MAX_SHARDS}", manifest.app.shards)));
    }
    for (i, injection) in manifest.injections.iter().enumerate() {
        if Codec::from_name(&injection.codec).is_none() {
            return Err(invalid(format!("inject[{i}].codec"), format!("unknown codec {:?}", injection.codec)));
        }
        if injection.text.is_some() == injection.bytes.is_some() {
            return Err(invalid(format!("inject[{i}]"), "give exactly one of `text` and `bytes`".into()));
        }
        // One of this app's components, or `name@node`: a component of
        // another node (or of this one, qualified), which `run` checks
        // against the cluster's directory.
        if injection.to.node().is_none() && !components.iter().any(|c| c.manifest.component.id == injection.to) {
            let problem = format!("no component `{}` in this app (another node's is `name@node`)", injection.to);
            return Err(invalid(format!("inject[{i}].to"), problem));
        }
        match injection.timeout_ms {
            Some(_) if !injection.request => {
                let problem = "is only for requests: add `request = true` or remove it";
                return Err(invalid(format!("inject[{i}].timeout_ms"), problem.into()));
            }
            Some(ms) if ms == 0 || ms > DEFAULT_MAX_TIMEOUT_MS => {
                let problem = format!("{ms} ms is outside 1..={DEFAULT_MAX_TIMEOUT_MS} ms (the host's maximum)");
                return Err(invalid(format!("inject[{i}].timeout_ms"), problem));
            }
            _ => {}
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes a one-component app whose `[[inject]]` is `inject`, in a fresh
    /// directory, and loads it.
    fn load_with(test: &str, inject: &str) -> Result<LoadedApp, ManifestError> {
        let dir = std::env::temp_dir().join(format!("wasm-system-manifest-{test}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        std::fs::write(dir.join("echo.toml"), "[component]\nid = \"echo\"\nwasm = \"echo.wat\"\n").expect("written");
        let app = format!("components = [\"echo.toml\"]\n\n[[inject]]\nto = \"echo\"\ntext = \"hi\"\n{inject}\n");
        std::fs::write(dir.join("app.toml"), app).expect("written");
        let loaded = load_app(&dir.join("app.toml"));
        let _ = std::fs::remove_dir_all(&dir);
        loaded
    }

    fn refusal(test: &str, inject: &str) -> (String, String) {
        match load_with(test, inject) {
            Err(ManifestError::Invalid { key, problem, .. }) => (key, problem),
            other => panic!("expected an invalid key for {inject:?}, got {other:?}"),
        }
    }

    #[test]
    fn injections_take_timing_and_requests() {
        let app = load_with("timing", "after_ms = 300\nevery_ms = 50\nrepeat = 4\nrequest = true\ntimeout_ms = 900")
            .expect("a valid app");
        let injection = &app.manifest.injections[0];
        assert_eq!((injection.after_ms, injection.every_ms, injection.repeat), (300, 50, 4));
        assert_eq!((injection.request, injection.timeout_ms), (true, Some(900)));
        let plain = load_with("plain", "").expect("a valid app");
        let injection = &plain.manifest.injections[0];
        assert_eq!(
            (injection.after_ms, injection.every_ms, injection.request, injection.timeout_ms),
            (0, 0, false, None)
        );
        // every_ms without a repeat has nothing to space, and is allowed.
        load_with("every-once", "every_ms = 10").expect("a valid app");
    }

    #[test]
    fn injection_timeout_needs_a_request_and_a_bound() {
        let (key, problem) = refusal("timeout-message", "timeout_ms = 100");
        assert_eq!(key, "inject[0].timeout_ms");
        assert!(problem.contains("request = true"), "{problem}");
        let (key, problem) = refusal("timeout-zero", "request = true\ntimeout_ms = 0");
        assert_eq!(key, "inject[0].timeout_ms");
        assert!(problem.contains("outside 1..=300000"), "{problem}");
        let (_, problem) = refusal("timeout-big", "request = true\ntimeout_ms = 300001");
        assert!(problem.contains("300001 ms"), "{problem}");
        assert!(matches!(load_with("typo", "after = 5"), Err(ManifestError::Parse { .. })), "unknown keys are refused");
    }

    #[test]
    fn loading_checks_the_placement_group_and_the_shard_count_as_a_start_would() {
        let dir = std::env::temp_dir().join(format!("wasm-system-manifest-placement-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let component = "[component]\nid = \"echo\"\nwasm = \"echo.wat\"\n[placement]\ngroup = \"\"\n";
        std::fs::write(dir.join("echo.toml"), component).expect("written");
        let refused = load_component(&dir.join("echo.toml"));
        std::fs::write(dir.join("echo.toml"), "[component]\nid = \"echo\"\nwasm = \"echo.wat\"\n").expect("written");
        std::fs::write(dir.join("app.toml"), "components = [\"echo.toml\"]\n[app]\nshards = 257\n").expect("written");
        let too_many = load_app(&dir.join("app.toml"));
        let _ = std::fs::remove_dir_all(&dir);
        match refused {
            Err(ManifestError::Invalid { key, problem, .. }) => {
                assert_eq!(key, "placement.group");
                assert!(problem.contains("needs a name"), "{problem}");
            }
            other => panic!("expected the empty group refused, got {other:?}"),
        }
        match too_many {
            Err(ManifestError::Invalid { key, problem, .. }) => {
                assert_eq!(key, "app.shards");
                assert!(problem.contains("257 shards; at most 256"), "{problem}");
            }
            other => panic!("expected 257 shards refused, got {other:?}"),
        }
    }
}
