#![no_main]
//! The HTTP request-head parser: any bytes give a request, "need more", or an error; never a panic.
use libfuzzer_sys::fuzz_target;
use mjpegd::http::request::{parse_head, Limits};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(request)) = parse_head(data, &Limits::default()) {
        assert!(request.path.starts_with('/'));
        let _ = request.keep_alive();
    }
});
