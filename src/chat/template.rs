//! Chat templates: `tokenizer.chat_template` rendered the way Hugging Face transformers renders
//! it (`render_jinja_template`), with minijinja: trim_blocks and lstrip_blocks, Python string
//! methods (minijinja-contrib pycompat), HF's `tojson` (Python `json.dumps`),
//! `raise_exception` and `strftime_now`, Python's spelling of None/True/False and floats, and
//! the variables `messages`, `tools`, `documents`, `add_generation_prompt`, `bos_token`,
//! `eos_token`.

use super::ChatError;
use super::{pyjson, pylist, strftime};
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Value};
use serde_json::Value as Json;

/// Kimi K2's template (moonshotai/Kimi-K2), used when a file carries none: of the Kimi
/// family templates it is the one closest to Kimi-Linear's shipped `chat_template.jinja`
/// (same size, no thinking blocks, no mutable state).
pub const KIMI_TEMPLATE: &str = include_str!("kimi_k2.jinja");

/// Names under which a message's reasoning may arrive; HF copies it to `reasoning_content`
/// (what templates read) and `thinking`.
const REASONING_FIELDS: [&str; 3] = ["reasoning_content", "thinking", "reasoning"];

/// One compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

/// What a template is rendered with.
#[derive(Clone, Debug, Default)]
pub struct RenderInput<'a> {
    /// The conversation: JSON objects with `role`, `content` and whatever else a template
    /// reads (`tool_calls`, `name`, `tool_call_id`, `reasoning_content`).
    pub messages: &'a [Json],
    /// Tool schemas, if any are declared.
    pub tools: Option<&'a [Json]>,
    pub add_generation_prompt: bool,
    pub bos_token: Option<&'a str>,
    pub eos_token: Option<&'a str>,
    /// Further variables (`unk_token`, `pad_token`, template options).
    pub extra: serde_json::Map<String, Json>,
}

fn tojson(value: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let opts = pyjson::Options::from_kwargs(&kwargs)?;
    Ok(Value::from_safe_string(pyjson::dumps(&value, &opts)?))
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Prints values as Python's `str()` would where it differs from minijinja: None, booleans
/// and floats.
fn python_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> Result<(), Error> {
    let text = match value.kind() {
        ValueKind::None => Some("None".to_string()),
        ValueKind::Bool => Some(if value.is_true() { "True" } else { "False" }.to_string()),
        ValueKind::Number if !value.is_integer() => {
            f64::try_from(value.clone()).ok().map(pyjson::py_float_repr)
        }
        _ => None,
    };
    match text {
        Some(t) => out.write_str(&t).map_err(Error::from),
        None => minijinja::escape_formatter(out, state, value),
    }
}

impl ChatTemplate {
    /// Compiles `source`; a syntax error is reported with its line.
    pub fn new(source: &str) -> Result<ChatTemplate, ChatError> {
        let mut env = Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(ChatError::Template)?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python_formatter);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", |fmt: String| strftime::strftime_now(&fmt));
        env.add_function("namespace", pylist::namespace);
        env.add_template_owned("chat", source.to_string())
            .map_err(ChatError::Template)?;
        Ok(ChatTemplate { env })
    }

    /// The built-in Kimi template.
    pub fn kimi() -> ChatTemplate {
        ChatTemplate::new(KIMI_TEMPLATE).expect("the bundled template compiles")
    }

    /// The file's template if it has one, else the built-in Kimi template.
    pub fn from_tokenizer(tok: &crate::tokenizer::Tokenizer) -> Result<ChatTemplate, ChatError> {
        match tok.chat_template() {
            Some(src) => ChatTemplate::new(src),
            None => Ok(ChatTemplate::kimi()),
        }
    }

    pub fn render(&self, input: &RenderInput<'_>) -> Result<String, ChatError> {
        let messages: Vec<Json> = input.messages.iter().map(alias_reasoning).collect();
        let mut ctx = input.extra.clone();
        ctx.insert("messages".into(), Json::Array(messages));
        ctx.insert(
            "tools".into(),
            input.tools.map_or(Json::Null, |t| Json::Array(t.to_vec())),
        );
        ctx.insert("documents".into(), Json::Null);
        ctx.insert(
            "add_generation_prompt".into(),
            Json::Bool(input.add_generation_prompt),
        );
        for (key, v) in [
            ("bos_token", input.bos_token),
            ("eos_token", input.eos_token),
        ] {
            if let Some(v) = v {
                ctx.insert(key.into(), Json::String(v.to_string()));
            }
        }
        let tmpl = self.env.get_template("chat").map_err(ChatError::Template)?;
        tmpl.render(Value::from(minijinja::value::Serde(&ctx)))
            .map_err(ChatError::Template)
    }
}

/// HF's `_alias_reasoning_fields`: `{"thinking": r, **message, "reasoning_content": r}`.
fn alias_reasoning(message: &Json) -> Json {
    let Some(obj) = message.as_object() else {
        return message.clone();
    };
    let reasoning = REASONING_FIELDS
        .iter()
        .filter_map(|k| obj.get(*k))
        .find(|v| !v.is_null());
    let Some(r) = reasoning.cloned() else {
        return message.clone();
    };
    let mut out = serde_json::Map::new();
    out.insert("thinking".into(), r.clone());
    for (k, v) in obj {
        out.insert(k.clone(), v.clone());
    }
    out.insert("reasoning_content".into(), r);
    Json::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(src: &str, messages: &[Json]) -> Result<String, ChatError> {
        ChatTemplate::new(src)?.render(&RenderInput {
            messages,
            ..Default::default()
        })
    }

    #[test]
    fn builtin_kimi_template_renders_the_documented_prompt() {
        let messages = [
            json!({"role": "system", "content": "You are a helpful assistant provided by Moonshot-AI."}),
            json!({"role": "user", "content": "Is 123 a prime?"}),
        ];
        let out = ChatTemplate::kimi()
            .render(&RenderInput {
                messages: &messages,
                add_generation_prompt: true,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            out,
            "<|im_system|>system<|im_middle|>You are a helpful assistant provided by Moonshot-AI.<|im_end|><|im_user|>user<|im_middle|>Is 123 a prime?<|im_end|><|im_assistant|>assistant<|im_middle|>"
        );
    }

    #[test]
    fn raise_exception_fails_the_render_with_its_message() {
        let err = render("{{ raise_exception('no system role') }}", &[]).unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
    }

    #[test]
    fn python_spelling_of_values() {
        let out = render("{{ none }} {{ true }} {{ 2.0 }} {{ 3 }}", &[]).unwrap();
        assert_eq!(out, "None True 2.0 3");
    }

    #[test]
    fn namespace_lists_are_mutable() {
        let src = "{% set ns = namespace(q=[]) %}{% set _ = ns.q.append('a') %}{% set _ = ns.q.append('b') %}{{ ns.q.pop(0) }}{{ ns.q | length }}{% if ns.q %}!{% endif %}";
        assert_eq!(render(src, &[]).unwrap(), "a1!");
    }

    #[test]
    fn reasoning_is_aliased_as_hf_does() {
        let m = [json!({"role": "assistant", "content": "x", "reasoning": "r"})];
        let out = render(
            "{{ messages[0].reasoning_content }}/{{ messages[0].thinking }}",
            &m,
        )
        .unwrap();
        assert_eq!(out, "r/r");
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(ChatTemplate::new("{% if %}").is_err());
    }
}
