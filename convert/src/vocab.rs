//! The tokenizer of a checkpoint: Kimi's tiktoken BPE (`tiktoken.model`, `tokenizer_config.json`,
//! `chat_template.jinja`) laid out as the `gpt2`-model vocabulary that llama.cpp's converter
//! writes for pre-tokenizer `kimi-k2` (`KimiLinearModel.set_vocab` with `QwenModel.bpe`, then
//! gguf-py's `SpecialVocab`):
//!
//! - ids `0..n` are the ranks, each token the byte-level unicode string of its bytes, NORMAL;
//! - the special slots follow the ranks: `added_tokens_decoder` names them, the rest are
//!   `<|reserved_token_{id}|>` (Kimi's `TikTokenTokenizer`), all CONTROL;
//! - ids up to config.json's `vocab_size` that neither covers are `[PAD{id}]`, UNUSED;
//! - merges are rebuilt from the ranks: for each token of two or more bytes, the two pieces BPE
//!   over the lower ranks leaves;
//! - special ids by the names tokenizer_config.json gives (`bos_token`, ...), else config.json's
//!   `*_token_id`; `add_*_token` and the chat template as the files say.

use crate::metadata::Metadata;
use kiln::gguf::{Array, Value};
use kiln::tokenizer::bytes;
use rayon::prelude::*;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Kimi's `TikTokenTokenizer.num_reserved_special_tokens`: the special slots after the ranks.
pub const NUM_RESERVED_SPECIAL: usize = 256;

/// llama.cpp's `llama_token_type` values.
pub mod token_type {
    pub const NORMAL: i32 = 1;
    pub const CONTROL: i32 = 3;
    pub const UNUSED: i32 = 5;
}

/// gguf-py's `SpecialVocab.special_token_types` and the GGUF key each id is stored under.
const SPECIAL_TYPES: &[(&str, &str)] = &[
    ("bos", "tokenizer.ggml.bos_token_id"),
    ("eos", "tokenizer.ggml.eos_token_id"),
    ("unk", "tokenizer.ggml.unknown_token_id"),
    ("sep", "tokenizer.ggml.seperator_token_id"),
    ("pad", "tokenizer.ggml.padding_token_id"),
    ("cls", "tokenizer.ggml.cls_token_id"),
    ("mask", "tokenizer.ggml.mask_token_id"),
];

#[derive(Debug, thiserror::Error)]
pub enum VocabError {
    // The io error is part of the message, not a `#[source]`, so `{:#}` prints it once.
    #[error("{}: {error}", path.display())]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{}: not valid JSON: {error}", path.display())]
    Json {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error("{}: line {line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn read(path: &Path) -> Result<String, VocabError> {
    std::fs::read_to_string(path).map_err(|error| VocabError::Io {
        path: path.to_path_buf(),
        error,
    })
}

fn read_json(path: &Path) -> Result<Json, VocabError> {
    serde_json::from_str(&read(path)?).map_err(|error| VocabError::Json {
        path: path.to_path_buf(),
        error,
    })
}

/// Standard base64 with optional padding, as tiktoken writes it; `None` if malformed.
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let body = s.trim_end_matches('=');
    if s.len() - body.len() > 2 || body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    for chunk in body.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c)? << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    Some(out)
}

