//! `kiln run`: prefill a prompt, then generate `-n` tokens one at a time.
//!
//! Until the tokenizer lands, prompts are token ids (`--tokens`) and the output is token ids.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;

use super::backend::{BackendArgs, with_backend};
use kiln::backend::Backend;
use kiln::gguf::Gguf;
use kiln::model::{Logits, Model};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Prompt text (needs the GGUF's tokenizer).
    #[arg(
        short = 'p',
        long = "prompt",
        conflicts_with = "tokens",
        required_unless_present = "tokens"
    )]
    pub prompt: Option<String>,
    /// Prompt as token ids, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub tokens: Option<Vec<u32>>,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 32)]
    pub n_predict: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the generated token ids, comma-separated on one line.
    #[arg(long)]
    pub print_ids: bool,
    /// Keep generating past the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    with_backend!(&args.backend, |b| generate(b, args))
}

fn generate<B: Backend>(b: &B, args: &RunArgs) -> anyhow::Result<()> {
    let file = Gguf::open(&args.model)?;
    let prompt = match (&args.tokens, &args.prompt) {
        (Some(ids), _) => ids.clone(),
        (None, Some(_)) => bail!("this GGUF has no tokenizer support yet; use --tokens"),
        (None, None) => bail!("give a prompt with --tokens"),
    };
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    let model =
        Model::load(&file, b).with_context(|| format!("loading {}", args.model.display()))?;
    let vocab = model.config.vocab;
    let eos = if args.ignore_eos {
        None
    } else {
        file.get_u32("tokenizer.ggml.eos_token_id")
    };
    let mut cache = model.new_cache(b, prompt.len() + args.n_predict)?;
    let mut sampler = Sampler::new(args.temp, args.seed);

    let t0 = Instant::now();
    let mut logits = model.forward(b, &prompt, &mut cache, Logits::Last)?;
    let t_prompt = t0.elapsed();
    let t1 = Instant::now();
    let mut out = Vec::with_capacity(args.n_predict);
    while out.len() < args.n_predict {
        let id = if args.temp <= 0.0 {
            b.argmax(&logits, 1, vocab)?[0]
        } else {
            sampler.sample(&b.read(&logits, vocab)?)
        };
        out.push(id);
        if Some(id) == eos || out.len() == args.n_predict {
            break;
        }
        logits = model.forward(b, &[id], &mut cache, Logits::Last)?;
    }
    let t_gen = t1.elapsed();

    let ids: Vec<String> = out.iter().map(u32::to_string).collect();
    if !args.print_ids {
        eprintln!("kiln: no detokenizer yet; printing token ids");
    }
    super::print_stdout(&format!("{}\n", ids.join(",")))?;
    eprintln!(
        "prompt: {} tokens in {:.3} s ({:.2} tok/s); generated: {} tokens in {:.3} s ({:.2} tok/s); backend {}",
        prompt.len(),
        t_prompt.as_secs_f64(),
        prompt.len() as f64 / t_prompt.as_secs_f64(),
        out.len(),
        t_gen.as_secs_f64(),
        // The first token comes from the prompt's logits: decode steps are one fewer.
        (out.len().saturating_sub(1)) as f64 / t_gen.as_secs_f64().max(1e-9),
        b.name()
    );
    Ok(())
}

/// Temperature sampling from the softmax of the logits, with a small deterministic generator.
struct Sampler {
    temp: f32,
    state: u64,
}

impl Sampler {
    fn new(temp: f32, seed: u64) -> Self {
        Sampler {
            temp,
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// splitmix64: uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    fn sample(&mut self, logits: &[f32]) -> u32 {
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let w: Vec<f64> = logits
            .iter()
            .map(|&l| (((l - max) / self.temp) as f64).exp())
            .collect();
        let mut r = self.uniform() * w.iter().sum::<f64>();
        for (i, &p) in w.iter().enumerate() {
            if r < p {
                return i as u32;
            }
            r -= p;
        }
        (w.len() - 1) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::Sampler;

    #[test]
    fn low_temperature_samples_the_argmax_and_seeds_repeat() {
        let logits = [0.0f32, 3.0, 1.0];
        let mut s = Sampler::new(0.01, 1);
        assert!((0..100).all(|_| s.sample(&logits) == 1));
        let draw = |seed| {
            let mut s = Sampler::new(1.0, seed);
            (0..50).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
        assert!(draw(7).contains(&0) && draw(7).contains(&2));
    }
}
