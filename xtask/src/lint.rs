//! The architecture lint: crate layers (SPEC section 4), checked from `cargo metadata`.
//!
//! Two kinds of rule, both per workspace crate:
//!
//! - **Workspace edges.** A crate may name only the workspace crates its rule allows,
//!   with one allowlist for normal and build dependencies and one for dev-dependencies.
//! - **Banned crates.** Some external crates must not appear anywhere in a crate's
//!   transitive dependency closure (no wasmtime under `wasm-messaging`, no tokio under
//!   `wasm-core`). The closure follows normal and build edges from the crate's own
//!   normal and build dependencies; a second, shorter list is checked over the closure
//!   of its dev-dependencies.
//!
//! - **Source text.** In `wasm-messaging`, locks, atomics and `Arc` come only from
//!   `src/sync.rs`, the loom shim, so the loom models explore the code that ships: no
//!   line outside `sync.rs` names `std::sync` or `parking_lot` (comments and test
//!   modules, from the first `#[cfg(...test...)]` line on, are not checked).
//!
//! `cargo metadata` unifies features across the workspace and lists dependencies for
//! every target platform, so the closure it gives is a superset of what any one build
//! compiles: the lint errs on the strict side.
//!
//! Every workspace member needs a rule; a new crate fails the lint until it gets one in
//! [`RULES`].

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::path::Path;

use anyhow::{Result, bail};

use crate::metadata::{self, DepKind, Metadata, Node, NodeDep, PackageId};

/// The layer rule of one workspace crate.
#[derive(Debug, Clone, Copy)]
struct LayerRule {
    /// The package name the rule is for.
    krate: &'static str,
    /// Workspace crates it may have as normal or build dependencies.
    deps: &'static [&'static str],
    /// Workspace crates it may have as dev-dependencies.
    dev_deps: &'static [&'static str],
    /// External crates banned from its normal and build dependency closure.
    banned: &'static [Ban],
    /// External crates banned from its dev-dependency closure.
    dev_banned: &'static [Ban],
}

