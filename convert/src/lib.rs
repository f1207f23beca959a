//! kiln-convert: Hugging Face Kimi Linear checkpoints → llama.cpp-compatible GGUF.
//!
//! The pipeline, top to bottom: [`hf`] reads `config.json` and the safetensors shards;
//! [`mapping`] names every GGUF tensor and says how its rows are made from HF tensors;
//! [`recipe`] picks each tensor's ggml type; [`metadata`] holds the `kimi-linear.*` keys;
//! [`vocab`] turns the tiktoken tokenizer into llama.cpp's vocabulary keys; [`write`] streams
//! rows through quantization into the GGUF writer; [`convert`] ties them together for a
//! checkpoint; [`requant`] re-quantizes a GGUF; [`cli`] is the command line.

pub mod cli;
pub mod convert;
pub mod hf;
pub mod mapping;
pub mod metadata;
pub mod recipe;
pub mod requant;
pub mod synth;
pub mod vocab;
pub mod write;
