use thiserror::Error;

/// What can go wrong while building a tokenizer from a GGUF vocabulary or using it.
#[derive(Debug, Error)]
pub enum TokenizerError {
    #[error(transparent)]
    Gguf(#[from] crate::gguf::GgufError),
    #[error("{file}: metadata key `{key}` is missing or has the wrong type (expected {expected})")]
    Key {
        file: String,
        key: &'static str,
        expected: &'static str,
    },
    #[error("{file}: tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`)")]
    Model { file: String, model: String },
    #[error(
        "{file}: pre-tokenizer `{pre}` is not supported (kimi-k2, gpt2, default, llama-bpe, qwen2)"
    )]
    Pre { file: String, pre: String },
    #[error("{file}: `tokenizer.ggml.merges` is missing; only pre-tokenizer `kimi-k2` may omit it")]
    NoMerges { file: String },
    #[error("{file}: `{key}` has {got} entries but the vocabulary has {want} tokens")]
    Length {
        file: String,
        key: &'static str,
        got: usize,
        want: usize,
    },
    #[error("{file}: merge #{index} `{merge}` is not two tokens separated by one space")]
    Merge {
        file: String,
        index: usize,
        merge: String,
    },
    #[error("{file}: byte {byte:#04x} has no token, so byte-level BPE cannot encode every text")]
    MissingByte { file: String, byte: u8 },
    #[error("token id {id} is out of range (vocabulary of {n_vocab})")]
    BadId { id: u32, n_vocab: usize },
}
