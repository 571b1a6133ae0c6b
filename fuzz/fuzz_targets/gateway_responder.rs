#![no_main]
//! See docs/fuzzing.md and `vxswitch::fuzzing::gateway_responder`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vxswitch::fuzzing::gateway_responder(data);
});
