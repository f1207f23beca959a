//! `kiln run` with text: `-p` is tokenized with the file's vocabulary, `--chat` wraps it in the
//! chat template as `kiln chat` would, the answer streams as text (ids with `--print-ids`), and a
//! file without a vocabulary gives one clear line. On a tiny random model with a real vocab, and
//! on the bundled chat checkpoint (tests/fixtures/tiny-chat) after kiln-convert.

#[path = "common/tiny_chat_model.rs"]
mod tiny_chat_model;

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use kiln::chat::ChatTemplate;
use kiln::chat::session::{Message, Role, render_conversation};
use kiln::gguf::{Gguf, GgufWriter};
use kiln::tokenizer::Tokenizer;

/// Runs `kiln run -m MODEL --backend cpu ARGS`; returns (success, stdout, stderr).
fn kiln_run(model: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("run")
        .arg("-m")
        .arg(model)
        .args(["--backend", "cpu"])
        .args(args)
        .output()
        .expect("run kiln");
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

fn ids_arg(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn parse_ids(s: &str) -> Vec<u32> {
    s.trim().split(',').map(|t| t.parse().unwrap()).collect()
}

#[test]
fn prompt_text_and_chat_turn() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tiny-chat.gguf");
    tiny_chat_model::write(&model);
    let tok = Tokenizer::from_gguf(&Gguf::open(&model).unwrap()).unwrap();
    let greedy = ["-n", "6", "--temp", "0"];

    // -p is the text's tokens: the same answer as giving those ids.
    let text = "Hello there, how's it going? 你好";
    let ids = tok.encode(text, true, true);
    let (ok, by_text, err) = kiln_run(
        &model,
        &[&["-p", text, "--print-ids"], &greedy[..]].concat(),
    );
    assert!(ok, "{err}");
    let (ok, by_ids, err) = kiln_run(
        &model,
        &[&["--tokens", &ids_arg(&ids), "--print-ids"], &greedy[..]].concat(),
    );
    assert!(ok, "{err}");
    assert_eq!(by_text, by_ids);
    assert!(
        err.contains(&format!("prompt: {} tokens", ids.len())),
        "{err}"
    );

    // Without --print-ids the answer is its text, ending in a newline.
    let answer = parse_ids(&by_text);
    let (ok, streamed, err) = kiln_run(&model, &[&["-p", text], &greedy[..]].concat());
    assert!(ok, "{err}");
    let mut want = tok.decode_with(&answer, false).unwrap();
    if !want.ends_with('\n') {
        want.push('\n');
    }
    assert_eq!(streamed, want);

    // --chat: the template's rendering of one user turn (after the system prompt), specials
    // and all, is the prompt.
    let turn = Message {
        role: Role::User,
        content: "Hi".into(),
    };
    let template = ChatTemplate::from_tokenizer(&tok).unwrap();
    let rendered = render_conversation(&template, &tok, Some("Be brief."), &[turn]).unwrap();
    let chat_ids = tok.encode(&rendered, true, true);
    let im_end = tok.special_id("<|im_end|>").unwrap();
    assert!(chat_ids.contains(&im_end), "{rendered}");
    let chat = ["--chat", "-p", "Hi", "--system", "Be brief.", "--print-ids"];
    let (ok, by_chat, err) = kiln_run(&model, &[&chat[..], &greedy[..]].concat());
    assert!(ok, "{err}");
    let (ok, by_ids, err) = kiln_run(
        &model,
        &[
            &["--tokens", &ids_arg(&chat_ids), "--print-ids"],
            &greedy[..],
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert_eq!(by_chat, by_ids);
    // An end-of-generation token ends the answer: it can only be the last one.
    let answer = parse_ids(&by_chat);
    let eog = answer.iter().position(|&id| tok.is_eog(id));
    assert!(eog.is_none_or(|i| i + 1 == answer.len()), "{answer:?}");
}

#[test]
fn text_prompt_needs_a_vocabulary() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-vocab.gguf");
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "kimi-linear").unwrap();
    w.create(&path).unwrap().finish().unwrap();

    let (ok, out, err) = kiln_run(&path, &["-p", "Hello"]);
    assert!(!ok && out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains("no-vocab.gguf") && err.contains("no vocabulary") && err.contains("--tokens"),
        "{err}"
    );

    let (ok, _, err) = kiln_run(&path, &["-p", "Hello", "--system", "S"]);
    assert!(!ok && err.contains("--chat"), "{err}");
}

/// The README's first command: the bundled checkpoint, converted, answers a chat turn.
#[test]
fn bundled_chat_checkpoint_converts_and_answers() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny-chat.gguf");
    let hf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-chat/hf");
    let mut argv: Vec<OsString> = vec!["kiln-convert".into(), hf.into(), "-o".into()];
    argv.push(gguf.clone().into());
    argv.extend(["--type", "q8_0", "--quiet"].map(OsString::from));
    kiln_convert::cli::run_args(argv).unwrap();

    let tok = Tokenizer::from_gguf(&Gguf::open(&gguf).unwrap()).unwrap();
    assert_eq!(tok.n_vocab(), 3512);
    let text = |id: Option<u32>| tok.token_text(id.unwrap()).unwrap().to_string();
    assert_eq!(
        (text(tok.bos()), text(tok.eos())),
        ("[BOS]".into(), "[EOS]".into())
    );
    assert_eq!(
        tok.chat_template(),
        Some(include_str!("fixtures/tiny-chat/hf/chat_template.jinja"))
    );

    let turn = Message {
        role: Role::User,
        content: "Hello".into(),
    };
    let template = ChatTemplate::from_tokenizer(&tok).unwrap();
    let rendered = render_conversation(&template, &tok, None, &[turn]).unwrap();
    assert!(
        rendered.ends_with("<|im_assistant|>assistant<|im_middle|>"),
        "{rendered}"
    );
    let n_prompt = tok.encode(&rendered, true, true).len();
    let (ok, out, err) = kiln_run(&gguf, &["--chat", "-p", "Hello", "-n", "8", "--temp", "0"]);
    assert!(ok, "{err}");
    assert!(!out.trim().is_empty(), "no answer text; stderr:\n{err}");
    assert!(err.contains(&format!("prompt: {n_prompt} tokens")), "{err}");
}
