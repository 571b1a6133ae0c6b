#![no_main]
//! See docs/fuzzing.md and `vxswitch::fuzzing::control_line`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = vxswitch::fuzzing::control_line(data);
});