/// A banned crate name, or family of names.
#[derive(Debug, Clone, Copy)]
enum Ban {
    /// Exactly this crate.
    Exact(&'static str),
    /// Every crate whose name starts with this (`wasmtime`, `wasmtime-wasi`, ...).
    Prefix(&'static str),
}

impl Ban {
    /// Whether a crate named `name` is banned by this rule.
    fn matches(self, name: &str) -> bool {
        match self {
            Ban::Exact(banned) => name == banned,
            Ban::Prefix(prefix) => name.starts_with(prefix),
        }
    }
}

/// The wasmtime family: `wasmtime`, `wasmtime-wasi`, `wasmtime-environ`, ...
const WASMTIME: Ban = Ban::Prefix("wasmtime");

/// The rule of a guest crate (a component built for `wasm32-wasip2`): these
/// workspace crates, and neither wasmtime nor tokio anywhere below it.
const fn guest(krate: &'static str, deps: &'static [&'static str]) -> LayerRule {
    const BANNED: &[Ban] = &[WASMTIME, Ban::Exact("tokio")];
    LayerRule { krate, deps, dev_deps: &[], banned: BANNED, dev_banned: BANNED }
}

/// Every workspace crate's rule. `wasm-runtime` never naming `wasm-messaging` is a
/// workspace-edge rule; `wasm-system` is the composition root and may name everything.
const RULES: &[LayerRule] = &[
    LayerRule {
        krate: "wasm-core",
        deps: &[],
        dev_deps: &[],
        banned: &[WASMTIME, Ban::Exact("tokio"), Ban::Exact("parking_lot")],
        dev_banned: &[WASMTIME],
    },
    LayerRule {
        krate: "wasm-messaging",
        deps: &["wasm-core"],
        dev_deps: &["wasm-core"],
        // The router reaches other nodes only through wasm-core's
        // `RemoteTransport`: the NATS client stays in wasm-cluster.
        banned: &[WASMTIME, Ban::Exact("wit-component"), Ban::Exact("wit-parser"), Ban::Exact("async-nats")],
        dev_banned: &[WASMTIME, Ban::Exact("wit-component"), Ban::Exact("wit-parser"), Ban::Exact("async-nats")],
    },
    LayerRule { krate: "wasm-runtime", deps: &["wasm-core"], dev_deps: &["wasm-core"], banned: &[], dev_banned: &[] },
    // The NATS transport behind wasm-core's `RemoteTransport` (SPEC sections 4
    // and 5): wasm-core only, and no wasmtime anywhere below it.
    LayerRule {
        krate: "wasm-cluster",
        deps: &["wasm-core"],
        dev_deps: &["wasm-core"],
        banned: &[WASMTIME, Ban::Exact("wit-component"), Ban::Exact("wit-parser")],
        dev_banned: &[WASMTIME, Ban::Exact("wit-component"), Ban::Exact("wit-parser")],
    },
    LayerRule {
        krate: "wasm-system",
        deps: &["wasm-core", "wasm-messaging", "wasm-runtime", "wasm-cluster"],
        dev_deps: &["wasm-core", "wasm-messaging", "wasm-runtime", "wasm-cluster"],
        banned: &[],
        dev_banned: &[],
    },
    LayerRule {
        krate: "wasm-tests",
        deps: &["wasm-core", "wasm-messaging", "wasm-runtime", "wasm-system", "wasm-cluster"],
        dev_deps: &["wasm-core", "wasm-messaging", "wasm-runtime", "wasm-system", "wasm-cluster"],
        banned: &[],
        dev_banned: &[],
    },
    // The guest SDK (SPEC section 4): the codec table from wasm-core, never a host
    // crate or the host's runtime.
    LayerRule {
        krate: "wasm-guest",
        deps: &["wasm-core"],
        dev_deps: &["wasm-core"],
        banned: &[WASMTIME, Ban::Exact("tokio")],
        dev_banned: &[WASMTIME, Ban::Exact("tokio")],
    },
    // Guests written against the SDK, as users write them: the test guest and
    // the examples. They name the SDK (and the shop its own types crate), never
    // wit-bindgen's host side, a host crate or a runtime.
    guest("guest-typed", &["wasm-guest"]),
    guest("guest-bench", &["wasm-guest"]),
    guest("example-pinger", &["wasm-guest"]),
    guest("example-rr-client", &["wasm-guest"]),
    guest("example-rr-responder", &["wasm-guest"]),
    guest("shop-api", &[]),
    guest("shop-shopper", &["wasm-guest", "shop-api"]),
    guest("shop-orders", &["wasm-guest", "shop-api"]),
    guest("shop-inventory", &["wasm-guest", "shop-api"]),
    guest("shop-billing", &["wasm-guest", "shop-api"]),
    LayerRule {
        krate: "guest-behaviour",
        deps: &[],
        dev_deps: &[],
        banned: &[WASMTIME, Ban::Exact("tokio")],
        dev_banned: &[WASMTIME, Ban::Exact("tokio")],
    },
    // An embedding program: the one crate to embed, and nothing below it.
    LayerRule { krate: "example-embed", deps: &["wasm-system"], dev_deps: &[], banned: &[], dev_banned: &[] },
    LayerRule { krate: "xtask", deps: &[], dev_deps: &[], banned: &[], dev_banned: &[] },
];

/// The crate whose source the text rule reads, and its one file allowed to name
/// `std::sync` and `parking_lot`.
const SHIM_CRATE_SRC: &str = "crates/wasm-messaging/src";
/// See [`SHIM_CRATE_SRC`].
const SHIM_FILE: &str = "sync.rs";
/// What only the shim may name.
const SHIM_ONLY: [&str; 2] = ["std::sync", "parking_lot"];

/// Lines of the Rust files under `src` (recursively, but not `src/tests/`, the
/// models themselves) outside [`SHIM_FILE`] that name what only the shim may.
/// A file is read up to its first `#[cfg(...)]` line that names `test` (the test
/// module, by this workspace's convention at the end); `//` comments are skipped.
///
/// # Errors
/// When a directory or file cannot be read.
fn shim_bypasses(src: &Path) -> Result<Vec<Violation>> {
    let mut violations = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?.collect::<std::io::Result<_>>()?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for entry in entries {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    dirs.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.file_name().is_some_and(|n| n == SHIM_FILE) {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("#[cfg(") && code.contains("test") {
                    break;
                }
                if code.starts_with("//") {
                    continue;
                }
                if let Some(named) = SHIM_ONLY.iter().find(|n| code.contains(*n)) {
                    let file = path.strip_prefix(src).unwrap_or(&path).display().to_string();
                    violations.push(Violation::ShimBypassed { file, line: i + 1, named });
                }
            }
        }
    }
    Ok(violations)
}

/// One broken layer rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Violation {
    /// A `wasm-messaging` file other than the loom shim names `std::sync` or
    /// `parking_lot`.
    ShimBypassed {
        /// The file, relative to the crate's `src`.
        file: String,
        /// The 1-based line.
        line: usize,
        /// What it names.
        named: &'static str,
    },
    /// The metadata has no resolve graph, so nothing could be checked.
    MissingResolve,
    /// A workspace member that [`RULES`] does not know.
    UnknownMember {
        /// The member's package name.
        krate: String,
    },
    /// A workspace crate names a workspace crate its rule does not allow.
    ForbiddenEdge {
        /// The depending crate.
        from: String,
        /// The crate depended on.
        to: String,
        /// The manifest table the edge is declared in.
        kind: DepKind,
    },
    /// A banned crate is in a workspace crate's dependency closure.
    BannedCrate {
        /// The workspace crate whose closure holds the banned crate.
        krate: String,
        /// The banned crate found.
        banned: String,
        /// [`DepKind::Dev`] when reached through dev-dependencies, else
        /// [`DepKind::Normal`] (normal or build dependencies).
        kind: DepKind,
        /// A shortest chain of package names from `krate` to `banned`, both included.
        path: Vec<String>,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::ShimBypassed { file, line, named } => write!(
                f,
                "wasm-messaging/src/{file}:{line} names `{named}`: import locks, atomics and Arc from `crate::sync` \
                 (the loom shim), so the loom models cover them"
            ),
            Violation::MissingResolve => {
                write!(f, "cargo metadata has no resolve graph (was it run with --no-deps?)")
            }
            Violation::UnknownMember { krate } => {
                write!(f, "no layer rule for crate {krate} (add one to RULES in xtask/src/lint.rs)")
            }
            Violation::ForbiddenEdge { from, to, kind } => {
                let table = match kind {
                    DepKind::Normal => "dependency",
                    DepKind::Build => "build-dependency",
                    DepKind::Dev => "dev-dependency",
                };
                write!(f, "forbidden {table} edge: {from} -> {to}")
            }
            Violation::BannedCrate { krate, banned, kind, path } => {
                let verb = if *kind == DepKind::Dev { "dev-depends" } else { "depends" };
                write!(f, "banned crate: {krate} {verb} on {banned} (via {})", path.join(" -> "))
            }
        }
    }
}

