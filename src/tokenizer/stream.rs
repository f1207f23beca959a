//! Streaming detokenization: tokens may end in the middle of a UTF-8 character (byte-level BPE
//! splits multi-byte characters freely), so text is released only once it is complete.

/// Turns token bytes into text piece by piece, holding back an incomplete UTF-8 tail.
#[derive(Default, Debug)]
pub struct StreamDecoder {
    pending: Vec<u8>,
}

impl StreamDecoder {
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Adds the bytes of the next token and returns the text that is now complete. Bytes that
    /// can never become valid UTF-8 come out as U+FFFD, as a lossy decode of the whole would.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(good).expect("validated prefix"));
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        // An incomplete sequence at the end: wait for the next token.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let len = self.pending.len();
        self.pending.drain(..len - keep);
        out
    }

    /// Ends the stream: whatever is still held back is invalid and comes out as U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// True if bytes are held back waiting for the rest of a character.
    pub fn is_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_back_a_split_character() {
        let text = "é中🙂";
        let mut d = StreamDecoder::new();
        let mut out = String::new();
        for (i, b) in text.bytes().enumerate() {
            let piece = d.push(&[b]);
            // A character comes out exactly when its last byte arrives.
            let complete = text.is_char_boundary(i + 1);
            assert_eq!(piece.is_empty(), !complete, "byte {i}");
            out.push_str(&piece);
        }
        assert!(!d.is_pending());
        assert_eq!(out, "é中🙂");
        assert_eq!(d.push(&[0xe4, 0xb8]), "");
        assert!(d.is_pending());
        assert_eq!(d.push(&[0xad, b'a']), "中a");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut d = StreamDecoder::new();
        assert_eq!(d.push(&[b'a', 0xff, b'b']), "a\u{fffd}b");
        assert_eq!(d.push(&[0xe4, 0xb8]), "");
        assert_eq!(d.finish(), "\u{fffd}");
        assert!(!d.is_pending());
    }
}
