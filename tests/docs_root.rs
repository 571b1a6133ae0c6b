//! Every shell walk-through in README.md and docs/ runs here, as a reader
//! would paste it, so a doc can no longer drift from the code.
//!
//! Each fenced ```sh block carries a marker on the line before it:
//!
//! - `<!-- test: run OPTIONS -->`: the block runs, with these options:
//!   - `session=NAME`: the blocks of one file with the same session run in
//!     one sandbox, in order (a set-up, its measurements, its clean-up);
//!   - `prompts`: a transcript: lines starting with `$ ` or `# ` are
//!     commands (a `# ` line typed into a root shell, not a comment),
//!     every other line is their output and is not run;
//!   - `as=nobody`: run as uid 65534, with a /dev/net/tun open to users (as
//!     udev makes it), for the rootless lab;
//!   - `needs=TOOL,...`: tools the block runs besides `ip` and `bash`;
//!   - `expect="TEXT"` (or `'TEXT'`): the block's output must contain
//!     TEXT (repeatable).
//! - `<!-- test: skip: REASON -->`: the block cannot run here (a second
//!   host, dockerd, podman); the reason says why and what tests it instead.
//!
//! A block without a marker fails the test (`every_sh_block_is_marked`).
//!
//! How a block runs: as root, in a sandbox of its own made by `unshare
//! --mount --net --pid --fork --kill-child --mount-proc`: a private network
//! namespace (with `lo` up), tmpfs on /run and /tmp (so the fixed names a
//! doc uses, `ip netns` names like c1, /run/vxswitch/vxswitch.sock, /tmp
//! paths, never meet a parallel test's or the host's), and a PID namespace
//! whose end kills whatever the block left running. The block is piped
//! into `bash` with `errexit` and `pipefail` (exported through SHELLOPTS,
//! so a shell the block starts, like the rootless lab's `unshare`, reads
//! the rest of the block as it would from a terminal and stops at the
//! first failing command as well). `vxswitch` on PATH is the binary under
//! test; the working directory has `target/release/vxswitch` pointing at
//! it, and `cargo build` is a no-op, so a block that builds first runs as
//! written. The process is killed on timeout and when the test fails
//! (`Sandbox`'s drop), which takes the whole sandbox down with it.
//!
//! Needs root; without it (or a tool) a test skips with a printed reason,
//! and with `CI=true` it fails instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vxswitch");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Longest a file's blocks may run (pktgen's measurements take ~30 s).
const TIMEOUT: Duration = Duration::from_secs(300);

/// The documents whose sh blocks are checked here.
const DOCS: &[&str] = &[
    "README.md",
    "docs/cli.md",
    "docs/cni.md",
    "docs/docker.md",
    "docs/gateway.md",
    "docs/pktgen.md",
    "docs/rootless.md",
    "docs/vxlan.md",
    "docs/benchmarks.md",
    "docs/benchmarks-system.md",
    "docs/protocol.md",
    "docs/cluster.md",
    "docs/security.md",
    "docs/fuzzing.md",
    "docs/uplink.md",
    "docs/reliability.md",
    "docs/observability.md",
    "docs/veth.md",
    "docs/fastpath.md",
];

/// Documents not checked yet, each with the reason.
const PENDING: &[(&str, &str)] = &[
    ("docs/architecture.md", "no sh blocks"),
    ("docs/benchmarks.md", "not marked yet"),
    ("docs/benchmarks-system.md", "not marked yet"),
    ("docs/protocol.md", "not marked yet"),
];

#[derive(Clone, Debug, Default, PartialEq)]
struct RunOpts {
    session: Option<String>,
    prompts: bool,
    as_nobody: bool,
    needs: Vec<String>,
    expect: Vec<String>,
}

#[derive(Clone, Debug, PartialEq)]
enum Marker {
    Run(RunOpts),
    Skip(String),
    Missing,
}

#[derive(Clone, Debug)]
struct Block {
    /// Line of the opening fence, 1-based.
    line: usize,
    marker: Marker,
    text: String,
}

/// The ```sh blocks of a markdown text, with their markers.
fn sh_blocks(md: &str) -> Vec<Block> {
    let lines: Vec<&str> = md.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let trimmed = lines[i].trim_start();
        let Some(lang) = trimmed.strip_prefix("```") else {
            i += 1;
            continue;
        };
        let indent = lines[i].len() - trimmed.len();
        let open = i;
        let mut body = String::new();
        i += 1;
        while i < lines.len() && lines[i].trim() != "```" {
            let l = lines[i];
            body.push_str(
                l.get(indent.min(l.len() - l.trim_start().len())..)
                    .unwrap_or(l),
            );
            body.push('\n');
            i += 1;
        }
        i += 1; // the closing fence
        if lang.trim() != "sh" {
            continue;
        }
        let marker = lines[..open]
            .iter()
            .rev()
            .find(|l| !l.trim().is_empty())
            .map_or(Marker::Missing, |l| parse_marker(l.trim()));
        out.push(Block {
            line: open + 1,
            marker,
            text: body,
        });
    }
    out
}