/// Checks every workspace member of `metadata` against [`RULES`].
///
/// Violations come sorted by member name, then in rule order.
pub(crate) fn check(metadata: &Metadata) -> Vec<Violation> {
    let Some(resolve) = &metadata.resolve else {
        return vec![Violation::MissingResolve];
    };
    let graph = Graph::new(metadata, &resolve.nodes);
    let mut members: Vec<(&str, &PackageId)> =
        metadata.workspace_members.iter().map(|id| (graph.name(id), id)).collect();
    members.sort();

    let mut violations = Vec::new();
    for (name, id) in members {
        let Some(rule) = RULES.iter().find(|rule| rule.krate == name) else {
            violations.push(Violation::UnknownMember { krate: name.to_owned() });
            continue;
        };
        for dep in graph.deps(id) {
            if !graph.members.contains(&dep.pkg) {
                continue;
            }
            let to = graph.name(&dep.pkg);
            for kind in [DepKind::Normal, DepKind::Build, DepKind::Dev] {
                let allowed = if kind == DepKind::Dev { rule.dev_deps } else { rule.deps };
                if dep.has_kind(kind) && !allowed.contains(&to) {
                    violations.push(Violation::ForbiddenEdge { from: name.to_owned(), to: to.to_owned(), kind });
                }
            }
        }
        let closures: [(&[DepKind], &[Ban], DepKind); 2] = [
            (&[DepKind::Normal, DepKind::Build], rule.banned, DepKind::Normal),
            (&[DepKind::Dev], rule.dev_banned, DepKind::Dev),
        ];
        for (first_hop, bans, kind) in closures {
            for &ban in bans {
                if let Some(path) = graph.shortest_path(id, first_hop, ban) {
                    violations.push(Violation::BannedCrate {
                        krate: name.to_owned(),
                        banned: path.last().cloned().unwrap_or_default(),
                        kind,
                        path,
                    });
                }
            }
        }
    }
    violations
}

