//! The chat templates in ../shared/data/templates render byte for byte as Hugging Face
//! transformers renders them (fixture: tests/reference/make_template_fixtures.py). Where HF's
//! immutable sandbox refuses a template (Kimi K2's tool-call queue uses `list.append`), the
//! render must equal jinja2's mutable sandbox instead.

use kiln::chat::{ChatTemplate, RenderInput};
use serde_json::Value as Json;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn templates_render_as_transformers_does() {
    let text = std::fs::read_to_string(root().join("tests/fixtures/templates/cases.json")).unwrap();
    let doc: Json = serde_json::from_str(&text).unwrap();
    let special = &doc["special_tokens"];
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 40);
    let mut checked = 0;
    let mut failures = Vec::new();
    for case in cases {
        let name = case["template"].as_str().unwrap();
        let src = std::fs::read_to_string(root().join("../shared/data/templates").join(name))
            .unwrap_or_else(|e| panic!("../shared/data/templates/{name}: {e}"));
        let tmpl = ChatTemplate::new(&src).unwrap();
        let conv = case["conversation"].as_str().unwrap();
        let messages = doc["conversations"][conv].as_array().unwrap();
        let tools = case["tools"].as_array().map(Vec::as_slice);
        let mut extra = serde_json::Map::new();
        for key in ["unk_token", "pad_token"] {
            extra.insert(key.into(), special[key].clone());
        }
        let input = RenderInput {
            messages,
            tools,
            add_generation_prompt: case["add_generation_prompt"].as_bool().unwrap(),
            bos_token: special["bos_token"].as_str(),
            eos_token: special["eos_token"].as_str(),
            extra,
        };
        let want = case
            .get("expected")
            .or_else(|| case.get("expected_mutable"))
            .and_then(Json::as_str)
            .unwrap();
        let label = format!(
            "{name} / {conv} / tools: {} / add_generation_prompt: {}",
            tools.is_some(),
            input.add_generation_prompt
        );
        match tmpl.render(&input) {
            Ok(got) if got == want => checked += 1,
            Ok(got) => failures.push(format!("{label}\n  want {want:?}\n  got  {got:?}")),
            Err(e) => failures.push(format!("{label}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(checked, cases.len());
}

#[test]
fn builtin_template_is_a_shipped_kimi_template() {
    let shipped =
        std::fs::read_to_string(root().join("../shared/data/templates/moonshotai-Kimi-K2.jinja"))
            .unwrap();
    assert_eq!(kiln::chat::KIMI_TEMPLATE, shipped);
}
