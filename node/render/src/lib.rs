//! Bytes in, bytes out: QR images of a code text (`qr`: PNG, SVG, terminal), the printable
//! pass (`pass`: one A6 HTML page), checks of an uploaded photo (`photo`), and reading a code
//! back from a PNG image (`qrimage`).
//!
//! What it must never do: open a socket, a database or a runtime; decode an image without a
//! bound on its size.

#![warn(unreachable_pub, missing_docs, unused_crate_dependencies)]

pub mod pass;
pub mod photo;
pub mod qr;
pub mod qrimage;
