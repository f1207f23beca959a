//! A conversation with one model: the messages, the sequence state that already holds them,
//! and one answer at a time streamed out token by token.
//!
//! Each turn renders the whole conversation with the chat template and tokenizes it. The cache
//! holds the tokens fed so far; when they are a prefix of the new rendering only the rest is
//! prefilled, so a turn costs its own tokens, not the whole history.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use thiserror::Error;

use super::{ChatError, ChatTemplate, RenderInput, Sampler, SamplerConfig, StopMatcher};
use crate::backend::Backend;
use crate::model::{HybridCache, Logits, Model, ModelError};
use crate::tokenizer::{StreamDecoder, Tokenizer, TokenizerError};

#[derive(Debug, Error)]
pub enum SessionError {
    #[error(
        "the context is full: {needed} tokens needed, the cache holds {capacity}; \
         /reset starts a new conversation (or restart with a larger --ctx)"
    )]
    ContextFull { needed: usize, capacity: usize },
    #[error(transparent)]
    Chat(#[from] ChatError),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    #[error("backend: {0}")]
    Backend(#[from] crate::backend::BackendError),
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
}

impl SessionError {
    fn file(path: &Path, msg: impl std::fmt::Display) -> SessionError {
        SessionError::File {
            path: path.display().to_string(),
            msg: msg.to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// What `/save` writes and `/load` reads.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transcript {
    #[serde(default)]
    pub system: Option<String>,
    #[serde(default)]
    pub messages: Vec<Message>,
}

/// How generation is bounded, apart from the sampler.
#[derive(Clone, Debug)]
pub struct GenerateConfig {
    pub max_tokens: usize,
    pub stop: Vec<String>,
    /// Keep going past end-of-generation tokens (for timing and tests).
    pub ignore_eog: bool,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            max_tokens: 1024,
            stop: Vec::new(),
            ignore_eog: false,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    EndOfGeneration,
    StopString,
    MaxTokens,
    Cancelled,
}

/// One answer's numbers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TurnStats {
    /// Tokens prefilled this turn.
    pub prompt_tokens: usize,
    /// Tokens of the rendering that the cache already held.
    pub reused_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_time: Duration,
    pub decode_time: Duration,
    pub stop: StopReason,
}

impl TurnStats {
    pub fn prefill_tok_s(&self) -> f64 {
        rate(self.prompt_tokens, self.prefill_time)
    }

    /// The first token comes from the prefill's logits, so decode ran one step fewer.
    pub fn decode_tok_s(&self) -> f64 {
        rate(self.generated_tokens.saturating_sub(1), self.decode_time)
    }
}

/// Totals since the session started.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SessionStats {
    pub turns: usize,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub prefill_time: Duration,
    pub decode_time: Duration,
    /// Turns whose rendering did not extend what the cache held, so everything was prefilled again.
    pub reprefills: usize,
}

fn rate(n: usize, t: Duration) -> f64 {
    if n == 0 {
        0.0
    } else {
        n as f64 / t.as_secs_f64().max(1e-9)
    }
}

/// Renders a conversation (an optional system prompt, then `messages`) with `template`, ready
/// for the assistant's answer: what a chat turn feeds the model, as text to tokenize with
/// `encode(text, true, true)`.
pub fn render_conversation(
    template: &ChatTemplate,
    tok: &Tokenizer,
    system: Option<&str>,
    messages: &[Message],
) -> Result<String, SessionError> {
    let mut msgs: Vec<Json> = Vec::with_capacity(messages.len() + 1);
    if let Some(s) = system {
        msgs.push(json!({ "role": "system", "content": s }));
    }
    msgs.extend(
        messages
            .iter()
            .map(|m| serde_json::to_value(m).unwrap_or(Json::Null)),
    );
    let special = |id: Option<u32>| id.and_then(|id| tok.token_text(id));
    Ok(template.render(&RenderInput {
        messages: &msgs,
        add_generation_prompt: true,
        bos_token: special(tok.bos()),
        eos_token: special(tok.eos()),
        ..RenderInput::default()
    })?)
}

pub struct Session<'a, 'w, B: Backend> {
    backend: &'a B,
    model: &'a Model<'w, B>,
    tokenizer: &'a Tokenizer,
    template: ChatTemplate,
    sampler: Sampler,
    pub generate: GenerateConfig,
    capacity: usize,
    cache: HybridCache<B>,
    /// The tokens the cache holds, in order.
    fed: Vec<u32>,
    /// The cache has been written since it was made, so starting over needs a fresh one.
    stale: bool,
    system: Option<String>,
    messages: Vec<Message>,
    stats: SessionStats,
}

impl<'a, 'w, B: Backend> Session<'a, 'w, B> {
    /// A session whose cache holds up to `capacity` tokens; the template is the tokenizer's
    /// own, else the built-in Kimi template.
    pub fn new(
        backend: &'a B,
        model: &'a Model<'w, B>,
        tokenizer: &'a Tokenizer,
        sampler: SamplerConfig,
        generate: GenerateConfig,
        capacity: usize,
    ) -> Result<Self, SessionError> {
        Ok(Session {
            backend,
            model,
            tokenizer,
            template: ChatTemplate::from_tokenizer(tokenizer)?,
            sampler: Sampler::new(sampler)?,
            generate,
            capacity,
            cache: model.new_cache(backend, capacity)?,
            fed: Vec::new(),
            stale: false,
            system: None,
            messages: Vec::new(),
            stats: SessionStats::default(),
        })
    }

    pub fn system(&self) -> Option<&str> {
        self.system.as_deref()
    }

    /// Sets (or with `None` clears) the system prompt. The cache is kept: the next turn sees
    /// that the rendering changed at the start and prefills again.
    pub fn set_system(&mut self, system: Option<String>) {
        self.system = system.filter(|s| !s.is_empty());
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Tokens the cache holds now, and how many it can.
    pub fn context(&self) -> (usize, usize) {
        (self.cache.pos, self.capacity)
    }

    /// Forgets the conversation (the system prompt stays) and the sequence state.
    pub fn reset(&mut self) {
        self.messages.clear();
        self.fed.clear();
        self.sampler.reset();
        self.cache.pos = 0;
    }

    pub fn transcript(&self) -> Transcript {
        Transcript {
            system: self.system.clone(),
            messages: self.messages.clone(),
        }
    }

    /// Replaces the conversation; a system message inside `messages` is kept as the system
    /// prompt so the two places cannot disagree.
    pub fn set_transcript(&mut self, t: Transcript) {
        self.reset();
        let mut system = t.system;
        for m in t.messages {
            if m.role == Role::System {
                system = Some(m.content);
            } else {
                self.messages.push(m);
            }
        }
        self.set_system(system);
    }

    pub fn save(&self, path: &Path) -> Result<(), SessionError> {
        let text = serde_json::to_string_pretty(&self.transcript())
            .map_err(|e| SessionError::file(path, e))?;
        std::fs::write(path, text + "\n").map_err(|e| SessionError::file(path, e))
    }

    pub fn load(&mut self, path: &Path) -> Result<(), SessionError> {
        let text = std::fs::read_to_string(path).map_err(|e| SessionError::file(path, e))?;
        let t: Transcript = serde_json::from_str(&text)
            .map_err(|e| SessionError::file(path, format!("not a kiln chat transcript: {e}")))?;
        self.set_transcript(t);
        Ok(())
    }

    /// The conversation as the template sees it.
    fn render(&self) -> Result<String, SessionError> {
        render_conversation(
            &self.template,
            self.tokenizer,
            self.system.as_deref(),
            &self.messages,
        )
    }

    /// Adds `text` as the user's message and streams the answer through `on_text` (text that
    /// is complete and not part of a stop string). The answer, even a cancelled or partial
    /// one, joins the conversation. On an error before generation starts the user's message
    /// is taken back, so the conversation stays as it was.
    pub fn send(
        &mut self,
        text: &str,
        cancel: &AtomicBool,
        mut on_text: impl FnMut(&str),
    ) -> Result<TurnStats, SessionError> {
        self.messages.push(Message {
            role: Role::User,
            content: text.to_string(),
        });
        let t0 = Instant::now();
        let (logits, prompt_tokens, reused_tokens) = match self.prefill() {
            Ok(v) => v,
            Err(e) => {
                self.messages.pop();
                return Err(e);
            }
        };
        let prefill_time = t0.elapsed();

        let t1 = Instant::now();
        let (answer, generated, stop, result) = self.decode(logits, cancel, &mut on_text);
        let decode_time = t1.elapsed();
        self.messages.push(Message {
            role: Role::Assistant,
            content: answer,
        });
        let stats = TurnStats {
            prompt_tokens,
            reused_tokens,
            generated_tokens: generated,
            prefill_time,
            decode_time,
            stop,
        };
        self.stats.turns += 1;
        self.stats.prompt_tokens += prompt_tokens;
        self.stats.generated_tokens += generated;
        self.stats.prefill_time += prefill_time;
        self.stats.decode_time += decode_time;
        result.map(|()| stats)
    }

    /// Feeds whatever part of the rendered conversation the cache does not hold yet; returns
    /// the last position's logits, the tokens fed and the tokens reused.
    fn prefill(&mut self) -> Result<(Vec<f32>, usize, usize), SessionError> {
        let ids = self.tokenizer.encode(&self.render()?, true, true);
        let reused = if ids.len() > self.fed.len() && ids.starts_with(&self.fed) {
            self.fed.len()
        } else {
            // The rendering no longer extends what was fed: the system prompt changed, a stop
            // string or a cancel cut the answer, or the answer's tokens re-encode differently
            // (BPE does not always pick the tokens the model sampled). A KDA layer's recurrent
            // state cannot be rewound to a shorter prefix, so the whole conversation is fed
            // again from a zero state.
            if !self.fed.is_empty() {
                self.stats.reprefills += 1;
            }
            self.fed.clear();
            self.sampler.reset();
            0
        };
        let new = &ids[reused..];
        if ids.len() > self.capacity {
            return Err(SessionError::ContextFull {
                needed: ids.len(),
                capacity: self.capacity,
            });
        }
        if reused == 0 && self.stale {
            // Starting over needs a zero state; the old one holds another sequence. The old
            // cache goes first so the two are never held at once.
            self.cache.layers.clear();
            self.cache = self.model.new_cache(self.backend, self.capacity)?;
            self.stale = false;
        }
        let logits = self.feed(new)?;
        for &id in new {
            self.sampler.accept(id);
        }
        Ok((logits, new.len(), reused))
    }

    /// Runs `ids` through the model, keeping `fed` in step with the cache; after a failure
    /// mid-way the state is unknown, so it is marked empty and the next turn starts over.
    fn feed(&mut self, ids: &[u32]) -> Result<Vec<f32>, SessionError> {
        let needed = self.cache.pos + ids.len();
        if needed > self.capacity {
            return Err(SessionError::ContextFull {
                needed,
                capacity: self.capacity,
            });
        }
        self.stale = true;
        let run = self
            .model
            .forward(self.backend, ids, &mut self.cache, Logits::Last)
            .map_err(SessionError::from)
            .and_then(|buf| {
                self.backend
                    .read(&buf, self.model.config.vocab)
                    .map_err(SessionError::from)
            });
        match run {
            Ok(logits) => {
                self.fed.extend_from_slice(ids);
                Ok(logits)
            }
            Err(e) => {
                self.fed.clear();
                Err(e)
            }
        }
    }

    /// Samples and feeds one token at a time until a stop condition; returns the number of
    /// tokens generated, why it stopped, and an error that ended it early.
    fn decode(
        &mut self,
        mut logits: Vec<f32>,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> (String, usize, StopReason, Result<(), SessionError>) {
        let mut answer = String::new();
        let mut emit = |piece: &str| {
            if !piece.is_empty() {
                answer.push_str(piece);
                on_text(piece);
            }
        };
        let mut utf8 = StreamDecoder::new();
        let mut stops = StopMatcher::new(self.generate.stop.iter().cloned());
        let mut generated = 0;
        let (reason, result) = loop {
            if cancel.load(Ordering::Relaxed) {
                break (StopReason::Cancelled, Ok(()));
            }
            if generated >= self.generate.max_tokens {
                break (StopReason::MaxTokens, Ok(()));
            }
            let id = self.sampler.sample(&logits);
            if self.tokenizer.is_eog(id) && !self.generate.ignore_eog {
                break (StopReason::EndOfGeneration, Ok(()));
            }
            generated += 1;
            let bytes = match self.tokenizer.token_bytes(id, false) {
                Ok(b) => b,
                Err(e) => break (StopReason::EndOfGeneration, Err(e.into())),
            };
            let step = stops.push(&utf8.push(bytes));
            emit(&step.text);
            if step.stopped {
                break (StopReason::StopString, Ok(()));
            }
            if generated >= self.generate.max_tokens {
                break (StopReason::MaxTokens, Ok(()));
            }
            match self.feed(&[id]) {
                Ok(l) => logits = l,
                Err(e) => break (StopReason::MaxTokens, Err(e)),
            }
        };
        if reason != StopReason::StopString {
            let tail = utf8.finish();
            let mut rest = stops.push(&tail).text;
            rest.push_str(&stops.finish());
            emit(&rest);
        }
        (answer, generated, reason, result)
    }
}
