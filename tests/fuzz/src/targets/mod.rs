//! The targets, one module per kind of input.

pub mod codes;
pub mod config;
pub mod feed;
pub mod images;
pub mod sync;
pub mod wire;
