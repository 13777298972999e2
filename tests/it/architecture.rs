//! The walls between the crates, read from `cargo metadata`: a dependency that crosses one
//! fails here, whoever adds it.

use std::collections::{BTreeMap, BTreeSet};

/// Each workspace crate and every crate it depends on (normal and build dependencies;
/// dev-dependencies link into no program).
fn arrows() -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    // This platform only: offline, cargo has no manifests of other platforms' crates.
    let platform = format!("{}-unknown-linux-gnu", std::env::consts::ARCH);
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--manifest-path",
            manifest,
        ])
        .args(["--filter-platform", &platform])
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let name_of: BTreeMap<&str, &str> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap(), p["name"].as_str().unwrap()))
        .collect();
    let members: BTreeSet<&str> = meta["workspace_members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    let mut direct = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let id = node["id"].as_str().unwrap();
        let deps: BTreeSet<String> = node["deps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|k| k["kind"].as_str() != Some("dev"))
            })
            .map(|d| name_of[d["pkg"].as_str().unwrap()].to_string())
            .collect();
        direct.insert(name_of[id].to_string(), (members.contains(id), deps));
    }
    // Transitive closure from each workspace member.
    let mut all = BTreeMap::new();
    for (name, (member, _)) in &direct {
        if !member {
            continue;
        }
        let mut seen = BTreeSet::new();
        let mut todo = vec![name.clone()];
        while let Some(n) = todo.pop() {
            for d in &direct[&n].1 {
                if seen.insert(d.clone()) {
                    todo.push(d.clone());
                }
            }
        }
        all.insert(name.clone(), seen);
    }
    all
}

fn assert_none(arrows: &BTreeMap<String, BTreeSet<String>>, from: &str, forbidden: &[&str]) {
    let deps = arrows
        .get(from)
        .unwrap_or_else(|| panic!("{from} is a workspace crate"));
    let crossing: Vec<_> = forbidden.iter().filter(|f| deps.contains(**f)).collect();
    assert!(
        crossing.is_empty(),
        "{from} must not depend on {crossing:?}"
    );
}

#[test]
fn the_crates_keep_their_walls() {
    let a = arrows();
    let io = ["tokio", "quinn", "sled", "mdns-sd", "rustls"];
    let daemons = ["menjin-community", "menjin-hub", "menjin-gate"];
    let workspace_io = [
        "menjin-net",
        "menjin-store",
        "menjin-replication",
        "menjin-discovery",
        "menjin-community",
        "menjin-hub",
        "menjin-gate",
        "menjin-harness",
    ];
    for core in ["menjin-proto", "menjin-sync"] {
        assert_none(&a, core, &io);
        assert_none(&a, core, &workspace_io);
    }
    assert_none(
        &a,
        "menjin-render",
        &["tokio", "quinn", "sled", "mdns-sd", "rustls"],
    );
    assert_none(&a, "menjin-net", &daemons);
    assert_none(
        &a,
        "menjin-net",
        &["menjin-store", "menjin-replication", "menjin-harness"],
    );
    assert_none(
        &a,
        "menjin-community",
        &["menjin-hub", "menjin-gate", "menjin-harness"],
    );
    assert_none(
        &a,
        "menjin-hub",
        &["menjin-community", "menjin-gate", "menjin-harness"],
    );
    assert_none(
        &a,
        "menjin-gate",
        &[
            "menjin-community",
            "menjin-hub",
            "menjin-replication",
            "menjin-sync",
            "menjin-harness",
        ],
    );
    // The pages sit on the node: community, render, store, net, proto and nothing of the
    // hub, the gate, replication internals or the harness; only the cli links them.
    assert_none(
        &a,
        "menjin-web",
        &["menjin-hub", "menjin-gate", "menjin-harness", "menjin-cli"],
    );
    for (name, deps) in &a {
        if name != "menjin-cli" && name != "menjin-web" {
            assert!(
                !deps.contains("menjin-web"),
                "{name} must not depend on menjin-web (only the cli does)"
            );
        }
    }
    for d in daemons {
        assert!(a[d].contains("menjin-proto"), "{d} builds on proto");
    }
}
