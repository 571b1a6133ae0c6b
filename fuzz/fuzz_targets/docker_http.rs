#![no_main]
//! See docs/fuzzing.md and `vxswitch::fuzzing::docker_http`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vxswitch::fuzzing::docker_http(data);
});
