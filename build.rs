//! Compiles the eBPF fast path (bpf/fastpath.bpf.c, docs/fastpath.md) with
//! clang when it is there. Without clang (or libbpf's headers) the build
//! still succeeds: nothing is embedded, and the daemon reports the fast path
//! unavailable and runs the userspace path.

use std::env;
use std::path::PathBuf;
use std::process::Command;

const SOURCE: &str = "bpf/fastpath.bpf.c";

fn main() {
    println!("cargo::rustc-check-cfg=cfg(vxswitch_bpf)");
    println!("cargo::rerun-if-changed={SOURCE}");
    println!("cargo::rerun-if-env-changed=VXSWITCH_CLANG");
    println!("cargo::rerun-if-env-changed=PATH");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("fastpath.bpf.o");
    let clang = env::var("VXSWITCH_CLANG").unwrap_or_else(|_| "clang".to_string());
    if clang.is_empty() || clang == "none" {
        note("VXSWITCH_CLANG is empty: building without the eBPF fast path");
        return;
    }
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .args([
            "-I/usr/include/x86_64-linux-gnu",
            "-I/usr/include/aarch64-linux-gnu",
        ])
        .arg("-c")
        .arg(SOURCE)
        .arg("-o")
        .arg(&object)
        .output();
    match result {
        Ok(o) if o.status.success() => {
            println!("cargo::rustc-cfg=vxswitch_bpf");
        }
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let first = err.lines().find(|l| l.contains("error")).unwrap_or("");
            note(&format!(
                "{clang} could not compile {SOURCE} ({first}); building without the eBPF fast path \
                 (apt-get install clang libbpf-dev and rebuild)"
            ));
        }
        Err(e) => {
            // No clang at all: the ordinary case on a machine with only Rust.
            // Say nothing loud; the daemon reports it when asked for the fast path.
            let _ = e;
        }
    }
}

fn note(msg: &str) {
    println!("cargo::warning={msg}");
}