/// Runs the lint on the workspace at `root` and prints the outcome.
///
/// # Errors
///
/// Fails when `cargo metadata` fails or any rule is broken; each violation is printed
/// on its own line first.
pub(crate) fn run(root: &Path) -> Result<()> {
    let metadata = metadata::load(root)?;
    let mut violations = check(&metadata);
    violations.extend(shim_bypasses(&root.join(SHIM_CRATE_SRC))?);
    if violations.is_empty() {
        println!("architecture lint: {} workspace crates follow their layer rules", metadata.workspace_members.len());
        return Ok(());
    }
    for violation in &violations {
        eprintln!("{violation}");
    }
    bail!("architecture lint found {} violation(s) (rules: SPEC section 4, xtask/src/lint.rs)", violations.len())
}

/// The resolve graph, indexed for lookups by package id.
#[derive(Debug)]
struct Graph<'a> {
    /// Package name by id.
    names: HashMap<&'a PackageId, &'a str>,
    /// Resolve node by id.
    nodes: HashMap<&'a PackageId, &'a Node>,
    /// The workspace members' ids.
    members: HashSet<&'a PackageId>,
}

impl<'a> Graph<'a> {
    /// Indexes `metadata`'s packages and members together with `nodes`.
    fn new(metadata: &'a Metadata, nodes: &'a [Node]) -> Self {
        Graph {
            names: metadata.packages.iter().map(|package| (&package.id, package.name.as_str())).collect(),
            nodes: nodes.iter().map(|node| (&node.id, node)).collect(),
            members: metadata.workspace_members.iter().collect(),
        }
    }

