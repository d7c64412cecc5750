//! Parsers for the byte streams mjpegd reads: raw concatenated JPEGs and multipart/x-mixed-replace bodies.
