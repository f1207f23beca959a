//! Choosing the next token from logits, in llama.cpp's order: penalties over a window of
//! recent tokens, then top-k, top-p and min-p on the untempered distribution, then
//! temperature and a seeded draw. Temperature 0 is greedy (argmax after penalties).

use super::ChatError;
use super::rng::Rng;
use std::collections::{HashMap, VecDeque};

#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// 0 (or below) picks the most likely token.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches p; 1 keeps all.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one; 0 keeps all.
    pub min_p: f32,
    /// Divides positive logits (multiplies negative ones) of recent tokens; 1 is off.
    pub repeat_penalty: f32,
    /// Subtracted once from the logit of any recent token; 0 is off.
    pub presence_penalty: f32,
    /// Subtracted per occurrence of a recent token; 0 is off.
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    pub penalty_last_n: usize,
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// llama.cpp's defaults.
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    pub fn greedy() -> SamplerConfig {
        SamplerConfig {
            temperature: 0.0,
            ..SamplerConfig::default()
        }
    }

    fn validate(&self) -> Result<(), ChatError> {
        let bad = |what: &str| Err(ChatError::Sampler(what.to_string()));
        if !self.temperature.is_finite() {
            return bad("temperature must be finite");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min-p must be in [0, 1]");
        }
        if self.repeat_penalty.is_nan() || self.repeat_penalty <= 0.0 {
            return bad("repeat penalty must be positive");
        }
        Ok(())
    }
}

/// A sampler with its history (for penalties) and its random stream.
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    recent: VecDeque<u32>,
}

impl Sampler {
    pub fn new(cfg: SamplerConfig) -> Result<Sampler, ChatError> {
        cfg.validate()?;
        Ok(Sampler {
            rng: Rng::new(cfg.seed),
            recent: VecDeque::with_capacity(cfg.penalty_last_n),
            cfg,
        })
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Records a token of the context (prompt or generated) for the penalties.
    pub fn accept(&mut self, id: u32) {
        if self.cfg.penalty_last_n == 0 {
            return;
        }
        if self.recent.len() == self.cfg.penalty_last_n {
            self.recent.pop_front();
        }
        self.recent.push_back(id);
    }

    pub fn reset(&mut self) {
        self.recent.clear();
    }

    /// Picks the next token from `logits` (one per vocabulary entry) and records it.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        assert!(!logits.is_empty(), "no logits to sample from");
        let mut logits = logits.to_vec();
        self.apply_penalties(&mut logits);
        let id = if self.cfg.temperature <= 0.0 {
            argmax(&logits)
        } else {
            self.draw(&logits)
        };
        self.accept(id);
        id
    }

    /// llama.cpp's penalties: each distinct recent token's logit is divided by the repeat
    /// penalty if positive (multiplied if not), then lowered by `count × frequency +
    /// presence`.
    pub fn apply_penalties(&self, logits: &mut [f32]) {
        let c = &self.cfg;
        if c.repeat_penalty == 1.0 && c.presence_penalty == 0.0 && c.frequency_penalty == 0.0 {
            return;
        }
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for &t in &self.recent {
            *counts.entry(t).or_default() += 1;
        }
        for (&t, &n) in &counts {
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            *l = if *l <= 0.0 {
                *l * c.repeat_penalty
            } else {
                *l / c.repeat_penalty
            };
            *l -= n as f32 * c.frequency_penalty + c.presence_penalty;
        }
    }

    /// The candidates that survive top-k, top-p and min-p, with their logits, most likely
    /// first.
    pub fn candidates(&self, logits: &[f32]) -> Vec<(u32, f32)> {
        let c = &self.cfg;
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.is_nan())
            .map(|(i, &l)| (i as u32, l))
            .collect();
        // Stable sort: equal logits keep id order, so results do not depend on the sort.
        cand.sort_by(|a, b| b.1.total_cmp(&a.1));
        if c.top_k > 0 {
            cand.truncate(c.top_k.max(1));
        }
        if c.top_p < 1.0 {
            let probs = softmax(&cand, 1.0);
            let mut sum = 0.0;
            let mut keep = cand.len();
            for (i, p) in probs.iter().enumerate() {
                sum += p;
                if sum >= c.top_p as f64 {
                    keep = i + 1;
                    break;
                }
            }
            cand.truncate(keep.max(1));
        }
        if c.min_p > 0.0 && !cand.is_empty() {
            // p_i >= min_p · p_max  ⇔  logit_i >= logit_max + ln(min_p)
            let floor = cand[0].1 + c.min_p.ln();
            let keep = cand.iter().take_while(|(_, l)| *l >= floor).count();
            cand.truncate(keep.max(1));
        }
        cand
    }

    fn draw(&mut self, logits: &[f32]) -> u32 {
        let cand = self.candidates(logits);
        let probs = softmax(&cand, self.cfg.temperature);
        let mut u = self.rng.next_f64();
        for (p, &(id, _)) in probs.iter().zip(&cand) {
            if u < *p {
                return id;
            }
            u -= p;
        }
        cand.last().expect("at least one candidate").0
    }
}

/// The first index of the largest logit.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &l) in logits.iter().enumerate() {
        if l > logits[best] {
            best = i;
        }
    }
    best as u32
}

