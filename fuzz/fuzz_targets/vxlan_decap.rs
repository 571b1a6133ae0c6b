#![no_main]
//! See docs/fuzzing.md and `vxswitch::fuzzing::vxlan_decap`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vxswitch::fuzzing::vxlan_decap(data);
});