    /// The package name of `id`, or the raw id if the package is not listed.
    fn name(&self, id: &'a PackageId) -> &'a str {
        self.names.get(id).copied().unwrap_or(id.0.as_str())
    }

    /// The direct dependencies of `id`; none if it has no resolve node.
    fn deps(&self, id: &PackageId) -> impl Iterator<Item = &'a NodeDep> + use<'a> {
        self.nodes.get(id).map(|node| node.deps.as_slice()).unwrap_or_default().iter()
    }

    /// A shortest chain of names from `root` to a crate matching `ban`, breadth-first.
    ///
    /// The first hop follows edges of the `first_hop` kinds; later hops follow normal
    /// and build edges, which is what a dependency brings along.
    fn shortest_path(&self, root: &'a PackageId, first_hop: &[DepKind], ban: Ban) -> Option<Vec<String>> {
        let mut parent: HashMap<&PackageId, &PackageId> = HashMap::new();
        let mut seen: HashSet<&PackageId> = HashSet::from([root]);
        let mut queue: VecDeque<&PackageId> = VecDeque::new();
        for dep in self.deps(root) {
            if first_hop.iter().any(|&kind| dep.has_kind(kind)) && seen.insert(&dep.pkg) {
                parent.insert(&dep.pkg, root);
                queue.push_back(&dep.pkg);
            }
        }
        while let Some(id) = queue.pop_front() {
            if ban.matches(self.name(id)) {
                let mut path = vec![self.name(id).to_owned()];
                let mut at = id;
                while let Some(&up) = parent.get(at) {
                    path.push(self.name(up).to_owned());
                    at = up;
                }
                path.reverse();
                return Some(path);
            }
            for dep in self.deps(id) {
                let brought_along = dep.has_kind(DepKind::Normal) || dep.has_kind(DepKind::Build);
                if brought_along && seen.insert(&dep.pkg) {
                    parent.insert(&dep.pkg, id);
                    queue.push_back(&dep.pkg);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{DepKindInfo, Package, Resolve};

    /// The workspace's members with the edges SPEC section 4 allows, plus a few
    /// external crates where they belong.
    const LAYERED: &[(&str, &str, DepKind)] = &[
        ("wasm-messaging", "wasm-core", DepKind::Normal),
        ("wasm-messaging", "tokio", DepKind::Normal),
        ("wasm-messaging", "parking_lot", DepKind::Normal),
        ("wasm-runtime", "wasm-core", DepKind::Normal),
        ("wasm-runtime", "wasmtime", DepKind::Normal),
        ("wasm-runtime", "wit-component", DepKind::Normal),
        ("wit-component", "wit-parser", DepKind::Normal),
        ("wasm-system", "wasm-core", DepKind::Normal),
        ("wasm-system", "wasm-messaging", DepKind::Normal),
        ("wasm-system", "wasm-runtime", DepKind::Normal),
        ("wasm-tests", "wasm-system", DepKind::Normal),
        ("wasm-tests", "wasm-runtime", DepKind::Dev),
        ("wasm-core", "proptest", DepKind::Dev),
    ];

    /// The workspace's members.
    const MEMBERS: &[&str] = &["wasm-core", "wasm-messaging", "wasm-runtime", "wasm-system", "wasm-tests", "xtask"];

    /// Metadata with `members` as the workspace and `edges` as the resolve graph. A
    /// package's id is its name; names outside `members` are external crates.
    fn synthetic(members: &[&str], edges: &[(&str, &str, DepKind)]) -> Metadata {
        let id = |name: &str| PackageId(name.to_owned());
        let mut names: Vec<&str> = members.to_vec();
        for &(from, to, _) in edges {
            names.extend([from, to]);
        }
        names.sort_unstable();
        names.dedup();
        Metadata {
            packages: names.iter().map(|&name| Package { id: id(name), name: name.to_owned() }).collect(),
            workspace_members: members.iter().map(|&name| id(name)).collect(),
            resolve: Some(Resolve {
                nodes: names
                    .iter()
                    .map(|&name| Node {
                        id: id(name),
                        deps: edges
                            .iter()
                            .filter(|&&(from, _, _)| from == name)
                            .map(|&(_, to, kind)| NodeDep { pkg: id(to), dep_kinds: vec![DepKindInfo { kind }] })
                            .collect(),
                    })
                    .collect(),
            }),
        }
    }

    /// `LAYERED` plus `extra` edges.
    fn layered_with(extra: &[(&str, &str, DepKind)]) -> Metadata {
        synthetic(MEMBERS, &[LAYERED, extra].concat())
    }

    /// The violations of `metadata`, as the lines `cargo xtask lint` prints.
    fn messages(metadata: &Metadata) -> Vec<String> {
        check(metadata).iter().map(ToString::to_string).collect()
    }

    /// The real workspace follows its layer rules: plain `cargo test` runs the lint.
    #[test]
    fn messaging_takes_locks_and_atomics_only_from_the_shim() {
        let src = crate::workspace_root().join(SHIM_CRATE_SRC);
        assert_eq!(shim_bypasses(&src).expect("reading wasm-messaging/src"), vec![]);
    }

    #[test]
    fn catches_a_file_that_bypasses_the_shim() {
        let dir = std::env::temp_dir().join(format!("xtask-shim-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tests")).expect("temp dir");
        let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).expect("write");
        write("sync.rs", "pub(crate) use parking_lot::Mutex;\npub(crate) use std::sync::Arc;\n");
        write(
            "router.rs",
            "// std::sync in a comment is fine\nuse crate::sync::Arc;\nuse std::sync::atomic::AtomicU64;\n",
        );
        write("ok.rs", "use crate::sync::Mutex;\n#[cfg(test)]\nmod tests {\n    use std::sync::Arc;\n}\n");
        write("ok2.rs", "#[cfg(all(test, not(loom)))]\nmod tests {\n    use std::sync::Arc;\n}\n");
        write("tests/loom_x.rs", "use std::sync::Arc as StdArc;\n");
        write("mailbox.rs", "fn f() { let m = parking_lot::Mutex::new(1); }\n");
        let found = shim_bypasses(&dir).expect("reading the temp dir");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(
            found,
            vec![
                Violation::ShimBypassed { file: "mailbox.rs".into(), line: 1, named: "parking_lot" },
                Violation::ShimBypassed { file: "router.rs".into(), line: 3, named: "std::sync" },
            ]
        );
        assert!(found[1].to_string().contains("wasm-messaging/src/router.rs:3 names `std::sync`"), "{}", found[1]);
    }

    /// The package names `cargo tree -p <package> --edges normal --prefix none
    /// <extra>` lists, in its order.
    fn tree_names(package: &str, extra: &[&str]) -> Vec<String> {
        let out = std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(crate::workspace_root())
            .args(["tree", "-p", package, "--edges", "normal", "--prefix", "none"])
            .args(extra)
            .output()
            .expect("running cargo tree");
        assert!(out.status.success(), "cargo tree: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    /// The direct normal dependencies of `wasm-system` with `extra` flags.
    fn system_direct_deps(extra: &[&str]) -> Vec<String> {
        tree_names("wasm-system", &[&["--depth", "1"], extra].concat())
    }

    /// Issue 10: an embedder's `default-features = false` gets none of the
    /// CLI's libraries. (wasmtime itself depends on anyhow, so only direct
    /// dependencies are checked.)
    #[test]
    fn embedding_wasm_system_without_default_features_names_no_cli_library() {
        const CLI: [&str; 5] = ["clap", "anyhow", "tracing-subscriber", "comfy-table", "indicatif"];
        let embedded = system_direct_deps(&["--no-default-features"]);
        assert!(embedded.iter().any(|d| d == "wasm-runtime"), "{embedded:?}");
        assert!(!embedded.iter().any(|d| CLI.contains(&d.as_str())), "{embedded:?}");
        let cli = system_direct_deps(&[]);
        assert!(CLI.iter().all(|c| cli.iter().any(|d| d == c)), "the default build has the CLI: {cli:?}");
    }

    /// The embedding example's whole normal dependency tree holds none of
    /// clap, tracing-subscriber, comfy-table and indicatif. (anyhow is there,
    /// through wasmtime; that wasm-system does not name it is checked above.)
    #[test]
    fn the_embedding_example_pulls_in_no_cli_library() {
        let names = tree_names("example-embed", &[]);
        assert!(names.iter().any(|n| n == "wasm-system") && names.iter().any(|n| n == "wasmtime"), "{names:?}");
        for cli in ["clap", "tracing-subscriber", "comfy-table", "indicatif"] {
            assert!(!names.iter().any(|n| n == cli), "{cli} in the embedding example's tree: {names:?}");
        }
    }

    #[test]
    fn workspace_follows_layer_rules() {
        let metadata = metadata::load(&crate::workspace_root()).expect("`cargo metadata` runs on this workspace");
        let violations = messages(&metadata);
        assert!(
            violations.is_empty(),
            "architecture lint violations (rules: SPEC section 4, xtask/src/lint.rs):\n{}",
            violations.join("\n")
        );
    }

    /// The synthetic layering the other tests break is itself clean.
    #[test]
    fn synthetic_layering_passes() {
        assert_eq!(messages(&layered_with(&[])), Vec::<String>::new());
    }

    /// (a) wasm-core naming wasm-messaging is a forbidden edge, named in the message.
    #[test]
    fn catches_core_depending_on_messaging() {
        let metadata = layered_with(&[("wasm-core", "wasm-messaging", DepKind::Normal)]);
        let messages = messages(&metadata);
        // wasm-messaging also brings tokio and parking_lot into wasm-core's closure;
        // the edge itself comes first.
        assert_eq!(
            messages.first().map(String::as_str),
            Some("forbidden dependency edge: wasm-core -> wasm-messaging"),
            "{messages:#?}"
        );
    }

    /// (b) wasm-messaging reaching wasmtime through an external crate is caught, with
    /// the chain that brings it in.
    #[test]
    fn catches_messaging_reaching_wasmtime_transitively() {
        let metadata = layered_with(&[
            ("wasm-messaging", "component-shim", DepKind::Normal),
            ("component-shim", "wasmtime", DepKind::Normal),
        ]);
        assert_eq!(
            messages(&metadata),
            ["banned crate: wasm-messaging depends on wasmtime (via wasm-messaging -> component-shim -> wasmtime)"]
        );
    }

    /// The router naming the NATS client is refused: other nodes are reached
    /// through wasm-core's `RemoteTransport`, implemented in wasm-cluster.
    #[test]
    fn catches_messaging_depending_on_the_nats_client() {
        let metadata = layered_with(&[("wasm-messaging", "async-nats", DepKind::Normal)]);
        assert_eq!(
            messages(&metadata),
            ["banned crate: wasm-messaging depends on async-nats (via wasm-messaging -> async-nats)"]
        );
    }

    /// (c) a workspace member without a layer rule fails the lint.
    #[test]
    fn catches_unknown_member() {
        let members = [MEMBERS, &["wasm-extra"]].concat();
        let metadata = synthetic(&members, LAYERED);
        assert_eq!(messages(&metadata), ["no layer rule for crate wasm-extra (add one to RULES in xtask/src/lint.rs)"]);
    }

    /// Dev-dependencies have their own rules: wasmtime stays out of wasm-messaging's.
    #[test]
    fn catches_wasmtime_in_messaging_dev_dependencies() {
        let metadata = layered_with(&[("wasm-messaging", "wasmtime-wasi", DepKind::Dev)]);
        assert_eq!(
            messages(&metadata),
            ["banned crate: wasm-messaging dev-depends on wasmtime-wasi (via wasm-messaging -> wasmtime-wasi)"]
        );
    }

    /// A lower layer reaching a higher one through a dev-dependency is still an edge.
    #[test]
    fn catches_runtime_dev_depending_on_messaging() {
        let metadata = layered_with(&[("wasm-runtime", "wasm-messaging", DepKind::Dev)]);
        assert_eq!(messages(&metadata), ["forbidden dev-dependency edge: wasm-runtime -> wasm-messaging"]);
    }

    /// Metadata from `cargo metadata --no-deps` cannot be checked, and says so.
    #[test]
    fn missing_resolve_is_a_violation() {
        let mut metadata = layered_with(&[]);
        metadata.resolve = None;
        assert_eq!(check(&metadata), [Violation::MissingResolve]);
    }
}
