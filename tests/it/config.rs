//! Configuration files at daemon start: an unknown key or a bad value stops `hub run`,
//! `node run` and `gate run` with the file, the line and the reason, before anything is
//! written; and the documented examples in deploy/examples parse with the real parser.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use menjin_store::files::{GateDir, NodeDir};

use crate::support::{EXIT_FAILURE, create_hub, create_node, init_district, menjin_raw, p};

/// Every file under `dir` with its bytes: "nothing changed on disk" is equality of two.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("read");
                out.insert(path, bytes);
            }
        }
    }
    out
}

/// A district with a hub, a node and a gate created (nothing running).
struct Dirs {
    hub: PathBuf,
    node: PathBuf,
    gate: PathBuf,
    tmp: tempfile::TempDir,
}

fn dirs() -> Dirs {
    let tmp = tempfile::Builder::new()
        .prefix("menjin-config-")
        .tempdir()
        .expect("temporary directory");
    let district = init_district(tmp.path());
    let hub = tmp.path().join("hub");
    let node = tmp.path().join("node");
    let gate = tmp.path().join("gate");
    create_hub(&district, &hub);
    create_node(&district, &node, 440_304_001, "n", None);
    // A gate directory as `gate enrol` writes it (the node need not run for `gate run` to
    // read its configuration).
    menjin_store::provision::create_gate(
        &GateDir(gate.clone()),
        "g1",
        &NodeDir(node.clone()),
        "127.0.0.1:7300".parse().expect("literal"),
    )
    .expect("gate directory");
    Dirs {
        hub,
        node,
        gate,
        tmp,
    }
}

/// Replaces the line starting with `key` (or adds `line` among the top-level keys, before
/// the first `[table]`, if `key` is empty); returns the 1-based line number of the edited line.
fn edit(file: &Path, key: &str, line: &str) -> usize {
    let text = std::fs::read_to_string(file).expect("config");
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let at = if key.is_empty() {
        let at = lines
            .iter()
            .position(|l| l.starts_with('['))
            .unwrap_or(lines.len());
        lines.insert(at, line.to_string());
        at
    } else {
        let at = lines
            .iter()
            .position(|l| l.starts_with(&format!("{key} =")))
            .unwrap_or_else(|| panic!("{} has no {key}", file.display()));
        lines[at] = line.to_string();
        at
    };
    std::fs::write(file, lines.join("\n") + "\n").expect("write config");
    at + 1
}

/// Starts the daemon of `role` on `dir` and expects it to refuse at once with
/// `FILE:LINE:COLUMN: ...WANT...`, leaving every file of the tree as it was.
#[track_caller]
fn refused_at_start(d: &Dirs, role: &str, dir: &Path, file: &str, line: usize, want: &str) {
    let before = snapshot(d.tmp.path());
    let out = match role {
        "gate" => crate::support::menjin_with_stdin(&["gate", "run", "--dir", p(dir)], Some("")),
        _ => menjin_raw(&[role, "run", "--dir", p(dir), "--listen", "127.0.0.1:0"]),
    };
    assert_eq!(out.code(), EXIT_FAILURE, "{out:?}");
    let path = dir.join(file);
    let prefix = format!("{}:{line}:", path.display());
    assert!(
        out.stderr.contains(&prefix) && out.stderr.contains(want),
        "{role} run should say `{prefix}...{want}`; stderr: {}",
        out.stderr
    );
    assert_eq!(
        snapshot(d.tmp.path()),
        before,
        "{role} run changed files while refusing its configuration"
    );
}

#[test]
fn node_refuses_unknown_key_and_bad_values_with_file_and_line() {
    let d = dirs();
    let cfg = d.node.join("node.toml");
    let original = std::fs::read_to_string(&cfg).expect("node.toml");
    let cases: [(&str, &str, &str); 5] = [
        ("", "colour = \"red\"", "unknown field `colour`"),
        ("listen", "listen = \"10.0.0.1\"", "socket address"),
        ("hub", "hub = \"hub.example:7400\"", "socket address"),
        (
            "code_validity_days",
            "code_validity_days = 0",
            "code_validity_days: must be 1 to 366",
        ),
        ("community", "community = \"one\"", "invalid type"),
    ];
    for (key, line, want) in cases {
        std::fs::write(&cfg, &original).expect("restore node.toml");
        // `hub` is absent from a node created without --hub: add it.
        let key = if key == "hub" { "" } else { key };
        let n = edit(&cfg, key, line);
        refused_at_start(&d, "node", &d.node, "node.toml", n, want);
    }
}

