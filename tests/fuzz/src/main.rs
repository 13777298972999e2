//! The libFuzzer entry: `MENJIN_FUZZ_TARGET` names the target (`menjin_fuzz::TARGETS`);
//! with `MENJIN_FUZZ_SEEDS` naming a folder, the target's seeds are written there first
//! (if it holds no file yet), before libFuzzer reads its corpus. `tests/fuzz/run.sh` sets
//! both.

#![no_main]

use std::sync::OnceLock;

static RUN: OnceLock<fn(&[u8])> = OnceLock::new();

fn init() {
    let name = std::env::var("MENJIN_FUZZ_TARGET").unwrap_or_default();
    let Some(target) = menjin_fuzz::target(&name) else {
        let names: Vec<_> = menjin_fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!("MENJIN_FUZZ_TARGET must be one of: {}", names.join(" "));
        std::process::exit(2);
    };
    if let Some(dir) = std::env::var_os("MENJIN_FUZZ_SEEDS") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("create the seed folder");
        let empty = std::fs::read_dir(&dir)
            .expect("read the seed folder")
            .next()
            .is_none();
        if empty {
            for (i, seed) in menjin_fuzz::seeds::seeds(target.name).iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i:02}")), seed).expect("write a seed");
            }
        }
    }
    RUN.set(target.run).expect("initialised once");
}

libfuzzer_sys::fuzz_target!(init: init(), |data: &[u8]| {
    (RUN.get().expect("initialised"))(data);
});