/// `<!-- test: run ... -->` or `<!-- test: skip: REASON -->`.
fn parse_marker(line: &str) -> Marker {
    let Some(inner) = line
        .strip_prefix("<!-- test:")
        .and_then(|l| l.strip_suffix("-->"))
    else {
        return Marker::Missing;
    };
    let inner = inner.trim();
    if let Some(reason) = inner.strip_prefix("skip:") {
        return match reason.trim() {
            "" => panic!("a skip marker needs a reason: {line}"),
            r => Marker::Skip(r.to_string()),
        };
    }
    let Some(opts) = inner.strip_prefix("run") else {
        panic!("unknown test marker (run OPTIONS or skip: REASON): {line}");
    };
    let mut o = RunOpts::default();
    for word in split_words(opts) {
        match word.split_once('=') {
            None if word == "prompts" => o.prompts = true,
            Some(("session", v)) => o.session = Some(v.to_string()),
            Some(("as", "nobody")) => o.as_nobody = true,
            Some(("needs", v)) => o.needs.extend(v.split(',').map(str::to_string)),
            Some(("expect", v)) => o.expect.push(v.to_string()),
            _ => panic!("unknown option {word:?} in test marker: {line}"),
        }
    }
    Marker::Run(o)
}

/// Splits on spaces, keeping `key="a b"` and `key='a "b"'` together
/// (the outer quotes removed).
fn split_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match c {
            '"' | '\'' if quote.is_none() => quote = Some(c),
            c if quote == Some(c) => quote = None,
            ' ' if quote.is_none() => {
                if !cur.is_empty() {
                    words.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// The commands of a transcript: `$ ` and `# ` lines and their `\`
/// continuations; everything else is output.
fn transcript_commands(text: &str) -> String {
    let mut out = String::new();
    let mut continued = false;
    for line in text.lines() {
        let cmd = if continued {
            Some(line)
        } else {
            line.strip_prefix("$ ").or_else(|| line.strip_prefix("# "))
        };
        if let Some(c) = cmd {
            out.push_str(c);
            out.push('\n');
            continued = c.trim_end().ends_with('\\');
        }
    }
    out
}

fn read_doc(doc: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(doc))
        .unwrap_or_else(|e| panic!("cannot read {doc}: {e}"))
}

/// Whether root tests may run here: root, and the tools at hand. Prints
/// why not; with CI=true, panics instead.
fn can_run(doc: &str, tools: &[&str]) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let mut missing: Vec<String> = Vec::new();
    let is_root = std::fs::metadata("/proc/self").is_ok_and(|m| {
        use std::os::unix::fs::MetadataExt;
        m.uid() == 0
    });
    if !is_root {
        missing.push("root".into());
    }
    for t in tools {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(t).is_file()));
        if !found {
            missing.push(format!("`{t}`"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let why = format!("{doc}: skipped, needs {}", missing.join(", "));
    assert!(!ci, "{why} (CI=true: a skip is a failure)");
    eprintln!("{why}");
    false
}

/// A sandbox running one script, killed (with everything in it) on drop.
struct Sandbox {
    child: Option<Child>,
    dir: PathBuf,
}

impl Sandbox {
    fn start(name: &str, script: &str, as_nobody: bool) -> Sandbox {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("docs-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("script.sh"), script).unwrap();
        std::fs::write(dir.join("sandbox.sh"), SANDBOX).unwrap();
        let log = std::fs::File::create(dir.join("output")).unwrap();
        let child = Command::new("unshare")
            .args([
                "--mount",
                "--net",
                "--pid",
                "--fork",
                "--kill-child",
                "--mount-proc",
                "bash",
            ])
            .arg(dir.join("sandbox.sh"))
            .env("VX_BIN", BIN)
            .env("DOC_SCRIPT", dir.join("script.sh"))
            .env("AS_NOBODY", if as_nobody { "1" } else { "" })
            .env_remove("VXSWITCH_SOCKET")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run unshare");
        Sandbox {
            child: Some(child),
            dir,
        }
    }

    /// Waits for the script; its exit status (None: timed out) and output.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let end = Instant::now() + limit;
        let mut child = self.child.take().unwrap();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break Some(st.code().unwrap_or(-1));
            }
            if Instant::now() > end {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let out = std::fs::read_to_string(self.dir.join("output")).unwrap_or_default();
        (status, out)
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // --kill-child: the sandbox's first process, and so the PID
            // namespace and everything in it, dies with unshare.
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs inside the sandbox, as its PID 1 (root in fresh namespaces).
const SANDBOX: &str = r#"
set -o errexit -o pipefail
# The binary and the block may live under /tmp (a checkout there): hold
# them open before the tmpfs mounts hide their paths.
exec 3<"$VX_BIN" 4<"$DOC_SCRIPT"
mount -t tmpfs -o mode=0755 vxswitch-docs /run
mount -t tmpfs -o mode=1777 vxswitch-docs /tmp
ip link set lo up
d=/tmp/docs
mkdir -p $d/bin $d/home $d/work/target/release
cat <&3 >$d/bin/vxswitch
chmod 0755 $d/bin/vxswitch
ln -s $d/bin/vxswitch $d/work/target/release/vxswitch
printf '%s\n' '#!/bin/sh' \
    'case "$*" in "build --release") exit 0;; esac' \
    'echo "cargo $*: the docs test stands in only for cargo build --release" >&2; exit 1' \
    > $d/bin/cargo
chmod 0755 $d/bin/cargo
cat <&4 >$d/script.sh
exec 3<&- 4<&-
export PATH=$d/bin:$PATH HOME=$d/home SHELL=/bin/bash
cd $d/work
run_as=()
if [ -n "$AS_NOBODY" ]; then
    mknod -m 0666 $d/tun c 10 200
    mount --bind $d/tun /dev/net/tun
    chown -R 65534:65534 $d/home $d/work
    run_as=(setpriv --reuid=65534 --regid=65534 --clear-groups)
fi
export SHELLOPTS
status=0
cat $d/script.sh | "${run_as[@]}" bash || status=$?
if [ $status -ne 0 ]; then
    echo "--- the block failed with status $status; logs in the sandbox:"
    for f in /run/vxswitch/*.log /tmp/*.log /tmp/*/*.log $d/home/*.log; do
        [ -f "$f" ] && { echo "--- $f"; cat "$f"; }
    done
fi
exit $status
"#;

/// Runs the marked blocks of `doc`: each on its own, a session's together.
fn run_doc(doc: &str) {
    let blocks = sh_blocks(&read_doc(doc));
    let mut groups: Vec<(String, RunOpts, String)> = Vec::new();
    let mut sessions: BTreeMap<String, usize> = BTreeMap::new();
    for b in &blocks {
        let Marker::Run(o) = &b.marker else { continue };
        let text = if o.prompts {
            transcript_commands(&b.text)
        } else {
            b.text.clone()
        };
        let text = format!("# {doc}:{}\n{text}", b.line);
        match o.session.as_ref().and_then(|s| sessions.get(s)) {
            Some(&i) => {
                let g = &mut groups[i];
                g.2.push_str(&text);
                g.1.needs.extend(o.needs.iter().cloned());
                g.1.expect.extend(o.expect.iter().cloned());
                g.1.as_nobody |= o.as_nobody;
            }
            None => {
                if let Some(s) = &o.session {
                    sessions.insert(s.clone(), groups.len());
                }
                let name = format!("{}-{}", doc.replace(['/', '.'], "_"), b.line);
                groups.push((name, o.clone(), text));
            }
        }
    }
    assert!(!groups.is_empty(), "{doc} has no runnable block");
    let mut tools = vec!["unshare", "bash", "ip"];
    for g in &groups {
        tools.extend(g.1.needs.iter().map(String::as_str));
        if g.1.as_nobody {
            tools.push("setpriv");
        }
    }
    if !can_run(doc, &tools) {
        return;
    }
    for (name, opts, script) in groups {
        let sandbox = Sandbox::start(&name, &script, opts.as_nobody);
        let (status, out) = sandbox.finish(TIMEOUT);
        let first = script
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches("# ");
        // Shown with --nocapture (and by the harness on failure).
        println!("=== {first}\n{out}");
        match status {
            Some(0) => {}
            Some(code) => panic!("{first}: the block exited with status {code}:\n{out}"),
            None => panic!(
                "{first}: the block did not finish within {} s:\n{out}",
                TIMEOUT.as_secs()
            ),
        }
        for want in &opts.expect {
            assert!(
                out.contains(want.as_str()),
                "{first}: the output lacks {want:?}:\n{out}"
            );
        }
    }
}

#[test]
fn every_sh_block_is_marked() {
    let mut bad = Vec::new();
    for doc in DOCS {
        for b in sh_blocks(&read_doc(doc)) {
            if b.marker == Marker::Missing {
                bad.push(format!(
                    "{doc}:{}: no `<!-- test: run -->` or `<!-- test: skip: REASON -->` before \
                     this ```sh block",
                    b.line
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn every_doc_is_listed() {
    let mut docs: Vec<String> = std::fs::read_dir(Path::new(ROOT).join("docs"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    for d in docs {
        assert!(
            DOCS.contains(&d.as_str()) || PENDING.iter().any(|(p, _)| *p == d),
            "{d} is in neither DOCS nor PENDING of tests/docs_root.rs"
        );
    }
    for (d, why) in PENDING {
        if *why == "no sh blocks" {
            assert!(sh_blocks(&read_doc(d)).is_empty(), "{d} has sh blocks now");
        }
    }
}

#[test]
fn markers_and_transcripts_parse() {
    let md = "text\n<!-- test: run session=s as=nobody prompts needs=nft,ping expect=\"lost: 0\" \
              expect='{\"a\": 1}' -->\n\
              ```sh\n$ echo a \\\n  b\nout\n# id -u\n0\n```\n\n   <!-- test: skip: two hosts -->\n   \
              ```sh\n   echo x\n   ```\n```sh\ntrue\n```\n```toml\nx = 1\n```\n";
    let b = sh_blocks(md);
    assert_eq!(b.len(), 3);
    assert_eq!(
        b[0].marker,
        Marker::Run(RunOpts {
            session: Some("s".into()),
            prompts: true,
            as_nobody: true,
            needs: vec!["nft".into(), "ping".into()],
            expect: vec!["lost: 0".into(), "{\"a\": 1}".into()],
        })
    );
    assert_eq!(b[0].line, 3);
    assert_eq!(transcript_commands(&b[0].text), "echo a \\\n  b\nid -u\n");
    assert_eq!(b[1].marker, Marker::Skip("two hosts".into()));
    assert_eq!(b[1].text, "echo x\n");
    assert_eq!(b[2].marker, Marker::Missing);
}

#[test]
fn readme_demo() {
    // The README's first command, `cargo run --release -- demo`, is
    // `vxswitch demo`: it runs here in a sandbox like the walk-throughs.
    if !can_run("README.md demo", &["unshare", "bash", "ip"]) {
        return;
    }
    let sandbox = Sandbox::start("readme-demo", "vxswitch demo --seconds 1\n", false);
    let (status, out) = sandbox.finish(TIMEOUT);
    assert_eq!(status, Some(0), "vxswitch demo failed:\n{out}");
    for want in [
        "c1 -> c2  10.99.0.12  ok",
        "$ vxswitch fdb show",
        "cleaned up: daemon stopped, 3 namespaces and their TAPs removed",
    ] {
        assert!(
            out.contains(want),
            "the demo's output lacks {want:?}:\n{out}"
        );
    }
}

#[test]
fn readme() {
    run_doc("README.md");
}

#[test]
fn cli() {
    run_doc("docs/cli.md");
}

#[test]
fn cni() {
    run_doc("docs/cni.md");
}

#[test]
fn docker() {
    // Every block needs dockerd (tests/docker_root.rs runs them): all are
    // marked skip, which every_sh_block_is_marked checks.
    let blocks = sh_blocks(&read_doc("docs/docker.md"));
    assert!(
        blocks.iter().all(|b| matches!(b.marker, Marker::Skip(_))),
        "docs/docker.md has a runnable block: give it a test"
    );
}

#[test]
fn gateway() {
    run_doc("docs/gateway.md");
}

#[test]
fn pktgen() {
    run_doc("docs/pktgen.md");
}

#[test]
fn rootless() {
    run_doc("docs/rootless.md");
}

#[test]
fn vxlan() {
    run_doc("docs/vxlan.md");
}

#[test]
fn protocol() {
    run_doc("docs/protocol.md");
}

#[test]
fn cluster() {
    run_doc("docs/cluster.md");
}

#[test]
fn security() {
    run_doc("docs/security.md");
}

#[test]
fn uplink() {
    run_doc("docs/uplink.md");
}

#[test]
fn veth() {
    run_doc("docs/veth.md");
}

#[test]
fn observability() {
    run_doc("docs/observability.md");
}

#[test]
fn fastpath() {
    run_doc("docs/fastpath.md");
}
