//! `kiln tokenize -m FILE.gguf (--text TEXT | --file PATH) [--json]`: the token ids of a text
//! under the file's own vocabulary. Works on a `--vocab-only` GGUF (one with no tensors).

use anyhow::Context;
use kiln::tokenizer::Tokenizer;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["text", "file"])))]
pub struct TokenizeArgs {
    /// The GGUF file whose vocabulary to use (a model or a vocab-only file).
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// The text to tokenize.
    #[arg(long)]
    pub text: Option<String>,
    /// Read the text from this file instead (taken byte for byte, trailing newline included).
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Print one JSON array of ids instead of one `id<TAB>piece` line per token.
    #[arg(long)]
    pub json: bool,
    /// Treat special-token text such as `<|im_end|>` as plain text.
    #[arg(long)]
    pub no_parse_special: bool,
}

pub fn run(args: &TokenizeArgs) -> anyhow::Result<()> {
    let tok = Tokenizer::open(&args.model)
        .with_context(|| format!("loading the vocabulary of {}", args.model.display()))?;
    let text = match (&args.text, &args.file) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => anyhow::bail!("give --text or --file"),
    };
    crate::cli::print_stdout(&render(&tok, &text, args.json, !args.no_parse_special)?)
}

/// The command's output for `text`. BOS is added only when the vocabulary asks for it.
fn render(tok: &Tokenizer, text: &str, json: bool, parse_special: bool) -> anyhow::Result<String> {
    let ids = tok.encode(text, true, parse_special);
    if json {
        return Ok(serde_json::to_string(&ids)? + "\n");
    }
    let mut out = String::new();
    for &id in &ids {
        let piece = String::from_utf8_lossy(tok.token_bytes(id, true)?).into_owned();
        out.push_str(&format!("{id}\t{piece:?}\n"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qwen2() -> Tokenizer {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/vocab");
        Tokenizer::open(dir.join("ggml-vocab-qwen2.gguf")).unwrap()
    }

    #[test]
    fn json_is_one_array_without_bos() {
        let tok = qwen2();
        assert_eq!(
            render(&tok, "Hello world", true, true).unwrap(),
            "[9707,1879]\n"
        );
    }

    #[test]
    fn text_lists_each_piece() {
        let tok = qwen2();
        let out = render(&tok, "Hi<|im_end|>", false, true).unwrap();
        assert_eq!(out, "13048\t\"Hi\"\n151645\t\"<|im_end|>\"\n");
        let plain = render(&tok, "<|im_end|>", true, false).unwrap();
        assert!(!plain.contains("151645"));
    }
}
