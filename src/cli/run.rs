//! `kiln run`: prefill a prompt, then generate `-n` tokens one at a time, streaming the text.
//!
//! The prompt is text (`-p`, tokenized with the file's vocabulary; `--chat` wraps it in the
//! chat template as one user turn) or token ids (`--tokens`). The answer is printed as text as
//! it is generated, or as ids with `--print-ids` (always when the file has no vocabulary).

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;

use super::backend::{BackendArgs, with_backend};
use kiln::backend::Backend;
use kiln::chat::ChatTemplate;
use kiln::chat::repl::sanitize_for_terminal;
use kiln::chat::session::{Message, Role, render_conversation};
use kiln::gguf::Gguf;
use kiln::model::{Greedy, Logits, Model};
use kiln::tokenizer::{StreamDecoder, Tokenizer};

#[derive(Args, Debug)]
pub struct RunArgs {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Prompt text, tokenized with the GGUF's vocabulary (special tokens written in it, such
    /// as `<|im_end|>`, are recognised).
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
    /// Apply the chat template to the prompt as one user turn (as `kiln chat` does) and stop
    /// at end-of-generation tokens.
    #[arg(long, conflicts_with = "tokens")]
    pub chat: bool,
    /// System prompt for `--chat` (default: the template's own).
    #[arg(long, requires = "chat")]
    pub system: Option<String>,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 32)]
    pub n_predict: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Seed of the sampler.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the generated token ids, comma-separated on one line, instead of the text.
    #[arg(long)]
    pub print_ids: bool,
    /// Keep generating past end-of-generation tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    with_backend!(&args.backend, |b| generate(b, args))
}

/// The file's tokenizer when this run needs one: to tokenize `-p`, or to print text.
fn load_tokenizer(file: &Gguf, args: &RunArgs) -> anyhow::Result<Option<Tokenizer>> {
    let path = args.model.display();
    let has_vocab = file.get("tokenizer.ggml.model").is_some();
    if !has_vocab {
        if args.prompt.is_some() {
            bail!(
                "{path} has no vocabulary (no tokenizer.ggml.* metadata), so -p cannot be \
                 tokenized; convert the checkpoint with its tokenizer files, or give ids with --tokens"
            );
        }
        return Ok(None);
    }
    if args.prompt.is_none() && args.print_ids {
        return Ok(None);
    }
    Tokenizer::from_gguf(file)
        .map(Some)
        .with_context(|| format!("{path}: tokenizer"))
}

fn prompt_ids(args: &RunArgs, tok: Option<&Tokenizer>) -> anyhow::Result<Vec<u32>> {
    let path = args.model.display();
    Ok(match (&args.tokens, &args.prompt, tok) {
        (Some(ids), _, _) => ids.clone(),
        (None, Some(text), Some(tok)) if args.chat => {
            let template = ChatTemplate::from_tokenizer(tok)
                .with_context(|| format!("{path}: chat template"))?;
            let turn = Message {
                role: Role::User,
                content: text.clone(),
            };
            let rendered = render_conversation(&template, tok, args.system.as_deref(), &[turn])
                .with_context(|| format!("{path}: chat template"))?;
            tok.encode(&rendered, true, true)
        }
        (None, Some(text), Some(tok)) => tok.encode(text, true, true),
        _ => bail!("give a prompt with -p or --tokens"),
    })
}

/// Where generated tokens go: decoded text streamed to stdout, or ids printed at the end.
enum Output<'t> {
    Text {
        tok: &'t Tokenizer,
        utf8: StreamDecoder,
        terminal: bool,
        ends_with_newline: bool,
    },
    Ids,
}

impl Output<'_> {
    /// Prints token `id`'s text, if any; false when stdout is closed (stop generating).
    fn token(&mut self, id: u32) -> anyhow::Result<bool> {
        let Output::Text { tok, utf8, .. } = self else {
            return Ok(true);
        };
        let piece = utf8.push(tok.token_bytes(id, false)?);
        self.write(&piece)
    }

    fn write(&mut self, piece: &str) -> anyhow::Result<bool> {
        let Output::Text {
            terminal,
            ends_with_newline,
            ..
        } = self
        else {
            return Ok(true);
        };
        if piece.is_empty() {
            return Ok(true);
        }
        *ends_with_newline = piece.ends_with('\n');
        let piece = if *terminal {
            sanitize_for_terminal(piece)
        } else {
            piece.into()
        };
        let mut out = io::stdout().lock();
        match out.write_all(piece.as_bytes()).and_then(|()| out.flush()) {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            r => r.map(|()| true).map_err(Into::into),
        }
    }

    /// The held-back tail of the text and a final newline, or the ids.
    fn finish(&mut self, ids: &[u32]) -> anyhow::Result<()> {
        match self {
            Output::Text { utf8, .. } => {
                let tail = utf8.finish();
                self.write(&tail)?;
                if let Output::Text {
                    ends_with_newline: false,
                    ..
                } = self
                {
                    self.write("\n")?;
                }
                Ok(())
            }
            Output::Ids => {
                let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
                super::print_stdout(&format!("{}\n", ids.join(",")))
            }
        }
    }
}

fn generate<B: Backend>(b: &B, args: &RunArgs) -> anyhow::Result<()> {
    let file = Gguf::open(&args.model)?;
    let tokenizer = load_tokenizer(&file, args)?;
    let prompt = prompt_ids(args, tokenizer.as_ref())?;
    if prompt.is_empty() {
        bail!("the prompt is empty");
    }
    let model =
        Model::load(&file, b).with_context(|| format!("loading {}", args.model.display()))?;
    let vocab = model.config.vocab;
    let eos = file.get_u32("tokenizer.ggml.eos_token_id");
    let end = |id: u32| {
        !args.ignore_eos
            && match &tokenizer {
                Some(t) => t.is_eog(id),
                None => Some(id) == eos,
            }
    };
    let mut output = match &tokenizer {
        Some(tok) if !args.print_ids => Output::Text {
            tok,
            utf8: StreamDecoder::new(),
            terminal: io::stdout().is_terminal(),
            ends_with_newline: true,
        },
        _ => {
            if !args.print_ids {
                eprintln!(
                    "kiln: {} has no vocabulary; printing token ids",
                    args.model.display()
                );
            }
            Output::Ids
        }
    };
    let mut cache = model.new_cache(b, prompt.len() + args.n_predict)?;
    let mut sampler = Sampler::new(args.temp, args.seed);

    let t0 = Instant::now();
    let mut logits = model.forward(b, &prompt, &mut cache, Logits::Last)?;
    let t_prompt = t0.elapsed();
    let t1 = Instant::now();
    let mut out = Vec::with_capacity(args.n_predict);
    if args.temp <= 0.0 && args.n_predict > 0 {
        // Greedy: each token's pass is queued before the host looks at the token, so the device
        // runs it while the host prints; a stop at the end of text leaves one pass unread.
        let mut greedy = Greedy::from_logits(b, &logits, vocab)?;
        loop {
            let id = if out.len() + 1 < args.n_predict {
                greedy.step(&model, b, &mut cache)?
            } else {
                greedy.latest(b)?
            };
            out.push(id);
            if end(id) || !output.token(id)? || out.len() == args.n_predict {
                break;
            }
        }
    } else {
        while out.len() < args.n_predict {
            let id = sampler.sample(&b.read(&logits, vocab)?);
            out.push(id);
            if end(id) || !output.token(id)? || out.len() == args.n_predict {
                break;
            }
            logits = model.forward(b, &[id], &mut cache, Logits::Last)?;
        }
    }
    let t_gen = t1.elapsed();
    output.finish(&out)?;
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