/// Probabilities of `cand` (sorted, most likely first) at temperature `t`, in f64 so that
/// long tails do not round away.
fn softmax(cand: &[(u32, f32)], t: f32) -> Vec<f64> {
    let Some(&(_, max)) = cand.first() else {
        return Vec::new();
    };
    let t = t as f64;
    let e: Vec<f64> = cand
        .iter()
        .map(|&(_, l)| ((l as f64 - max as f64) / t).exp())
        .collect();
    let sum: f64 = e.iter().sum();
    e.into_iter().map(|x| x / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> SamplerConfig {
        SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            penalty_last_n: 64,
            seed: 42,
        }
    }

    const LOGITS: [f32; 6] = [1.0, 3.0, 2.5, -1.0, 3.0, 0.5];

    fn counts(c: SamplerConfig, logits: &[f32], n: usize) -> Vec<usize> {
        let mut s = Sampler::new(c).unwrap();
        let mut hist = vec![0; logits.len()];
        for _ in 0..n {
            s.reset();
            hist[s.sample(logits) as usize] += 1;
        }
        hist
    }

    #[test]
    fn greedy_is_argmax_first_on_ties() {
        let mut s = Sampler::new(SamplerConfig::greedy()).unwrap();
        assert_eq!(s.sample(&LOGITS), 1);
        assert_eq!(argmax(&[0.0, 5.0, -2.0, 5.0]), 1);
    }

    #[test]
    fn top_k_one_is_argmax_at_any_temperature() {
        let c = SamplerConfig {
            top_k: 1,
            temperature: 5.0,
            ..cfg()
        };
        let hist = counts(c, &LOGITS, 200);
        assert_eq!(hist[1], 200);
    }

    #[test]
    fn same_seed_same_tokens() {
        let run = |seed| {
            let mut s = Sampler::new(SamplerConfig { seed, ..cfg() }).unwrap();
            (0..50).map(|_| s.sample(&LOGITS)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn temperature_one_follows_softmax() {
        let hist = counts(cfg(), &LOGITS, 20_000);
        let cand: Vec<(u32, f32)> = LOGITS
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l))
            .collect();
        let p = softmax(&cand, 1.0);
        for (i, &n) in hist.iter().enumerate() {
            let f = n as f64 / 20_000.0;
            assert!((f - p[i]).abs() < 0.015, "token {i}: {f} vs {}", p[i]);
        }
    }

    #[test]
    fn top_k_keeps_the_k_best() {
        let s = Sampler::new(SamplerConfig { top_k: 3, ..cfg() }).unwrap();
        let ids: Vec<u32> = s.candidates(&LOGITS).iter().map(|c| c.0).collect();
        assert_eq!(ids, [1, 4, 2]);
    }

    #[test]
    fn top_p_keeps_the_smallest_sufficient_prefix() {
        // Probabilities ≈ 0.46, 0.46, 0.08: cumulative 0.46, 0.92, 1.0.
        let logits = [0.0f32, 0.0, -1.75];
        let keep = |p| {
            Sampler::new(SamplerConfig { top_p: p, ..cfg() })
                .unwrap()
                .candidates(&logits)
                .len()
        };
        assert_eq!(keep(0.4), 1);
        assert_eq!(keep(0.5), 2);
        assert_eq!(keep(0.95), 3);
    }

    #[test]
    fn min_p_drops_unlikely_tokens() {
        // p relative to the best: e^-1 ≈ 0.37 and e^-3 ≈ 0.05.
        let logits = [5.0f32, 4.0, 2.0];
        let s = Sampler::new(SamplerConfig {
            min_p: 0.1,
            ..cfg()
        })
        .unwrap();
        assert_eq!(s.candidates(&logits).len(), 2);
        let s = Sampler::new(SamplerConfig {
            min_p: 0.5,
            ..cfg()
        })
        .unwrap();
        assert_eq!(s.candidates(&logits).len(), 1);
    }

    #[test]
    fn penalties_change_only_recent_tokens() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 2.0,
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            penalty_last_n: 3,
            ..cfg()
        })
        .unwrap();
        // Token 0 falls out of the 3-token window.
        for t in [0, 1, 3, 1] {
            s.accept(t);
        }
        let mut l = LOGITS;
        s.apply_penalties(&mut l);
        assert_eq!(l[0], 1.0);
        assert_eq!(l[1], 3.0 / 2.0 - 2.0 * 0.25 - 0.5);
        assert_eq!(l[3], -2.0 - 0.25 - 0.5);
        assert_eq!(&l[4..], &LOGITS[4..]);
        assert_eq!(l[2], LOGITS[2]);
    }

    #[test]
    fn repeat_penalty_can_change_the_greedy_choice() {
        let mut s = Sampler::new(SamplerConfig {
            repeat_penalty: 1.5,
            ..SamplerConfig::greedy()
        })
        .unwrap();
        assert_eq!(s.sample(&LOGITS), 1);
        // 1 was just emitted: 3.0 / 1.5 = 2.0 < 3.0, so the tie partner 4 wins.
        assert_eq!(s.sample(&LOGITS), 4);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(
            Sampler::new(SamplerConfig {
                top_p: 0.0,
                ..cfg()
            })
            .is_err()
        );
        assert!(
            Sampler::new(SamplerConfig {
                min_p: 2.0,
                ..cfg()
            })
            .is_err()
        );
        assert!(
            Sampler::new(SamplerConfig {
                repeat_penalty: 0.0,
                ..cfg()
            })
            .is_err()
        );
    }
}
