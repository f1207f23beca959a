//! kiln-convert: Hugging Face Kimi Linear checkpoints → llama.cpp-compatible GGUF.
//!
//! The pipeline, top to bottom: [`hf`] reads `config.json` and the safetensors shards;
//! [`mapping`] names every GGUF tensor and says how its rows are made from HF tensors;
//! [`recipe`] picks each tensor's ggml type; [`metadata`] holds the `kimi-linear.*` keys;
//! [`write`] streams rows through quantization into the GGUF writer; [`convert`] ties them
//! together for a checkpoint.

pub mod convert;
pub mod hf;
pub mod mapping;
pub mod metadata;
pub mod recipe;
pub mod synth;
pub mod write;