#[test]
fn hub_refuses_unknown_key_and_bad_values_with_file_and_line() {
    let d = dirs();
    let cfg = d.hub.join("hub.toml");
    let original = std::fs::read_to_string(&cfg).expect("hub.toml");
    for (key, line, want) in [
        ("", "lisen = \"0.0.0.0:7400\"", "unknown field `lisen`"),
        ("listen", "listen = \"0.0.0.0:99999\"", "socket address"),
        ("name", "name = \"\"", "name: must be 1 to 64 bytes"),
    ] {
        std::fs::write(&cfg, &original).expect("restore hub.toml");
        let n = edit(&cfg, key, line);
        refused_at_start(&d, "hub", &d.hub, "hub.toml", n, want);
    }
}

#[test]
fn gate_refuses_unknown_key_and_bad_values_with_file_and_line() {
    let d = dirs();
    let cfg = d.gate.join("gate.toml");
    let original = std::fs::read_to_string(&cfg).expect("gate.toml");
    for (key, line, want) in [
        ("", "scaner = \"/dev/ttyUSB0\"", "unknown field `scaner`"),
        (
            "direction",
            "direction = \"sideways\"",
            "unknown variant `sideways`",
        ),
        ("node", "node = \"300.1.1.1:7300\"", "socket address"),
        (
            "root_public_key",
            "root_public_key = \"abcd\"",
            "root_public_key: a public key is 64 hex",
        ),
        (
            "gate_id",
            "gate_id = \"\"",
            "gate_id: must be 1 to 32 letters, digits",
        ),
        // An escape sequence would reach the guard's terminal and every log line.
        (
            "gate_id",
            "gate_id = \"north\\u001b[2J\"",
            "gate_id: must be 1 to 32 letters, digits",
        ),
    ] {
        std::fs::write(&cfg, &original).expect("restore gate.toml");
        let n = edit(&cfg, key, line);
        refused_at_start(&d, "gate", &d.gate, "gate.toml", n, want);
    }
    // A table: the refused value is on the line after its header.
    std::fs::write(&cfg, &original).expect("restore gate.toml");
    let n = edit(&cfg, "", "[scanner]\nspool = \"scans\"");
    let want = "spool: must be an absolute directory path";
    refused_at_start(&d, "gate", &d.gate, "gate.toml", n + 1, want);
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/examples")
        .join(name)
}

/// Every field of the parsed configuration appears as a `key =` line of the example; a
/// table as its `[key]` header with each of its fields below it.
fn assert_every_field_shown(name: &str, cfg: &impl serde::Serialize) {
    let text = std::fs::read_to_string(example(name)).expect("example");
    let value = serde_json::to_value(cfg).expect("config as JSON");
    for (key, v) in value.as_object().expect("a table") {
        match v.as_object() {
            // A table: its header and each of its keys.
            Some(table) => {
                assert!(
                    text.lines().any(|l| l == format!("[{key}]")),
                    "deploy/examples/{name} does not show `[{key}]`"
                );
                for sub in table.keys() {
                    assert!(
                        text.lines().any(|l| l.starts_with(&format!("{sub} ="))),
                        "deploy/examples/{name} does not show `{sub}` of [{key}]"
                    );
                }
            }
            None => assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} ="))),
                "deploy/examples/{name} does not show `{key}`"
            ),
        }
    }
}

#[test]
fn documented_examples_parse_with_the_real_parser() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    for name in ["node.toml", "hub.toml", "gate.toml"] {
        std::fs::copy(example(name), tmp.path().join(name)).expect("copy example");
    }
    // The example's [web] names its TLS files; the parser checks that they can be read
    // (whether they hold a certificate and its key is the pages' check, tests/it/web/https.rs).
    for file in ["web.crt", "web.key"] {
        std::fs::write(tmp.path().join(file), "").expect("a TLS file");
    }
    let nd = NodeDir(tmp.path().to_path_buf());
    let node = nd.read_config().expect("deploy/examples/node.toml");
    assert_every_field_shown("node.toml", &node);
    let hub = nd.read_hub_config().expect("deploy/examples/hub.toml");
    assert_every_field_shown("hub.toml", &hub);
    let gate = GateDir(tmp.path().to_path_buf())
        .read_config()
        .expect("deploy/examples/gate.toml");
    assert_every_field_shown("gate.toml", &gate);
}

#[test]
fn every_option_of_the_examples_is_explained() {
    // Each `key = value` line follows a comment: an option added without documentation fails.
    for name in ["node.toml", "hub.toml", "gate.toml"] {
        let text = std::fs::read_to_string(example(name)).expect("example");
        let mut prev = "";
        for line in text.lines() {
            if !line.starts_with('#') && line.contains(" = ") {
                assert!(
                    prev.starts_with('#'),
                    "{name}: `{line}` has no comment above it"
                );
            }
            prev = line;
        }
    }
}
