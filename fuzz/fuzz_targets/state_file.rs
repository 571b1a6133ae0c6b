#![no_main]
//! See docs/fuzzing.md and `vxswitch::fuzzing::state_file`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vxswitch::fuzzing::state_file(data);
});