/// Standard base64 with padding, as tiktoken writes its rank files.
pub fn base64_encode(data: &[u8]) -> String {
    const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(DIGITS[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `tiktoken.model`: one `BASE64 RANK` line per token. Returns the tokens indexed by rank;
/// the ranks must be exactly `0..n` and the tokens distinct.
pub fn read_ranks(path: &Path) -> Result<Vec<Vec<u8>>, VocabError> {
    let text = read(path)?;
    let line_err = |line: usize, reason: String| VocabError::Line {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut by_rank: Vec<Option<Vec<u8>>> = Vec::new();
    let mut n = 0usize;
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let (tok, rank) = line
            .split_once(' ')
            .ok_or_else(|| line_err(i + 1, "expected `BASE64 RANK`".into()))?;
        let tok = base64_decode(tok)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| line_err(i + 1, format!("{tok:?} is not a base64 token")))?;
        let rank: usize = rank
            .trim()
            .parse()
            .map_err(|_| line_err(i + 1, format!("rank {rank:?} is not a number")))?;
        if rank >= by_rank.len() {
            by_rank.resize(rank + 1, None);
        }
        if by_rank[rank].replace(tok).is_some() {
            return Err(line_err(i + 1, format!("rank {rank} appears twice")));
        }
        n += 1;
    }
    if n != by_rank.len() {
        return Err(VocabError::Invalid {
            path: path.to_path_buf(),
            reason: format!(
                "{n} tokens but ranks up to {}: ranks must be 0..{n}",
                by_rank.len().saturating_sub(1)
            ),
        });
    }
    let ranks: Vec<Vec<u8>> = by_rank.into_iter().flatten().collect();
    let mut seen: HashMap<&[u8], usize> = HashMap::with_capacity(ranks.len());
    for (r, t) in ranks.iter().enumerate() {
        if let Some(first) = seen.insert(t, r) {
            return Err(VocabError::Invalid {
                path: path.to_path_buf(),
                reason: format!("ranks {first} and {r} are the same token"),
            });
        }
    }
    Ok(ranks)
}

/// llama.cpp's `QwenModel.bpe(mergeable_ranks, token, max_rank)`: merges the bytes of `token`
/// pairwise, always the pair of lowest rank below `max_rank` (leftmost on ties), until none is
/// left. Returns the pieces as lengths.
fn bpe_pieces(rank_of: &HashMap<&[u8], usize>, token: &[u8], max_rank: usize) -> Vec<usize> {
    let mut lens = vec![1usize; token.len()];
    loop {
        let mut best: Option<(usize, usize)> = None;
        let mut start = 0;
        for i in 0..lens.len().saturating_sub(1) {
            let joined = &token[start..start + lens[i] + lens[i + 1]];
            if let Some(&r) = rank_of.get(joined)
                && r < max_rank
                && best.is_none_or(|(br, _)| r < br)
            {
                best = Some((r, i));
            }
            start += lens[i];
        }
        let Some((_, i)) = best else { break };
        lens[i] += lens[i + 1];
        lens.remove(i + 1);
    }
    lens
}

/// The merge list rebuilt from the ranks (llama.cpp's converter for `kimi-k2`): in rank order,
/// every token of two or more bytes that BPE over the lower ranks leaves as exactly two pieces
/// gives the merge `"A B"` of those pieces as byte-level strings.
pub fn merges_from_ranks(ranks: &[Vec<u8>]) -> Vec<String> {
    let rank_of: HashMap<&[u8], usize> =
        ranks.iter().enumerate().map(|(i, t)| (&t[..], i)).collect();
    ranks
        .par_iter()
        .enumerate()
        .filter(|(_, t)| t.len() > 1)
        .filter_map(|(r, tok)| {
            let lens = bpe_pieces(&rank_of, tok, r);
            (lens.len() == 2).then(|| {
                let (a, b) = tok.split_at(lens[0]);
                format!("{} {}", bytes::encode(a), bytes::encode(b))
            })
        })
        .collect()
}

/// A vocabulary ready for the GGUF.
#[derive(Clone, Debug, Default)]
pub struct Vocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
    /// (GGUF key, id) for each special token found, in gguf-py's order.
    pub special_ids: Vec<(&'static str, u32)>,
    /// `tokenizer.ggml.add_{bos,eos,...}_token` where tokenizer_config.json says.
    pub add_special: Vec<(String, bool)>,
    pub chat_template: Option<String>,
    /// Named templates (tokenizer_config.json's list form), besides the default.
    pub named_templates: Vec<(String, String)>,
}

/// Where the tokenizer files of a checkpoint directory are.
pub struct TokenizerFiles {
    pub tiktoken: PathBuf,
    pub config: Option<PathBuf>,
}

impl TokenizerFiles {
    /// `None` when the directory holds no `tiktoken.model`.
    pub fn find(dir: &Path) -> Option<TokenizerFiles> {
        let tiktoken = dir.join("tiktoken.model");
        tiktoken.is_file().then(|| TokenizerFiles {
            tiktoken,
            config: Some(dir.join("tokenizer_config.json")).filter(|p| p.is_file()),
        })
    }
}

/// Reads the tokenizer of checkpoint `dir` for a model of `vocab_size` ids (config.json's);
/// `Ok(None)` when there is no `tiktoken.model`.
pub fn load(dir: &Path, vocab_size: usize) -> Result<Option<Vocab>, VocabError> {
    let Some(files) = TokenizerFiles::find(dir) else {
        return Ok(None);
    };
    let ranks = read_ranks(&files.tiktoken)?;
    let tok_config = match &files.config {
        Some(p) => read_json(p)?,
        None => Json::Object(Default::default()),
    };
    let config_path = dir.join("config.json");
    let model_config = if config_path.is_file() {
        read_json(&config_path)?
    } else {
        Json::Null
    };
    let cfg_path = files
        .config
        .clone()
        .unwrap_or_else(|| dir.join("tokenizer_config.json"));
    let mut v = build(
        &ranks,
        &tok_config,
        &cfg_path,
        &model_config,
        vocab_size,
        &files.tiktoken,
    )?;
    if v.chat_template.is_none() && v.named_templates.is_empty() {
        v.chat_template = template_file(dir)?;
    }
    Ok(Some(v))
}

/// gguf-py's fallback when tokenizer_config.json has no template: `chat_template.jinja`, else
/// `chat_template.json`'s `chat_template`.
fn template_file(dir: &Path) -> Result<Option<String>, VocabError> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return read(&jinja).map(Some);
    }
    let json = dir.join("chat_template.json");
    if json.is_file() {
        return Ok(read_json(&json)?
            .get("chat_template")
            .and_then(Json::as_str)
            .map(str::to_string));
    }
    Ok(None)
}

