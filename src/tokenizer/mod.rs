//! Byte-level BPE tokenizer built from a GGUF vocabulary (`tokenizer.ggml.model = "gpt2"`),
//! with the pre-tokenizers of the vocabularies kiln meets: `kimi-k2`, `gpt2`/`default`,
//! `llama-bpe` (llama3) and `qwen2`.
//!
//! - `bytes`: GPT-2's byte ↔ character mapping of token strings.
//! - `vocab`: what the GGUF holds, loaded and indexed.
//! - `pretokenize`: the split regexes.
//! - `special`: special tokens written in text.
//! - `bpe`: merging one word.
//! - `stream`: [`StreamDecoder`], UTF-8-safe streaming detokenization.

mod bpe;
pub mod bytes;
mod error;
mod pretokenize;
mod special;
mod stream;
mod vocab;

pub use error::TokenizerError;
pub use stream::StreamDecoder;
pub use vocab::TokenType;

use crate::gguf::Gguf;
use pretokenize::PreTokenizer;
use rustc_hash::FxHashMap;
use special::{Fragment, SpecialMatcher};
use std::path::Path;
use std::sync::Mutex;
use vocab::Vocab;

/// Words encoded once are remembered; prose repeats its words a lot. Bounded so a long
/// session cannot grow it without limit.
const CACHE_CAPACITY: usize = 1 << 16;

pub struct Tokenizer {
    vocab: Vocab,
    pre: PreTokenizer,
    special: SpecialMatcher,
    cache: Mutex<FxHashMap<Vec<u8>, Vec<u32>>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("pre", &self.vocab.pre)
            .field("n_vocab", &self.n_vocab())
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Opens a GGUF file (a full model or a `--vocab-only` file) and builds its tokenizer.
    pub fn open(path: impl AsRef<Path>) -> Result<Tokenizer, TokenizerError> {
        Tokenizer::from_gguf(&Gguf::open(path)?)
    }

    pub fn from_gguf(g: &Gguf) -> Result<Tokenizer, TokenizerError> {
        let vocab = Vocab::from_gguf(g)?;
        let pre = PreTokenizer::for_name(&vocab.pre).ok_or_else(|| TokenizerError::Pre {
            file: g.path().to_string(),
            pre: vocab.pre.clone(),
        })?;
        let special = SpecialMatcher::new(&vocab);
        Ok(Tokenizer {
            vocab,
            pre,
            special,
            cache: Mutex::new(FxHashMap::default()),
        })
    }

    /// Encodes `text`. `add_special` prepends BOS when the vocabulary asks for it
    /// (`tokenizer.ggml.add_bos_token`); `parse_special` turns control tokens written in the
    /// text (`<|im_end|>`) into their ids. User-defined tokens are always recognised, as in
    /// llama.cpp.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if add_special
            && self.vocab.add_bos
            && let Some(bos) = self.vocab.bos
        {
            out.push(bos);
        }
        self.special.split(text, parse_special, |frag| match frag {
            Fragment::Special(id) => out.push(id),
            Fragment::Text(t) => self.pre.split(t, |w| self.encode_word(w, &mut out)),
        });
        out
    }

    fn encode_word(&self, word: &str, out: &mut Vec<u32>) {
        let w = word.as_bytes();
        if self.pre.ignore_merges
            && let Some(&id) = self.vocab.id_of_bytes.get(w)
        {
            out.push(id);
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ids) = cache.get(w) {
            out.extend_from_slice(ids);
            return;
        }
        let start = out.len();
        bpe::encode_word(&self.vocab, w, out);
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(w.to_vec(), out[start..].to_vec());
    }

    /// The bytes token `id` stands for. Control tokens give their literal text when
    /// `render_special`, nothing otherwise (a chat shows no `<|im_end|>`).
    pub fn token_bytes(&self, id: u32, render_special: bool) -> Result<&[u8], TokenizerError> {
        let i = self.check(id)? as usize;
        Ok(match self.vocab.types[i] {
            TokenType::Control | TokenType::Unknown | TokenType::Unused if !render_special => &[],
            _ => &self.vocab.bytes[i],
        })
    }

    /// Decodes ids to text, special tokens written out (so encode with `parse_special` and
    /// decode round-trip). Invalid UTF-8 comes out as U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        self.decode_with(ids, true)
    }

    pub fn decode_with(&self, ids: &[u32], render_special: bool) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.token_bytes(id, render_special)?);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn check(&self, id: u32) -> Result<u32, TokenizerError> {
        if (id as usize) < self.vocab.texts.len() {
            Ok(id)
        } else {
            Err(TokenizerError::BadId {
                id,
                n_vocab: self.vocab.texts.len(),
            })
        }
    }

    pub fn n_vocab(&self) -> usize {
        self.vocab.texts.len()
    }

    /// The token's string as stored in the GGUF (byte-level characters for ordinary tokens).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.vocab.texts.get(id as usize).map(String::as_str)
    }

    pub fn token_type(&self, id: u32) -> Option<TokenType> {
        self.vocab.types.get(id as usize).copied()
    }

    /// The id of a special (control or user-defined) token by its text, e.g. `<|im_end|>`.
    pub fn special_id(&self, text: &str) -> Option<u32> {
        self.special.id(text)
    }

    pub fn bos(&self) -> Option<u32> {
        self.vocab.bos
    }

    pub fn eos(&self) -> Option<u32> {
        self.vocab.eos
    }

    pub fn add_bos(&self) -> bool {
        self.vocab.add_bos
    }

    /// End-of-generation tokens: the EOS/EOT ids and tokens llama.cpp recognises by text
    /// (`<|im_end|>`, `[EOS]`, `[EOT]`, `<|endoftext|>`, ...).
    pub fn eog_ids(&self) -> &[u32] {
        &self.vocab.eog
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.vocab.eog.binary_search(&id).is_ok()
    }

    /// `tokenizer.ggml.pre`, the pre-tokenizer's name.
    pub fn pre(&self) -> &str {
        &self.vocab.pre
    }

    /// `tokenizer.chat_template`, if the file has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.vocab.chat_template.as_deref()
    }
}
