#![no_main]
//! See docs/fuzzing.md and `vxswitch::fuzzing::frame_ingress`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vxswitch::fuzzing::frame_ingress(data);
});
