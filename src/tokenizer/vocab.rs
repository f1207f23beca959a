//! The vocabulary as a GGUF stores it (`tokenizer.ggml.*`): token strings, token types,
//! merges, the special ids, and the byte-level views the BPE needs.

use super::TokenizerError;
use super::bytes;
use crate::gguf::Gguf;
use rustc_hash::FxHashMap;

/// llama.cpp's `llama_token_type` values as stored in `tokenizer.ggml.token_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

impl TokenType {
    fn from_i64(v: i64) -> TokenType {
        match v {
            2 => TokenType::Unknown,
            3 => TokenType::Control,
            4 => TokenType::UserDefined,
            5 => TokenType::Unused,
            6 => TokenType::Byte,
            // 1 and the "undefined" 0 both behave as ordinary text, as in llama.cpp.
            _ => TokenType::Normal,
        }
    }
}

/// `(left id, right id)` → `(rank, merged id)`.
pub(crate) type MergeMap = FxHashMap<(u32, u32), (u32, u32)>;

/// How a pair of adjacent pieces merges: by a merge list, or, when a file has none (allowed
/// for `kimi-k2`), by the id of the merged token, which is tiktoken's rank.
pub(crate) enum MergeRule {
    Merges(MergeMap),
    Ranks,
}

pub(crate) struct Vocab {
    pub texts: Vec<String>,
    pub types: Vec<TokenType>,
    /// What each token decodes to (special tokens: their literal text).
    pub bytes: Vec<Vec<u8>>,
    /// Byte strings of the tokens the BPE may produce, lowest id first on duplicates.
    pub id_of_bytes: FxHashMap<Vec<u8>, u32>,
    pub byte_ids: [u32; 256],
    pub merges: MergeRule,
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eog: Vec<u32>,
    pub add_bos: bool,
    pub pre: String,
    pub chat_template: Option<String>,
}

/// Token texts that end generation, as llama.cpp recognises them by text.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
];

impl Vocab {
    pub fn from_gguf(g: &Gguf) -> Result<Vocab, TokenizerError> {
        let file = g.path().to_string();
        let key_err = |key: &'static str, expected: &'static str| TokenizerError::Key {
            file: file.clone(),
            key,
            expected,
        };
        let model = g
            .get_str("tokenizer.ggml.model")
            .ok_or_else(|| key_err("tokenizer.ggml.model", "a string"))?;
        if model != "gpt2" {
            return Err(TokenizerError::Model {
                file,
                model: model.to_string(),
            });
        }
        let pre = g
            .get_str("tokenizer.ggml.pre")
            .unwrap_or("default")
            .to_string();
        let texts = g
            .get_str_arr("tokenizer.ggml.tokens")
            .ok_or_else(|| key_err("tokenizer.ggml.tokens", "an array of strings"))?
            .to_vec();
        let n = texts.len();
        let types = match g.get_arr("tokenizer.ggml.token_type") {
            None => vec![TokenType::Normal; n],
            Some(a) => {
                let v = a
                    .to_i64s()
                    .ok_or_else(|| key_err("tokenizer.ggml.token_type", "an integer array"))?;
                if v.len() != n {
                    return Err(TokenizerError::Length {
                        file,
                        key: "tokenizer.ggml.token_type",
                        got: v.len(),
                        want: n,
                    });
                }
                v.into_iter().map(TokenType::from_i64).collect()
            }
        };

        let mut bytes_of = Vec::with_capacity(n);
        let mut id_of_bytes = FxHashMap::default();
        id_of_bytes.reserve(n);
        for (id, (text, ty)) in texts.iter().zip(&types).enumerate() {
            let decoded = match ty {
                TokenType::Normal | TokenType::Byte => bytes::decode(text),
                _ => None,
            };
            if let Some(b) = &decoded {
                id_of_bytes.entry(b.clone()).or_insert(id as u32);
            }
            bytes_of.push(decoded.unwrap_or_else(|| text.as_bytes().to_vec()));
        }
        let mut byte_ids = [0u32; 256];
        for (b, slot) in byte_ids.iter_mut().enumerate() {
            *slot = *id_of_bytes
                .get(&[b as u8][..])
                .ok_or(TokenizerError::MissingByte {
                    file: file.clone(),
                    byte: b as u8,
                })?;
        }

        let merges = match g.get_str_arr("tokenizer.ggml.merges") {
            Some(list) => MergeRule::Merges(parse_merges(&file, &texts, list)?),
            None if pre == "kimi-k2" => MergeRule::Ranks,
            None => return Err(TokenizerError::NoMerges { file }),
        };

        let id = |key: &str| g.get_u32(key).filter(|&i| (i as usize) < n);
        let bos = id("tokenizer.ggml.bos_token_id");
        let eos = id("tokenizer.ggml.eos_token_id");
        let eot = id("tokenizer.ggml.eot_token_id");
        let mut eog: Vec<u32> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| EOG_TEXTS.contains(&t.as_str()))
            .map(|(i, _)| i as u32)
            .chain(eos)
            .chain(eot)
            .collect();
        eog.sort_unstable();
        eog.dedup();
        // llama.cpp's default for llama3-style vocabularies is to add BOS; the file may override.
        let add_bos = g
            .get_bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(matches!(pre.as_str(), "llama3" | "llama-v3" | "llama-bpe"));
        Ok(Vocab {
            texts,
            types,
            bytes: bytes_of,
            id_of_bytes,
            byte_ids,
            merges,
            bos,
            eos,
            eog,
            add_bos,
            pre,
            chat_template: g.get_str("tokenizer.chat_template").map(str::to_string),
        })
    }
}

fn parse_merges(file: &str, texts: &[String], list: &[String]) -> Result<MergeMap, TokenizerError> {
    let mut id_of_text: FxHashMap<&str, u32> = FxHashMap::default();
    id_of_text.reserve(texts.len());
    for (i, t) in texts.iter().enumerate() {
        id_of_text.entry(t.as_str()).or_insert(i as u32);
    }
    let mut map = FxHashMap::default();
    map.reserve(list.len());
    let mut joined = String::new();
    for (rank, m) in list.iter().enumerate() {
        // The separator is searched after the first character, as llama.cpp does, so the
        // left piece is never empty.
        let first = m.chars().next().map_or(0, char::len_utf8);
        let pos = m[first..]
            .find(' ')
            .map(|p| p + first)
            .ok_or_else(|| TokenizerError::Merge {
                file: file.to_string(),
                index: rank,
                merge: m.clone(),
            })?;
        let (a, b) = (&m[..pos], &m[pos + 1..]);
        joined.clear();
        joined.push_str(a);
        joined.push_str(b);
        // A merge whose pieces or result are not tokens can never fire; skip it.
        if let (Some(&ia), Some(&ib), Some(&ij)) = (
            id_of_text.get(a),
            id_of_text.get(b),
            id_of_text.get(joined.as_str()),
        ) {
            map.entry((ia, ib)).or_insert((rank as u32, ij));
        }
    }
    Ok(map)
}