/// The text of a `{typ}_token` entry: a string or `{"content": ...}`.
fn token_text(v: &Json) -> Option<&str> {
    v.as_str()
        .or_else(|| v.get("content").and_then(Json::as_str))
}

/// Builds the vocabulary from the ranks, tokenizer_config.json (`tok_config`, read from
/// `cfg_path`) and config.json (`model_config`).
pub fn build(
    ranks: &[Vec<u8>],
    tok_config: &Json,
    cfg_path: &Path,
    model_config: &Json,
    vocab_size: usize,
    ranks_path: &Path,
) -> Result<Vocab, VocabError> {
    let n = ranks.len();
    if n > vocab_size {
        return Err(VocabError::Invalid {
            path: ranks_path.to_path_buf(),
            reason: format!("{n} ranks, more than config.json's vocab_size {vocab_size}"),
        });
    }
    let invalid = |reason: String| VocabError::Invalid {
        path: cfg_path.to_path_buf(),
        reason,
    };
    // The special slots: Kimi's tokenizer names ids n..n+256 from added_tokens_decoder.
    let mut named: HashMap<usize, String> = HashMap::new();
    if let Some(added) = tok_config.get("added_tokens_decoder") {
        let added = added
            .as_object()
            .ok_or_else(|| invalid("added_tokens_decoder is not an object".into()))?;
        for (id, t) in added {
            let id: usize = id
                .parse()
                .map_err(|_| invalid(format!("added_tokens_decoder: id {id:?} is not a number")))?;
            let content = token_text(t).ok_or_else(|| {
                invalid(format!("added_tokens_decoder: {id} has no string content"))
            })?;
            if id < n {
                return Err(invalid(format!(
                    "added_tokens_decoder: {id} {content:?} collides with a tiktoken rank (ranks are 0..{n})"
                )));
            }
            named.insert(id, content.to_string());
        }
    }
    let slots_end = named
        .keys()
        .map(|&i| i + 1)
        .chain([n + NUM_RESERVED_SPECIAL])
        .max()
        .unwrap_or(n);

    let mut tokens: Vec<String> = Vec::with_capacity(vocab_size);
    tokens.par_extend(ranks.par_iter().map(|t| bytes::encode(t)));
    let mut types = vec![token_type::NORMAL; n];
    for id in n..vocab_size {
        if id < slots_end {
            tokens.push(
                named
                    .remove(&id)
                    .unwrap_or_else(|| format!("<|reserved_token_{id}|>")),
            );
            types.push(token_type::CONTROL);
        } else {
            tokens.push(format!("[PAD{id}]"));
            types.push(token_type::UNUSED);
        }
    }
    let merges = merges_from_ranks(ranks);

    // Special ids: the name tokenizer_config.json gives, looked up among the specials first
    // (as the tiktoken tokenizer does), else config.json's `{typ}_token_id`.
    let special_of: HashMap<&str, u32> = tokens[n..]
        .iter()
        .enumerate()
        .filter(|(i, _)| types[n + i] == token_type::CONTROL)
        .map(|(i, t)| (t.as_str(), (n + i) as u32))
        .collect();
    let mut special_ids = Vec::new();
    let mut add_special = Vec::new();
    for &(typ, key) in SPECIAL_TYPES {
        if let Some(b) = tok_config
            .get(format!("add_{typ}_token"))
            .and_then(Json::as_bool)
        {
            add_special.push((format!("tokenizer.ggml.add_{typ}_token"), b));
        }
        let by_name = tok_config
            .get(format!("{typ}_token"))
            .and_then(token_text)
            .map(|name| {
                special_of
                    .get(name)
                    .copied()
                    .or_else(|| tokens.iter().position(|t| t == name).map(|i| i as u32))
                    .ok_or_else(|| {
                        invalid(format!(
                            "{typ}_token {name:?} is not a token of the vocabulary"
                        ))
                    })
            })
            .transpose()?;
        let id = by_name.or_else(|| {
            model_config
                .get(format!("{typ}_token_id"))
                .and_then(Json::as_u64)
                .filter(|&i| (i as usize) < vocab_size)
                .map(|i| i as u32)
        });
        if let Some(id) = id {
            special_ids.push((key, id));
        }
    }

    let (chat_template, named_templates) = match tok_config.get("chat_template") {
        None | Some(Json::Null) => (None, Vec::new()),
        Some(Json::String(s)) => (Some(s.clone()), Vec::new()),
        Some(Json::Array(list)) => named_chat_templates(list),
        Some(_) => {
            return Err(invalid(
                "chat_template is neither a string nor a list".into(),
            ));
        }
    };
    Ok(Vocab {
        tokens,
        types,
        merges,
        special_ids,
        add_special,
        chat_template,
        named_templates,
    })
}

