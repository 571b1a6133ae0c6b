#![no_main]
//! See docs/fuzzing.md and `vxswitch::fuzzing::cni_config`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vxswitch::fuzzing::cni_config(data);
});
