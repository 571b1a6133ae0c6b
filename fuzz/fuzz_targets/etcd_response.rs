#![no_main]
//! See docs/fuzzing.md and `vxswitch::fuzzing::etcd_response`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vxswitch::fuzzing::etcd_response(data);
});
