//! The part of `cargo metadata --format-version 1` that the architecture lint reads.
//!
//! Serde ignores the many fields not named here.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer};

use crate::cmd::cargo;

/// The output of `cargo metadata --format-version 1`, reduced to what the lint needs.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Metadata {
    /// Every package of the dependency graph: workspace members and external crates.
    pub(crate) packages: Vec<Package>,
    /// The ids of the workspace's own packages.
    pub(crate) workspace_members: Vec<PackageId>,
    /// The resolved dependency graph; absent when run with `--no-deps`.
    pub(crate) resolve: Option<Resolve>,
}

/// Cargo's opaque package id (`path+file:///...#0.1.0`, `registry+https://...#tokio@1.47.0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(transparent)]
pub(crate) struct PackageId(pub(crate) String);

/// One package of the graph.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Package {
    /// The package's id, as used by `workspace_members` and the resolve graph.
    pub(crate) id: PackageId,
    /// The package name from its manifest (`wasm-core`, `tokio`).
    pub(crate) name: String,
}

/// The resolved dependency graph, with features unified across the workspace and
/// dependencies for every target platform.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Resolve {
    /// One node per package in the graph.
    pub(crate) nodes: Vec<Node>,
}

/// A package and its resolved direct dependencies.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Node {
    /// The package this node describes.
    pub(crate) id: PackageId,
    /// Its direct dependencies.
    pub(crate) deps: Vec<NodeDep>,
}

/// One direct dependency edge of a [`Node`].
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct NodeDep {
    /// The package depended on.
    pub(crate) pkg: PackageId,
    /// How it is depended on; one entry per `[dependencies]`-like table naming it.
    #[serde(default)]
    pub(crate) dep_kinds: Vec<DepKindInfo>,
}

impl NodeDep {
    /// Whether this edge is of `kind`. An edge without kind information (cargo older
    /// than 1.41) counts as a normal dependency.
    pub(crate) fn has_kind(&self, kind: DepKind) -> bool {
        if self.dep_kinds.is_empty() {
            return kind == DepKind::Normal;
        }
        self.dep_kinds.iter().any(|info| info.kind == kind)
    }
}

/// The kind of one dependency declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct DepKindInfo {
    /// `null` in cargo's output for normal dependencies.
    #[serde(deserialize_with = "normal_if_null")]
    pub(crate) kind: DepKind,
}

/// Which table of a manifest declares a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DepKind {
    /// `[dependencies]`.
    #[default]
    Normal,
    /// `[build-dependencies]`.
    Build,
    /// `[dev-dependencies]`.
    Dev,
}

/// Reads a dependency kind where cargo writes `null` for a normal dependency.
fn normal_if_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<DepKind, D::Error> {
    Option::<DepKind>::deserialize(deserializer).map(Option::unwrap_or_default)
}

/// Runs `cargo metadata --format-version 1` (with the resolve graph) in `root`.
///
/// # Errors
///
/// Fails when cargo fails or prints something that is not metadata.
pub(crate) fn load(root: &Path) -> Result<Metadata> {
    let output = cargo()
        .current_dir(root)
        .args(["metadata", "--format-version", "1"])
        .stderr(Stdio::inherit())
        .output()
        .context("could not start `cargo metadata`")?;
    if !output.status.success() {
        bail!("`cargo metadata --format-version 1` failed ({})", output.status);
    }
    serde_json::from_slice(&output.stdout).context("could not parse `cargo metadata` output")
}
