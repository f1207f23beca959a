//! `kiln logits`: one prefill over the given token ids, logits of every position to a .npy
//! file (float32, shape [T, vocab]).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::backend::{BackendArgs, with_backend};
use kiln::backend::Backend;
use kiln::gguf::Gguf;
use kiln::model::{Logits, Model};

#[derive(Args, Debug)]
pub struct LogitsArgs {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Token ids, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "tokens_file",
        required_unless_present = "tokens_file"
    )]
    pub tokens: Option<Vec<u32>>,
    /// File of token ids: JSON (`[1, 2]` or `{"ids": [1, 2]}`) or ids separated by commas or whitespace.
    #[arg(long)]
    pub tokens_file: Option<PathBuf>,
    /// Output .npy file.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub backend: BackendArgs,
}

pub fn run(args: &LogitsArgs) -> anyhow::Result<()> {
    let ids = match (&args.tokens, &args.tokens_file) {
        (Some(ids), _) => ids.clone(),
        (None, Some(path)) => read_token_file(path)?,
        (None, None) => bail!("give the tokens with --tokens or --tokens-file"),
    };
    if ids.is_empty() {
        bail!("no token ids given");
    }
    with_backend!(&args.backend, |b| logits(b, args, &ids))
}

fn logits<B: Backend>(b: &B, args: &LogitsArgs, ids: &[u32]) -> anyhow::Result<()> {
    let file = Gguf::open(&args.model)?;
    let model =
        Model::load(&file, b).with_context(|| format!("loading {}", args.model.display()))?;
    let vocab = model.config.vocab;
    let mut cache = model.new_cache(b, ids.len())?;
    let out = model.forward(b, ids, &mut cache, Logits::All)?;
    let values = b.read(&out, ids.len() * vocab)?;
    write_npy_f32(&args.out, &values, [ids.len(), vocab])
        .with_context(|| format!("writing {}", args.out.display()))
}

/// Token ids from a JSON list, a JSON object with an "ids" list, or plain separated integers.
pub fn read_token_file(path: &Path) -> anyhow::Result<Vec<u32>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_token_ids(&text).with_context(|| format!("{}: not a list of token ids", path.display()))
}

fn parse_token_ids(text: &str) -> anyhow::Result<Vec<u32>> {
    let t = text.trim();
    if t.starts_with('[') || t.starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(t)?;
        let list = v.get("ids").unwrap_or(&v);
        let arr = list.as_array().context("expected a JSON array of ids")?;
        return arr
            .iter()
            .map(|x| {
                x.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .with_context(|| format!("bad id {x}"))
            })
            .collect();
    }
    t.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().with_context(|| format!("bad id {s:?}")))
        .collect()
}

/// Writes a little-endian float32 C-order .npy (format version 1.0).
pub fn write_npy_f32(path: &Path, values: &[f32], shape: [usize; 2]) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(&npy_header_f32(&shape))?;
    for v in values {
        out.write_all(&v.to_le_bytes())?;
    }
    out.flush()
}

fn npy_header_f32(shape: &[usize]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(usize::to_string).collect();
    let shape = if dims.len() == 1 {
        format!("({},)", dims[0])
    } else {
        format!("({})", dims.join(", "))
    };
    let mut dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
    // magic (6) + version (2) + length (2) + dict + '\n' must be a multiple of 64.
    let pad = (64 - (10 + dict.len() + 1) % 64) % 64;
    dict.push_str(&" ".repeat(pad));
    dict.push('\n');
    let mut h = b"\x93NUMPY\x01\x00".to_vec();
    h.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    h.extend_from_slice(dict.as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_readable() {
        let h = npy_header_f32(&[157, 512]);
        assert_eq!(h.len() % 64, 0);
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(
            text.starts_with("{'descr': '<f4', 'fortran_order': False, 'shape': (157, 512), }"),
            "{text}"
        );
        assert!(text.ends_with('\n'));
        assert_eq!(u16::from_le_bytes([h[8], h[9]]) as usize, h.len() - 10);
    }

    #[test]
    fn token_files() {
        assert_eq!(parse_token_ids("1, 2,3\n4").unwrap(), vec![1, 2, 3, 4]);
        assert_eq!(parse_token_ids("[5, 6]").unwrap(), vec![5, 6]);
        assert_eq!(parse_token_ids(r#"{"ids": [7]}"#).unwrap(), vec![7]);
        assert!(parse_token_ids("1, x").is_err());
        assert!(parse_token_ids("[-1]").is_err());
    }
}
