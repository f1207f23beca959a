//! Pre-tokenizers: split text into the words that BPE then encodes one by one. Each is the
//! split regex of the original tokenizer (HF `tokenizer.json` or tiktoken), run with
//! fancy-regex, the engine tiktoken itself uses, so look-ahead and class intersection behave
//! as in the reference.

use fancy_regex::Regex;

/// Kimi's pattern from `tokenization_kimi.py`: like llama3's, but Han runs are words of their
/// own and are excluded from the letter classes.
const KIMI_K2: &str = concat!(
    r"[\p{Han}]+",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?",
    r"|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*",
    r"|\s*[\r\n]+",
    r"|\s+(?!\S)",
    r"|\s+",
);

/// GPT-2's pattern as HF's ByteLevel pre-tokenizer runs it.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2 differs from llama3 only in splitting digits one by one.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// One pre-tokenizer, chosen by `tokenizer.ggml.pre`.
pub(crate) struct PreTokenizer {
    regex: Regex,
    /// llama3-style vocabularies emit a word that is itself a token without running the
    /// merges (HF `ignore_merges`); llama.cpp does the same.
    pub ignore_merges: bool,
}

impl PreTokenizer {
    /// `None` if `pre` names a pre-tokenizer this crate does not implement.
    pub fn for_name(pre: &str) -> Option<PreTokenizer> {
        let (pattern, ignore_merges) = match pre {
            "kimi-k2" => (KIMI_K2, false),
            "gpt2" | "gpt-2" | "default" => (GPT2, false),
            "llama3" | "llama-v3" | "llama-bpe" => (LLAMA3, true),
            "qwen2" => (QWEN2, false),
            _ => return None,
        };
        let regex = Regex::new(pattern).expect("built-in pre-tokenizer patterns compile");
        Some(PreTokenizer {
            regex,
            ignore_merges,
        })
    }

    /// Calls `word` for each piece of `text`, in order; the pieces concatenate to `text`.
    pub fn split<'t>(&self, text: &'t str, mut word: impl FnMut(&'t str)) {
        let mut at = 0;
        for m in self.regex.find_iter(text) {
            match m {
                Ok(m) => {
                    // Text no alternative matches stays a word of its own, as HF's Split
                    // (behaviour Isolated) keeps it.
                    if m.start() > at {
                        word(&text[at..m.start()]);
                    }
                    if m.end() > m.start() {
                        word(m.as_str());
                    }
                    at = m.end();
                }
                // The backtracking limit only trips on pathological input; the rest is then
                // one word, which BPE still encodes exactly as bytes allow.
                Err(_) => break,
            }
        }
        if at < text.len() {
            word(&text[at..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(pre: &str, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        PreTokenizer::for_name(pre)
            .unwrap()
            .split(text, |w| out.push(w.to_string()));
        out
    }

    #[test]
    fn kimi_separates_han_from_other_letters() {
        assert_eq!(
            pieces("kimi-k2", "The 中文字符 test's 12345"),
            ["The", " ", "中文字符", " test's", " ", "123", "45"]
        );
        assert_eq!(pieces("kimi-k2", "abc中文def"), ["abc", "中文", "def"]);
    }

    #[test]
    fn digit_grouping_differs_by_vocabulary() {
        assert_eq!(pieces("llama-bpe", "12345"), ["123", "45"]);
        assert_eq!(pieces("qwen2", "123"), ["1", "2", "3"]);
        assert_eq!(pieces("gpt2", " 12345"), [" 12345"]);
    }

    #[test]
    fn whitespace_before_a_word_leaves_one_space_to_it() {
        assert_eq!(pieces("gpt2", "a   b"), ["a", "  ", " b"]);
    }

    #[test]
    fn unknown_name_is_refused() {
        assert!(PreTokenizer::for_name("bloom").is_none());
    }
}
