//! `kiln chat`: an interactive conversation with a model, answers streamed as they are made.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::Args;

use kiln::backend::Backend;
use kiln::chat::SamplerConfig;
use kiln::chat::repl::{self, Signals};
use kiln::chat::session::{GenerateConfig, Session};
use kiln::gguf::Gguf;
use kiln::model::Model;
use kiln::tokenizer::Tokenizer;

use super::backend::{BackendArgs, with_backend};

#[derive(Args, Debug)]
pub struct ChatArgs {
    /// GGUF model file (with its tokenizer).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// System prompt (default: the chat template's own).
    #[arg(long)]
    pub system: Option<String>,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.8)]
    pub temp: f32,
    /// Keep only the k most likely tokens; 0 keeps all.
    #[arg(long, default_value_t = 40)]
    pub top_k: usize,
    /// Nucleus sampling: keep the most likely tokens up to this probability; 1 is off.
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than this fraction of the most likely one; 0 is off.
    #[arg(long, default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalty on recently seen tokens; 1 is off.
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Subtracted from the logit of any recently seen token; 0 is off.
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// Subtracted per occurrence of a recently seen token; 0 is off.
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// How many recent tokens the penalties look at.
    #[arg(long, default_value_t = 64)]
    pub penalty_last_n: usize,
    /// Seed of the sampler (default: from the clock).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Most tokens per answer.
    #[arg(short = 'n', long = "max-tokens", default_value_t = 1024)]
    pub max_tokens: usize,
    /// End the answer when this text appears (not shown); may be repeated.
    #[arg(long = "stop", value_name = "STRING")]
    pub stop: Vec<String>,
    /// Keep generating past end-of-generation tokens (timing, tests).
    #[arg(long)]
    pub ignore_eos: bool,
    /// Context length: tokens the conversation may hold.
    #[arg(short = 'c', long = "ctx", default_value_t = 4096)]
    pub ctx: usize,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Input history file (default: $XDG_STATE_HOME/kiln/history or ~/.kiln_history).
    #[arg(long)]
    pub history: Option<PathBuf>,
}

/// The SIGINT handler sees this; a static because the handler outlives any stack frame.
static SIGNALS: Signals = Signals::new();

pub fn run(args: &ChatArgs) -> anyhow::Result<()> {
    with_backend!(&args.backend, |b| chat(b, args))
}

fn chat<B: Backend>(b: &B, args: &ChatArgs) -> anyhow::Result<()> {
    if args.ctx == 0 {
        anyhow::bail!("--ctx must be at least 1");
    }
    let path = args.model.display();
    let file = Gguf::open(&args.model)?;
    let tokenizer = Tokenizer::from_gguf(&file).with_context(|| format!("{path}: tokenizer"))?;
    let model = Model::load(&file, b).with_context(|| format!("loading {path}"))?;
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let sampler = SamplerConfig {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        min_p: args.min_p,
        repeat_penalty: args.repeat_penalty,
        presence_penalty: args.presence_penalty,
        frequency_penalty: args.frequency_penalty,
        penalty_last_n: args.penalty_last_n,
        seed,
    };
    let generate = GenerateConfig {
        max_tokens: args.max_tokens,
        stop: args.stop.clone(),
        ignore_eog: args.ignore_eos,
    };
    let mut session = Session::new(b, &model, &tokenizer, sampler, generate, args.ctx)?;
    session.set_system(args.system.clone());

    // While an answer streams the terminal is in cooked mode, so Ctrl-C arrives as SIGINT:
    // it stops the answer. At the prompt rustyline reads Ctrl-C as a key instead. Anywhere
    // else (loading, a scripted chat between answers) it ends the program as usual.
    ctrlc::set_handler(|| {
        if SIGNALS.generating.load(Ordering::SeqCst) {
            SIGNALS.cancel.store(true, Ordering::SeqCst);
        } else {
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;

    eprintln!(
        "kiln chat: {path} on {}, context {} tokens, seed {seed}",
        b.name(),
        args.ctx
    );
    let history = args.history.clone().or_else(repl::default_history_path);
    repl::run(&mut session, history, &SIGNALS)?;
    Ok(())
}
