//! The configuration files an operator writes: parsed and checked by the real readers (from
//! a file, as at start); what is accepted is written back and read again unchanged.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use menjin_store::files::{GateDir, NodeDir};

/// One folder per process for the files the targets write.
fn dir() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder for the configurations");
        let path = dir.path().to_path_buf();
        (dir, path)
    })
    .1
}

fn write(name: &str, data: &[u8]) {
    std::fs::write(dir().join(name), data).expect("write the configuration");
}

/// `node.toml`.
pub fn node_toml(data: &[u8]) {
    write("node.toml", data);
    let node = NodeDir(dir().to_path_buf());
    if let Ok(cfg) = node.read_config() {
        node.write_config(&cfg)
            .expect("an accepted node.toml is written");
        let again = node.read_config().expect("a written node.toml reads back");
        assert_eq!(
            format!("{again:?}"),
            format!("{cfg:?}"),
            "node.toml round trip"
        );
    }
}

/// `hub.toml`.
pub fn hub_toml(data: &[u8]) {
    write("hub.toml", data);
    let node = NodeDir(dir().to_path_buf());
    if let Ok(cfg) = node.read_hub_config() {
        node.write_hub_config(&cfg)
            .expect("an accepted hub.toml is written");
        let again = node
            .read_hub_config()
            .expect("a written hub.toml reads back");
        assert_eq!(
            format!("{again:?}"),
            format!("{cfg:?}"),
            "hub.toml round trip"
        );
    }
}

/// `gate.toml`.
pub fn gate_toml(data: &[u8]) {
    write("gate.toml", data);
    let gate = GateDir(dir().to_path_buf());
    if let Ok(cfg) = gate.read_config() {
        gate.write_config(&cfg)
            .expect("an accepted gate.toml is written");
        let again = gate.read_config().expect("a written gate.toml reads back");
        assert_eq!(
            format!("{again:?}"),
            format!("{cfg:?}"),
            "gate.toml round trip"
        );
    }
}
