//! kiln: runs Kimi Linear models from low-bit GGUF files.
//!
//! The data path, top to bottom: [`gguf`] maps the file and hands out zero-copy tensor views;
//! [`quant`] knows every block format bit for bit.

pub mod backend;
pub mod chat;
pub mod gguf;
pub mod model;
pub mod quant;
pub mod tokenizer;