/// gguf-py's `add_chat_template` for the list form: `default` becomes the template, the others
/// are stored by name (non-alphanumerics replaced by `_`).
fn named_chat_templates(list: &[Json]) -> (Option<String>, Vec<(String, String)>) {
    let mut default = None;
    let mut named: Vec<(String, String)> = Vec::new();
    for choice in list {
        let name: String = choice
            .get("name")
            .and_then(Json::as_str)
            .unwrap_or("")
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let Some(template) = choice.get("template").and_then(Json::as_str) else {
            continue;
        };
        if name.is_empty() {
            continue;
        }
        if name == "default" {
            default = Some(template.to_string());
        } else if !named.iter().any(|(n, _)| *n == name) {
            named.push((name, template.to_string()));
        }
    }
    (default, named)
}

impl Vocab {
    /// The `tokenizer.*` keys, in the order llama.cpp's converter writes them.
    pub fn metadata(&self) -> Metadata {
        let mut m: Metadata = vec![
            ("tokenizer.ggml.model".into(), Value::from("gpt2")),
            ("tokenizer.ggml.pre".into(), Value::from("kimi-k2")),
            (
                "tokenizer.ggml.tokens".into(),
                Value::Array(Array::String(self.tokens.clone())),
            ),
            (
                "tokenizer.ggml.token_type".into(),
                Value::Array(Array::I32(self.types.clone())),
            ),
            (
                "tokenizer.ggml.merges".into(),
                Value::Array(Array::String(self.merges.clone())),
            ),
        ];
        for &(key, id) in &self.special_ids {
            m.push((key.into(), Value::U32(id)));
        }
        for (key, b) in &self.add_special {
            m.push((key.clone(), Value::Bool(*b)));
        }
        for (name, t) in &self.named_templates {
            m.push((
                format!("tokenizer.chat_template.{name}"),
                Value::from(t.as_str()),
            ));
        }
        if !self.named_templates.is_empty() {
            let names = self
                .named_templates
                .iter()
                .map(|(n, _)| n.clone())
                .collect();
            m.push((
                "tokenizer.chat_templates".into(),
                Value::Array(Array::String(names)),
            ));
        }
        if let Some(t) = &self.chat_template {
            m.push(("tokenizer.chat_template".into(), Value::from(t.as_str())));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn toks(list: &[&str]) -> Vec<Vec<u8>> {
        list.iter().map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn base64_round_trips_what_tiktoken_writes() {
        assert_eq!(base64_decode("AA==").unwrap(), vec![0]);
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("IHRoZQ==").unwrap(), b" the");
        assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
        assert_eq!(base64_decode("YWI").unwrap(), b"ab");
        assert!(base64_decode("a").is_none());
        assert!(base64_decode("YW*j").is_none());
        assert!(base64_decode("YQ===").is_none());
        for len in 0..8 {
            let data: Vec<u8> = (0..len).map(|i| (i * 97 + 200) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"hello"), "aGVsbG8=");
    }

    #[test]
    fn merges_are_the_last_bpe_step_of_each_rank() {
        // "abc" is ab + c: "bc" (rank 5) ranks after "abc" and so does not split it;
        // "abcbc" is abc + bc.
        let ranks = toks(&["a", "b", "c", "ab", "abc", "bc", "abcbc", "cc", "ccc"]);
        let m = merges_from_ranks(&ranks);
        assert_eq!(m, ["a b", "ab c", "b c", "abc bc", "c c", "cc c"]);
    }

    #[test]
    fn ties_merge_leftmost_and_three_piece_tokens_give_no_merge() {
        // "aaa": a+a has rank 1 on both pairs; the leftmost merges first → "aa" + "a".
        let ranks = toks(&["a", "aa", "aaa", "x", "y", "z", "xyz"]);
        let m = merges_from_ranks(&ranks);
        // "xyz" has no two-byte pieces among the ranks: BPE leaves 3 pieces, no merge.
        assert_eq!(m, ["a a", "aa a"]);
    }

    #[test]
    fn byte_level_strings_for_non_printable_bytes() {
        let ranks = vec![vec![b' '], vec![b'\n'], vec![b' ', b'\n'], vec![0xe4, 0xb8]];
        let v = build(
            &ranks,
            &json!({}),
            Path::new("tc.json"),
            &Json::Null,
            4,
            Path::new("t.model"),
        )
        .unwrap();
        assert_eq!(v.tokens, ["Ġ", "Ċ", "ĠĊ", "ä¸"]);
        // As llama.cpp: two pieces make a merge even when they are not tokens themselves.
        assert_eq!(v.merges, ["Ġ Ċ", "ä ¸"]);
    }

    #[test]
    fn specials_reserved_slots_and_padding() {
        let ranks = toks(&["a", "b", "ab"]);
        let tc = json!({
            "added_tokens_decoder": {
                "3": {"content": "[BOS]", "special": true},
                "4": {"content": "[EOS]", "special": true},
                "258": {"content": "[PAD]", "special": true},
            },
            "bos_token": "[BOS]",
            "eos_token": {"content": "[EOS]"},
            "pad_token": "[PAD]",
            "add_bos_token": false,
            "chat_template": "{{ messages }}",
        });
        let mc = json!({"bos_token_id": 99, "unk_token_id": 5});
        let v = build(
            &ranks,
            &tc,
            Path::new("tc.json"),
            &mc,
            262,
            Path::new("t.model"),
        )
        .unwrap();
        assert_eq!(v.tokens.len(), 262);
        assert_eq!(v.tokens[3], "[BOS]");
        assert_eq!(v.tokens[5], "<|reserved_token_5|>");
        assert_eq!(v.tokens[258], "[PAD]");
        assert_eq!(v.tokens[259], "[PAD259]");
        assert_eq!(&v.types[..3], &[token_type::NORMAL; 3]);
        assert!(v.types[3..259].iter().all(|&t| t == token_type::CONTROL));
        assert_eq!(&v.types[259..], &[token_type::UNUSED; 3]);
        assert_eq!(
            v.special_ids,
            [
                ("tokenizer.ggml.bos_token_id", 3),
                ("tokenizer.ggml.eos_token_id", 4),
                ("tokenizer.ggml.unknown_token_id", 5),
                ("tokenizer.ggml.padding_token_id", 258),
            ]
        );
        let m = v.metadata();
        let get = |k: &str| m.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("tokenizer.ggml.add_bos_token"),
            Some(Value::Bool(false))
        );
        assert_eq!(get("tokenizer.ggml.pre"), Some(Value::from("kimi-k2")));
        assert_eq!(
            get("tokenizer.chat_template"),
            Some(Value::from("{{ messages }}"))
        );
        assert_eq!(get("tokenizer.ggml.add_eos_token"), None);
    }

    #[test]
    fn bad_tokenizer_files_are_named() {
        let ranks = toks(&["a", "b"]);
        let e = build(
            &ranks,
            &json!({"bos_token": "[NOPE]"}),
            Path::new("dir/tokenizer_config.json"),
            &Json::Null,
            300,
            Path::new("t.model"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tokenizer_config.json") && e.contains("[NOPE]"),
            "{e}"
        );
        let e = build(
            &ranks,
            &json!({}),
            Path::new("tc.json"),
            &Json::Null,
            1,
            Path::new("dir/tiktoken.model"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tiktoken.model") && e.contains("vocab_size"),
            "{e}"
        );
    }

    #[test]
    fn rank_file_must_be_dense_and_distinct() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("tiktoken.model");
        std::fs::write(&p, "YQ== 0\nYg== 1\nYWI= 2\n").unwrap();
        assert_eq!(read_ranks(&p).unwrap(), toks(&["a", "b", "ab"]));
        std::fs::write(&p, "YQ== 0\nYg== 2\n").unwrap();
        assert!(read_ranks(&p).unwrap_err().to_string().contains("0..2"));
        std::fs::write(&p, "YQ== 0\nYQ== 1\n").unwrap();
        assert!(
            read_ranks(&p)
                .unwrap_err()
                .to_string()
                .contains("same token")
        );
        std::fs::write(&p, "YQ== 0\n!!! 1\n").unwrap();
        assert!(read_ranks(&p).unwrap_err().to_string().contains("line 2"));
    }

    #[test]
    fn named_templates_follow_gguf_py() {
        let (d, n) = named_chat_templates(&[
            json!({"name": "default", "template": "D"}),
            json!({"name": "tool use", "template": "T"}),
            json!({"template": "ignored"}),
        ]);
        assert_eq!(d.as_deref(), Some("D"));
        assert_eq!(n, [("tool_use".to_string(), "T".to_string())]);
    }
}
