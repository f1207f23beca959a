//! Chat: rendering the conversation with the model's template and choosing the next token.
//!
//! - `template`: [`ChatTemplate`], HF-compatible rendering of `tokenizer.chat_template`.
//! - `pyjson`, `pylist`, `strftime`: the Python behaviour templates rely on.
//! - `sampler`: [`Sampler`], logits → token id.
//! - `stop`: [`StopMatcher`], stop strings over streamed text.

mod pyjson;
mod pylist;
pub mod repl;
mod rng;
pub mod sampler;
pub mod session;
pub mod stop;
mod strftime;
pub mod template;

pub use sampler::{Sampler, SamplerConfig};
pub use stop::StopMatcher;
pub use template::{ChatTemplate, KIMI_TEMPLATE, RenderInput};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ChatError {
    #[error("chat template: {0:#}")]
    Template(#[source] minijinja::Error),
    #[error("sampler: {0}")]
    Sampler(String),
}
