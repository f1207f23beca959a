//! GPT-2's byte ↔ unicode mapping: byte-level BPE vocabularies store every token as a string in
//! which each byte is one printable character, so that tokens holding partial UTF-8 survive
//! being stored as text.

use std::sync::OnceLock;

struct Tables {
    to_char: [char; 256],
    // Every mapped char is below U+0144, so a flat table indexed by code point suffices.
    to_byte: [i16; 0x144],
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut to_char = ['\0'; 256];
        let mut to_byte = [-1i16; 0x144];
        let mut next = 256u32;
        for b in 0..256u32 {
            let printable = (0x21..=0x7e).contains(&b)
                || (0xa1..=0xac).contains(&b)
                || (0xae..=0xff).contains(&b);
            let cp = if printable {
                b
            } else {
                next += 1;
                next - 1
            };
            let c = char::from_u32(cp).expect("below U+0144");
            to_char[b as usize] = c;
            to_byte[cp as usize] = b as i16;
        }
        Tables { to_char, to_byte }
    })
}

/// The character that stands for `b` in a byte-level token string.
pub fn byte_to_char(b: u8) -> char {
    tables().to_char[b as usize]
}

/// The byte that `c` stands for, if `c` is one of the 256 mapped characters.
pub fn char_to_byte(c: char) -> Option<u8> {
    let t = tables();
    let i = c as usize;
    (i < t.to_byte.len() && t.to_byte[i] >= 0).then(|| t.to_byte[i] as u8)
}

/// Encodes raw bytes as a byte-level token string.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| byte_to_char(b)).collect()
}

/// Decodes a byte-level token string; `None` if some character is not a mapped byte (such a
/// string is not a byte-level token, e.g. a special token's literal text).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    text.chars().map(char_to_byte).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let s = encode(&all);
        assert_eq!(s.chars().count(), 256);
        assert_eq!(decode(&s).unwrap(), all);
    }

    #[test]
    fn known_mappings() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        assert_eq!(decode("[BOS]").unwrap(), b"[BOS]");
        assert_eq!(decode("中"), None);
    }
}
