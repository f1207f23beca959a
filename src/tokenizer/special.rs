//! Finds special tokens written in text, so that `<|im_end|>` typed into a prompt becomes the
//! one control token rather than the BPE of its characters.

use super::vocab::{TokenType, Vocab};
use regex::Regex;
use rustc_hash::FxHashMap;

/// A piece of input: ordinary text to pre-tokenize, or a special token's id.
pub(crate) enum Fragment<'t> {
    Text(&'t str),
    Special(u32),
}

pub(crate) struct SpecialMatcher {
    /// Control and user-defined tokens (used when the caller parses specials).
    all: Option<Regex>,
    /// User-defined tokens only: llama.cpp matches them even when specials are not parsed.
    user: Option<Regex>,
    id_of: FxHashMap<String, u32>,
}

fn alternation<'a>(texts: impl Iterator<Item = &'a str>) -> Option<Regex> {
    let mut texts: Vec<&str> = texts.filter(|t| !t.is_empty()).collect();
    if texts.is_empty() {
        return None;
    }
    // Longest first: the regex takes the first alternative that matches at the leftmost
    // position, so this picks the longest special token there.
    texts.sort_by(|a, b| b.len().cmp(&a.len()).then(a.cmp(b)));
    texts.dedup();
    let pattern = texts
        .iter()
        .map(|t| regex::escape(t))
        .collect::<Vec<_>>()
        .join("|");
    Some(Regex::new(&pattern).expect("escaped literals always compile"))
}

impl SpecialMatcher {
    pub fn new(v: &Vocab) -> SpecialMatcher {
        let mut id_of = FxHashMap::default();
        for (i, (t, ty)) in v.texts.iter().zip(&v.types).enumerate() {
            if matches!(ty, TokenType::Control | TokenType::UserDefined) {
                id_of.entry(t.clone()).or_insert(i as u32);
            }
        }
        let of_type = |want: &'static [TokenType]| {
            v.texts
                .iter()
                .zip(&v.types)
                .filter(move |(_, ty)| want.contains(ty))
                .map(|(t, _)| t.as_str())
        };
        SpecialMatcher {
            all: alternation(of_type(&[TokenType::Control, TokenType::UserDefined])),
            user: alternation(of_type(&[TokenType::UserDefined])),
            id_of,
        }
    }

    pub fn id(&self, text: &str) -> Option<u32> {
        self.id_of.get(text).copied()
    }

    pub fn split<'t>(&self, text: &'t str, parse_special: bool, mut f: impl FnMut(Fragment<'t>)) {
        let re = if parse_special { &self.all } else { &self.user };
        let Some(re) = re else {
            if !text.is_empty() {
                f(Fragment::Text(text));
            }
            return;
        };
        let mut at = 0;
        for m in re.find_iter(text) {
            if m.start() > at {
                f(Fragment::Text(&text[at..m.start()]));
            }
            f(Fragment::Special(self.id_of[m.as_str()]));
            at = m.end();
        }
        if at < text.len() {
            f(Fragment::Text(&text[at..]));
        }
    }
}
