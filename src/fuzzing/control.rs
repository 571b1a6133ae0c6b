//! `control_line`: what a client writes to the control socket;
//! `state_file`: the bytes of `--state-dir`'s `state.json`.

use std::path::Path;

use crate::ctl::persist;
use crate::ctl::proto::{encode_reply, parse_request, strip_os_error, Response, MAX_LINE};
use crate::ctl::CtlError;

/// Runs what a client sent through the server's line splitting and
/// `parse_request`, at most 64 lines. Asserted: a request that parses
/// re-encodes (`Request::to_line`) to a line that parses to the same
/// request; a refusal encodes as a reply line a client reads back, with
/// its message intact.
pub fn control_line(data: &[u8]) -> usize {
    let mut parsed = 0;
    for line in data.split(|&b| b == b'\n').take(64) {
        // As `Conn::answer`: blank lines are skipped.
        let line = line.trim_ascii();
        if line.is_empty() {
            continue;
        }
        if line.len() > MAX_LINE {
            // The server refuses the line before parsing it.
            continue;
        }
        match parse_request(line) {
            Ok(req) => {
                parsed += 1;
                let again = req.to_line();
                assert_eq!(again.last(), Some(&b'\n'));
                let back = parse_request(&again[..again.len() - 1]);
                assert_eq!(
                    back.as_ref(),
                    Ok(&req),
                    "a request survives its own encoding"
                );
            }
            Err(e) => check_error_line(&e),
        }
    }
    parsed
}

fn check_error_line(e: &CtlError) {
    let line = encode_reply(&Err(e.clone()));
    assert_eq!(line.last(), Some(&b'\n'));
    assert!(
        !line[..line.len() - 1].contains(&b'\n'),
        "a reply is one line"
    );
    let r: Response = serde_json::from_slice(&line).expect("an error reply parses");
    assert!(!r.ok);
    let back = r.error.expect("an error reply carries the error");
    assert_eq!((back.kind, &back.message), (e.kind, &e.message));
    let _ = strip_os_error(&e.message);
}

/// Parses a state file as the daemon does at start. Asserted: a file that
/// parses is written back (as `Store::save` would) to bytes that parse to
/// the same state.
pub fn state_file(data: &[u8]) -> bool {
    let Ok(state) = persist::parse(data, Path::new("/fuzz/state.json")) else {
        return false;
    };
    let bytes = serde_json::to_vec_pretty(&state).expect("a state serializes");
    let back = persist::parse(&bytes, Path::new("/fuzz/state.json"))
        .expect("a state the daemon wrote parses");
    assert_eq!(back, state, "a state survives being written");
    true
}
