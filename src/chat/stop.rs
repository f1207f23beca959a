//! `--stop STRING`: ends generation when the streamed text contains a stop string. Text that
//! might be the start of a stop string is held back, so a stop string never reaches the user
//! even when it arrives split over several tokens.

#[derive(Clone, Debug, Default)]
pub struct StopMatcher {
    stops: Vec<String>,
    held: String,
}

/// What one push produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StopStep {
    /// Text safe to show now.
    pub text: String,
    /// A stop string was found; `text` ends just before it.
    pub stopped: bool,
}

impl StopMatcher {
    pub fn new(stops: impl IntoIterator<Item = String>) -> StopMatcher {
        StopMatcher {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> StopStep {
        self.held.push_str(text);
        // The earliest stop string wins.
        if let Some(at) = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min()
        {
            let text = self.held[..at].to_string();
            self.held.clear();
            return StopStep {
                text,
                stopped: true,
            };
        }
        // Hold back the longest tail that is a proper prefix of some stop string.
        let keep = self
            .stops
            .iter()
            .map(|s| longest_suffix_prefix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let text = self.held[..cut].to_string();
        self.held.drain(..cut);
        StopStep {
            text,
            stopped: false,
        }
    }

    /// Generation ended for another reason: release what was held back.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `stop`, in bytes, at a
/// character boundary.
fn longest_suffix_prefix(text: &str, stop: &str) -> usize {
    let max = text.len().min(stop.len().saturating_sub(1));
    (1..=max)
        .rev()
        .find(|&n| {
            let start = text.len() - n;
            text.is_char_boundary(start) && stop.starts_with(&text[start..])
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopMatcher::new(stops.iter().map(|s| s.to_string()));
        let mut out = String::new();
        for p in pieces {
            let step = m.push(p);
            out.push_str(&step.text);
            if step.stopped {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stop_split_over_pieces_is_never_shown() {
        assert_eq!(
            run(&["User:"], &["Hi!\nUs", "er", ": more"]),
            ("Hi!\n".into(), true)
        );
    }

    #[test]
    fn near_misses_are_released() {
        assert_eq!(
            run(&["User:"], &["Us", "e", "d it"]),
            ("Used it".into(), false)
        );
        let mut m = StopMatcher::new(["ab".to_string()]);
        assert_eq!(m.push("xa").text, "x");
        assert_eq!(m.push("c").text, "ac");
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(run(&["END", "ST"], &["a ST b END"]), ("a ".into(), true));
    }

    #[test]
    fn multibyte_text_is_cut_at_boundaries() {
        assert_eq!(
            run(&["中文"], &["你好中", "国"]),
            ("你好中国".into(), false)
        );
        assert_eq!(run(&["中文"], &["你好中", "文"]), ("你好".into(), true));
    }

    #[test]
    fn no_stops_passes_everything() {
        assert_eq!(run(&[], &["a", "b"]), ("ab".into(), false));
    }
}
