//! The layering of the library, checked: each top-level module may import
//! only the modules below it (docs/architecture.md, "Map of the tree").
//! A lower layer that reaches up — the engine calling into the control
//! plane, a parser importing the switch — fails here with the file, the
//! line and the rule it breaks, before it becomes a knot.
//!
//! The check reads the `crate::NAME` paths of every non-comment line of
//! `src/NAME.rs` and `src/NAME/**.rs`; doc links in comments are free.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each module of `src/lib.rs` and what it may import, lowest first.
const LAYERS: &[(&str, &[&str])] = &[
    // The ground: no imports from the crate.
    ("sys", &[]),
    ("time", &[]),
    ("metrics", &[]),
    ("wire", &[]),
    // Pure building blocks.
    ("offload", &["wire"]),
    ("fdb", &["wire", "time"]),
    // Devices, sockets and the overlay's parts.
    ("ports", &["sys", "wire", "time"]),
    ("gateway", &["sys", "wire", "time", "metrics", "ports"]),
    (
        "vxlan",
        &["sys", "wire", "time", "metrics", "fdb", "offload"],
    ),
    ("pktgen", &["sys", "wire", "time", "metrics", "ports"]),
    // The eBPF fast path's loader and maps, beside the dataplane: the
    // control plane fills it from its ports and FDB.
    ("fastpath", &["sys", "wire", "time", "metrics", "fdb"]),
    // Seeing inside: metrics exposition (and later capture, events); the
    // engine and the control plane call it, never the reverse.
    (
        "observe",
        &["sys", "wire", "time", "metrics", "offload", "fdb"],
    ),
    // The cluster agent talks to the daemon through its own trait, for the
    // control plane to implement (ctl -> cluster, never the reverse).
    ("cluster", &["wire", "time", "metrics"]),
    // The engine.
    (
        "switch",
        &[
            "sys", "wire", "time", "metrics", "offload", "fdb", "vxlan", "gateway", "observe",
        ],
    ),
    // The control plane drives everything below it.
    (
        "ctl",
        &[
            "sys", "wire", "time", "metrics", "offload", "fdb", "ports", "gateway", "vxlan",
            "switch", "cluster", "observe", "fastpath",
        ],
    ),
    // Engine plugins: clients of the control socket, never of the engine.
    ("docker", &["ctl", "wire", "time", "ports"]),
    ("cni", &["ctl", "wire", "time", "ports"]),
    // The fuzz targets' and property tests' way in: on top, it may call
    // whatever parser it runs (nothing imports it).
    (
        "fuzzing",
        &[
            "wire", "time", "metrics", "offload", "fdb", "gateway", "vxlan", "cluster", "switch",
            "ctl", "docker", "cni",
        ],
    ),
];

/// Names re-exported at the crate root, and the module they come from.
const ROOT_ALIASES: &[(&str, &str)] = &[("seqpacket_pair", "sys")];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The `crate::NAME` paths a line of code uses.
fn crate_paths(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `vxswitch_crate::` or `$crate::` are other things.
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            out.push(name);
        }
        rest = after;
    }
    out
}

#[test]
fn every_module_of_the_library_has_a_layer() {
    let lib = std::fs::read_to_string(src().join("lib.rs")).expect("read src/lib.rs");
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let l = l.strip_prefix("pub ").unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';')
        })
        .collect();
    let known: Vec<&str> = LAYERS.iter().map(|(m, _)| *m).collect();
    for m in &declared {
        assert!(
            known.contains(m),
            "src/lib.rs declares module `{m}`, which has no layer in tests/layers.rs: \
             add it to LAYERS with what it may import (and to docs/architecture.md's map)"
        );
    }
    for m in &known {
        assert!(
            declared.contains(m),
            "tests/layers.rs lists `{m}`, which src/lib.rs does not declare"
        );
    }
}

#[test]
fn lower_layers_never_import_upper_ones() {
    let allowed: BTreeMap<&str, &[&str]> = LAYERS.iter().copied().collect();
    let mut broken = Vec::new();
    for (module, may) in LAYERS {
        let mut files = Vec::new();
        let single = src().join(format!("{module}.rs"));
        if single.is_file() {
            files.push(single);
        }
        rust_files(&src().join(module), &mut files);
        assert!(!files.is_empty(), "no source for module `{module}`");
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read source");
            for (n, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for name in crate_paths(line) {
                    let target = ROOT_ALIASES
                        .iter()
                        .find(|(alias, _)| *alias == name)
                        .map_or(name.as_str(), |(_, m)| m);
                    if target == *module || !allowed.contains_key(target) {
                        continue;
                    }
                    if !may.contains(&target) {
                        broken.push(format!(
                            "{}:{}: `{module}` imports `{target}`, which it may not \
                             (it may import: {may:?})",
                            file.strip_prefix(src().parent().unwrap())
                                .unwrap_or(&file)
                                .display(),
                            n + 1
                        ));
                    }
                }
            }
        }
    }
    assert!(
        broken.is_empty(),
        "imports that run up the layers:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_check_sees_an_import_that_runs_up() {
    // The parser itself: what it must and must not count.
    assert_eq!(
        crate_paths("use crate::switch::stats::Counter;"),
        ["switch"]
    );
    assert_eq!(
        crate_paths("let x = crate::fdb::Fdb::new(crate::time::Millis(0));"),
        ["fdb", "time"]
    );
    assert!(crate_paths("macro_rules! m { () => { $crate::x } }").is_empty());
}
