#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mjpegd_fuzzing::digest(data));
