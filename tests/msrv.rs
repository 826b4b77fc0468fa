//! The `rust-version` in Cargo.toml is the truth about the dependencies: no crate perf builds
//! with (any feature on) declares a newer one, and one of them declares exactly it, so the
//! figure is neither a promise the dependencies break nor lower than they allow. Our own code's
//! use of newer std APIs is clippy's `incompatible_msrv` check, run by CI with `-D warnings`.
//! (Only one toolchain can be installed where this project is built, so no older compiler
//! builds it here.)

use std::{collections::HashSet, process::Command};

use serde_json::Value;

const PUBLISHED: [&str; 5] = [
    "perf",
    "perf-core",
    "perf-macros",
    "perf-redis",
    "perf-http",
];

/// `1.88` and `1.88.0` as the same version: three parts, the missing ones 0.
fn version(text: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = text
        .split('.')
        .filter_map(|part| part.parse().ok())
        .collect();
    parts.resize(3, 0);
    parts
}

#[test]
fn rust_version_is_the_newest_any_dependency_needs() {
    let output = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--all-features",
            "--locked",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo's JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    let package = |id: &str| packages.iter().find(|p| p["id"] == id);
    let nodes = metadata["resolve"]["nodes"].as_array().expect("resolve");

    // What the published crates build with: normal and build dependencies, transitively.
    let mut stack: Vec<&str> = packages
        .iter()
        .filter(|p| PUBLISHED.contains(&p["name"].as_str().unwrap_or_default()))
        .filter_map(|p| p["id"].as_str())
        .collect();
    let mut seen = HashSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let node = nodes.iter().find(|n| n["id"] == id).expect("resolved");
        for dependency in node["deps"].as_array().into_iter().flatten() {
            let runtime = dependency["dep_kinds"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|kind| kind["kind"].is_null() || kind["kind"] == "build");
            if runtime {
                stack.extend(dependency["pkg"].as_str());
            }
        }
    }

    let ours = version(env!("CARGO_PKG_RUST_VERSION"));
    let mut newest = (Vec::new(), String::new());
    for id in seen {
        let Some(package) = package(id) else { continue };
        let name = package["name"].as_str().unwrap_or_default();
        if PUBLISHED.contains(&name) {
            continue;
        }
        if let Some(declared) = package["rust_version"].as_str() {
            let declared_version = version(declared);
            assert!(
                declared_version <= ours,
                "{name} needs Rust {declared}, newer than our rust-version {}",
                env!("CARGO_PKG_RUST_VERSION")
            );
            if declared_version > newest.0 {
                newest = (declared_version, name.to_owned());
            }
        }
    }
    assert_eq!(
        newest.0, ours,
        "rust-version could be lowered to what {} needs",
        newest.1
    );
}
