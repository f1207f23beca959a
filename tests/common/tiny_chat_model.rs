//! A tiny random Kimi Linear model that carries a real text vocabulary, for tests that chat:
//! the kimi-k2 fixture tokenizer (tests/fixtures/tokenizer/kimi-k2: 3,256 tiktoken ranks and
//! Kimi's special tokens) as kiln-convert lays it out (llama.cpp's layout), plus F32 random
//! weights for one KDA and one MLA layer whose vocabulary is exactly the tokenizer's. The
//! answers are noise, but every token decodes to text and the template's specials are real
//! tokens.

use kiln::gguf::{Array, GgufWriter, Value};
use kiln::quant::GgmlType;
use std::path::{Path, PathBuf};

/// The fixture's vocabulary keys (`tokenizer.*`) and its size: the ranks, then Kimi's 256
/// special slots named by tokenizer_config.json.
fn vocabulary() -> (Vec<(String, Value)>, usize) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tokenizer/kimi-k2");
    let n = kiln_convert::vocab::read_ranks(&dir.join("tiktoken.model"))
        .unwrap()
        .len();
    let size = n + kiln_convert::vocab::NUM_RESERVED_SPECIAL;
    let vocab = kiln_convert::vocab::load(&dir, size).unwrap().unwrap();
    (vocab.metadata(), size)
}

/// xorshift64*: reproducible weights without a dependency.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    }

    fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }
}

/// Writes the model to `path`; returns its vocabulary size.
pub fn write(path: &Path) -> usize {
    let (vocab_keys, vocab) = vocabulary();

    // hidden 64; 2 heads of 32 for both mixers; MLA latent 32 + rope 16; both layers dense.
    let (d, heads, hd, kernel, ff) = (64usize, 2usize, 32usize, 4usize, 128usize);
    let (kv_lora, rope, nope, v_dim) = (32usize, 16usize, 32usize, 32usize);
    let c = heads * hd;

    let mut w = GgufWriter::new();
    let a = "kimi-linear";
    let kv = |w: &mut GgufWriter, k: &str, v: Value| w.add_kv(format!("{a}.{k}"), v).unwrap();
    w.add_kv("general.architecture", a).unwrap();
    kv(&mut w, "block_count", Value::U32(2));
    kv(&mut w, "embedding_length", Value::U32(d as u32));
    kv(&mut w, "vocab_size", Value::U32(vocab as u32));
    kv(&mut w, "attention.head_count", Value::U32(heads as u32));
    kv(
        &mut w,
        "attention.head_count_kv",
        Value::Array(Array::U32(vec![0, heads as u32])),
    );
    kv(&mut w, "attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    kv(&mut w, "kda.head_dim", Value::U32(hd as u32));
    kv(&mut w, "ssm.conv_kernel", Value::U32(kernel as u32));
    kv(&mut w, "attention.kv_lora_rank", Value::U32(kv_lora as u32));
    kv(&mut w, "rope.dimension_count", Value::U32(rope as u32));
    kv(
        &mut w,
        "attention.key_length_mla",
        Value::U32((nope + rope) as u32),
    );
    kv(
        &mut w,
        "attention.value_length_mla",
        Value::U32(v_dim as u32),
    );
    kv(&mut w, "leading_dense_block_count", Value::U32(2));
    kv(&mut w, "feed_forward_length", Value::U32(ff as u32));
    kv(&mut w, "expert_count", Value::U32(4));
    kv(&mut w, "expert_used_count", Value::U32(2));
    kv(&mut w, "expert_feed_forward_length", Value::U32(32));
    for (k, v) in vocab_keys {
        w.add_kv(k, v).unwrap();
    }

    // (name, ne, how to fill): weights ~ U(±1.5/√fan_in) so activations neither vanish nor
    // blow up; norms 1 ± 0.2; the KDA decay −U(1, 16) and a small dt bias.
    enum Fill {
        Weight(usize),
        Norm,
        Decay,
        Small,
    }
    let mut tensors: Vec<(String, Vec<usize>, Fill)> = vec![
        ("token_embd.weight".into(), vec![d, vocab], Fill::Weight(1)),
        ("output_norm.weight".into(), vec![d], Fill::Norm),
        ("output.weight".into(), vec![d, vocab], Fill::Weight(d)),
    ];
    for i in 0..2 {
        let mut t =
            |s: &str, ne: Vec<usize>, f: Fill| tensors.push((format!("blk.{i}.{s}"), ne, f));
        t("attn_norm.weight", vec![d], Fill::Norm);
        t("ffn_norm.weight", vec![d], Fill::Norm);
        t("ffn_gate.weight", vec![d, ff], Fill::Weight(d));
        t("ffn_up.weight", vec![d, ff], Fill::Weight(d));
        t("ffn_down.weight", vec![ff, d], Fill::Weight(ff));
        if i == 0 {
            for s in ["q", "k", "v"] {
                t(&format!("attn_{s}.weight"), vec![d, c], Fill::Weight(d));
                t(
                    &format!("ssm_conv1d_{s}.weight"),
                    vec![kernel, 1, c],
                    Fill::Weight(kernel),
                );
            }
            t("ssm_f_a.weight", vec![d, hd], Fill::Weight(d));
            t("ssm_f_b.weight", vec![hd, c], Fill::Weight(hd));
            t("ssm_beta.weight", vec![d, heads], Fill::Weight(d));
            t("ssm_a", vec![1, heads], Fill::Decay);
            t("ssm_dt.bias", vec![c], Fill::Small);
            t("ssm_g_a.weight", vec![d, hd], Fill::Weight(d));
            t("ssm_g_b.weight", vec![hd, c], Fill::Weight(hd));
            t("ssm_norm.weight", vec![hd], Fill::Norm);
            t("attn_output.weight", vec![c, d], Fill::Weight(c));
        } else {
            t(
                "attn_q.weight",
                vec![d, heads * (nope + rope)],
                Fill::Weight(d),
            );
            t(
                "attn_kv_a_mqa.weight",
                vec![d, kv_lora + rope],
                Fill::Weight(d),
            );
            t("attn_kv_a_norm.weight", vec![kv_lora], Fill::Norm);
            t(
                "attn_k_b.weight",
                vec![nope, kv_lora, heads],
                Fill::Weight(kv_lora),
            );
            t(
                "attn_v_b.weight",
                vec![kv_lora, v_dim, heads],
                Fill::Weight(kv_lora),
            );
            t(
                "attn_output.weight",
                vec![heads * v_dim, d],
                Fill::Weight(heads * v_dim),
            );
        }
    }
    for (name, ne, _) in &tensors {
        let shape: Vec<u64> = ne.iter().map(|&n| n as u64).collect();
        w.add_tensor(name.clone(), &shape, GgmlType::F32).unwrap();
    }
    let mut out = w.create(path).unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for (_, ne, fill) in &tensors {
        let n: usize = ne.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| match fill {
                Fill::Weight(fan_in) => {
                    let s = 1.5 / (*fan_in as f32).sqrt();
                    rng.range(-s, s)
                }
                Fill::Norm => rng.range(0.8, 1.2),
                Fill::Decay => -rng.range(1.0, 16.0),
                Fill::Small => rng.range(-0.5, 0.5),
            })
            .collect();
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        out.write_tensor_data(&bytes).unwrap();
    }
    out.finish().unwrap();
    vocab
}
