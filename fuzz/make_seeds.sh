#!/bin/bash
# Remakes fuzz/seeds/ from a capture (docs/fuzzing.md, "Where the seeds
# come from"): writes every candidate, minimises each target's with
# `cargo fuzz cmin` on edge coverage, and names what is kept after the
# candidate it came from. Run from the repository's root, as root:
#
#   cargo build && unshare --net python3 fuzz/capture.py /tmp/cap target/debug/vxswitch
#   fuzz/make_seeds.sh /tmp/cap
set -euo pipefail
cap=$(realpath "$1")
VXSWITCH_SEEDS_OUT=$cap cargo test --test props write_seed_candidates -- --ignored
for t in frame_ingress vxlan_decap gateway_responder control_line docker_http cni_config \
         state_file etcd_response; do
    work=$(mktemp -d)
    cp -r "$cap/$t" "$work/min"
    cargo +nightly fuzz cmin "$t" "$work/min" -- -rss_limit_mb=1024 -timeout=5 \
        -use_counters=0 >"$work/log" 2>&1 || { tail "$work/log"; exit 1; }
    rm -rf "fuzz/seeds/$t"
    mkdir -p "fuzz/seeds/$t"
    # cmin names files by their SHA-1: give each its candidate's name back.
    declare -A name=()
    for f in "$cap/$t"/*; do
        h=$(sha1sum "$f" | cut -d' ' -f1)
        [ -n "${name[$h]:-}" ] || name[$h]=$(basename "$f")
    done
    for f in "$work/min"/*; do
        h=$(sha1sum "$f" | cut -d' ' -f1)
        cp "$f" "fuzz/seeds/$t/${name[$h]:-fuzzed-${h:0:12}}"
    done
    unset name
    echo "$t: $(ls "$cap/$t" | wc -l) candidates, $(ls "fuzz/seeds/$t" | wc -l) kept"
    rm -rf "$work"
done
