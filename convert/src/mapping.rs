//! Hugging Face tensor names → GGUF tensor names and transforms, exactly as llama.cpp's
//! `conversion/kimi_linear.py` writes them for `MODEL_ARCH.KIMI_LINEAR`.
//!
//! Shapes here are in ggml order (`ne`, fastest dimension first, the reverse of the torch shape).
//! Every output tensor is produced row by row (a row = `ne[0]` values), so the converter can
//! stream any tensor through a bounded buffer.

use crate::hf::{Checkpoint, KimiConfig, TensorEntry};
use std::collections::BTreeSet;

/// Where the values of one output tensor come from.
#[derive(Clone, Debug)]
pub enum Source {
    /// The HF tensor as is (a conv weight's reshape keeps the memory order).
    Copy(String),
    /// `-exp(A_log)`.
    NegExp(String),
    /// Routed experts stacked on a new slowest dimension, expert 0 first.
    Experts(Vec<String>),
    /// The key half of `kv_b_proj` per head, transposed to [heads, kv_lora_rank, qk_nope].
    KvbK(KvSplit),
    /// The value half of `kv_b_proj` per head: [heads, v_head_dim, kv_lora_rank].
    KvbV(KvSplit),
}

#[derive(Clone, Debug)]
pub struct KvSplit {
    pub src: String,
    pub heads: usize,
    pub nope: usize,
    pub v: usize,
    pub rank: usize,
}

/// One tensor of the GGUF file.
#[derive(Clone, Debug)]
pub struct OutTensor {
    pub name: String,
    /// ggml dimensions, fastest first.
    pub ne: Vec<usize>,
    pub source: Source,
    /// HF tensors this output reads, with the torch shapes config.json implies for them.
    pub inputs: Vec<Expected>,
}

#[derive(Clone, Debug)]
pub struct Expected {
    pub name: String,
    /// Acceptable torch shapes (conv weights and A_log come in more than one form).
    pub shapes: Vec<Vec<usize>>,
}

impl OutTensor {
    pub fn n_per_row(&self) -> usize {
        self.ne[0]
    }

    pub fn n_rows(&self) -> usize {
        self.ne[1..].iter().product()
    }

    pub fn n_elements(&self) -> usize {
        self.ne.iter().product()
    }

    /// The block index in `blk.N.`, if any.
    pub fn layer(&self) -> Option<usize> {
        self.name
            .strip_prefix("blk.")?
            .split('.')
            .next()?
            .parse()
            .ok()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MappingError {
    #[error(
        "checkpoint lacks tensor {tensor}, which config.json implies (expected shape {expected:?})"
    )]
    Missing {
        tensor: String,
        expected: Vec<usize>,
    },
    #[error(
        "tensor {tensor} in {shard}: shape {found:?} contradicts config.json (expected {expected})"
    )]
    Shape {
        tensor: String,
        shard: String,
        found: Vec<usize>,
        expected: String,
    },
    #[error(
        "tensor {tensor} in {shard} is not part of a Kimi Linear checkpoint with this config.json"
    )]
    Unexpected { tensor: String, shard: String },
}

fn rev(shape: &[usize]) -> Vec<usize> {
    shape.iter().rev().copied().collect()
}

fn one(name: impl Into<String>, shape: Vec<usize>) -> Expected {
    Expected {
        name: name.into(),
        shapes: vec![shape],
    }
}

/// A plain renamed tensor whose ne is the reverse of its torch shape.
fn copy(gguf: String, hf: String, shape: Vec<usize>) -> OutTensor {
    OutTensor {
        name: gguf,
        ne: rev(&shape),
        source: Source::Copy(hf.clone()),
        inputs: vec![one(hf, shape)],
    }
}

/// The GGUF tensors of a checkpoint with this config, in file order.
pub fn layout(cfg: &KimiConfig) -> Vec<OutTensor> {
    let d = cfg.hidden_size;
    let mut out = vec![copy(
        "token_embd.weight".into(),
        "model.embed_tokens.weight".into(),
        vec![cfg.vocab_size, d],
    )];
    for i in 0..cfg.num_hidden_layers {
        layer(cfg, i, &mut out);
    }
    out.push(copy(
        "output_norm.weight".into(),
        "model.norm.weight".into(),
        vec![d],
    ));
    if !cfg.tie_word_embeddings {
        out.push(copy(
            "output.weight".into(),
            "lm_head.weight".into(),
            vec![cfg.vocab_size, d],
        ));
    }
    out
}

fn layer(cfg: &KimiConfig, i: usize, out: &mut Vec<OutTensor>) {
    let d = cfg.hidden_size;
    let hf = format!("model.layers.{i}.");
    let b = format!("blk.{i}.");
    let at = format!("{hf}self_attn.");
    out.push(copy(
        format!("{b}attn_norm.weight"),
        format!("{hf}input_layernorm.weight"),
        vec![d],
    ));
    if cfg.is_mla(i) {
        mla(cfg, &at, &b, out);
    } else {
        kda(cfg, &at, &b, out);
    }
    out.push(copy(
        format!("{b}ffn_norm.weight"),
        format!("{hf}post_attention_layernorm.weight"),
        vec![d],
    ));
    if cfg.is_dense(i) {
        let (m, f) = (format!("{hf}mlp."), cfg.intermediate_size);
        out.push(copy(
            format!("{b}ffn_gate.weight"),
            format!("{m}gate_proj.weight"),
            vec![f, d],
        ));
        out.push(copy(
            format!("{b}ffn_up.weight"),
            format!("{m}up_proj.weight"),
            vec![f, d],
        ));
        out.push(copy(
            format!("{b}ffn_down.weight"),
            format!("{m}down_proj.weight"),
            vec![d, f],
        ));
    } else {
        moe(cfg, &format!("{hf}block_sparse_moe."), &b, out);
    }
}

fn kda(cfg: &KimiConfig, at: &str, b: &str, out: &mut Vec<OutTensor>) {
    let (d, h, k, c, w) = (
        cfg.hidden_size,
        cfg.kda_num_heads,
        cfg.kda_head_dim,
        cfg.kda_width(),
        cfg.conv_kernel,
    );
    out.push(copy(
        format!("{b}attn_q.weight"),
        format!("{at}q_proj.weight"),
        vec![c, d],
    ));
    out.push(copy(
        format!("{b}attn_k.weight"),
        format!("{at}k_proj.weight"),
        vec![c, d],
    ));
    out.push(copy(
        format!("{b}attn_v.weight"),
        format!("{at}v_proj.weight"),
        vec![c, d],
    ));
    for s in ["q", "k", "v"] {
        // HF [C, 1, W] (or [C, W]) viewed as numpy (1, C, 1, W): ggml ne [W, 1, C, 1], taps fastest.
        let hf = format!("{at}{s}_conv1d.weight");
        out.push(OutTensor {
            name: format!("{b}ssm_conv1d_{s}.weight"),
            ne: vec![w, 1, c, 1],
            source: Source::Copy(hf.clone()),
            inputs: vec![Expected {
                name: hf,
                shapes: vec![vec![c, 1, w], vec![c, w]],
            }],
        });
    }
    out.push(copy(
        format!("{b}ssm_f_a.weight"),
        format!("{at}f_a_proj.weight"),
        vec![k, d],
    ));
    out.push(copy(
        format!("{b}ssm_f_b.weight"),
        format!("{at}f_b_proj.weight"),
        vec![c, k],
    ));
    out.push(copy(
        format!("{b}ssm_beta.weight"),
        format!("{at}b_proj.weight"),
        vec![h, d],
    ));
    let a_log = format!("{at}A_log");
    out.push(OutTensor {
        name: format!("{b}ssm_a"),
        ne: vec![1, h, 1, 1],
        source: Source::NegExp(a_log.clone()),
        inputs: vec![Expected {
            name: a_log,
            shapes: vec![vec![1, 1, h, 1], vec![h], vec![1, h]],
        }],
    });
    out.push(copy(
        format!("{b}ssm_dt.bias"),
        format!("{at}dt_bias"),
        vec![c],
    ));
    out.push(copy(
        format!("{b}ssm_g_a.weight"),
        format!("{at}g_a_proj.weight"),
        vec![k, d],
    ));
    out.push(copy(
        format!("{b}ssm_g_b.weight"),
        format!("{at}g_b_proj.weight"),
        vec![c, k],
    ));
    out.push(copy(
        format!("{b}ssm_norm.weight"),
        format!("{at}o_norm.weight"),
        vec![k],
    ));
    out.push(copy(
        format!("{b}attn_output.weight"),
        format!("{at}o_proj.weight"),
        vec![d, c],
    ));
}

fn mla(cfg: &KimiConfig, at: &str, b: &str, out: &mut Vec<OutTensor>) {
    let d = cfg.hidden_size;
    let h = cfg.num_attention_heads;
    let (nope, rope, v, r) = (
        cfg.qk_nope_head_dim,
        cfg.qk_rope_head_dim,
        cfg.v_head_dim,
        cfg.kv_lora_rank,
    );
    let q_out = h * (nope + rope);
    match cfg.q_lora_rank {
        None => out.push(copy(
            format!("{b}attn_q.weight"),
            format!("{at}q_proj.weight"),
            vec![q_out, d],
        )),
        Some(q) => {
            out.push(copy(
                format!("{b}attn_q_a.weight"),
                format!("{at}q_a_proj.weight"),
                vec![q, d],
            ));
            out.push(copy(
                format!("{b}attn_q_a_norm.weight"),
                format!("{at}q_a_layernorm.weight"),
                vec![q],
            ));
            out.push(copy(
                format!("{b}attn_q_b.weight"),
                format!("{at}q_b_proj.weight"),
                vec![q_out, q],
            ));
        }
    }
    out.push(copy(
        format!("{b}attn_kv_a_mqa.weight"),
        format!("{at}kv_a_proj_with_mqa.weight"),
        vec![r + rope, d],
    ));
    out.push(copy(
        format!("{b}attn_kv_a_norm.weight"),
        format!("{at}kv_a_layernorm.weight"),
        vec![r],
    ));
    let hkv = cfg.num_key_value_heads;
    let split = KvSplit {
        src: format!("{at}kv_b_proj.weight"),
        heads: hkv,
        nope,
        v,
        rank: r,
    };
    let kv_in = vec![one(split.src.clone(), vec![hkv * (nope + v), r])];
    out.push(OutTensor {
        name: format!("{b}attn_k_b.weight"),
        ne: vec![nope, r, hkv],
        source: Source::KvbK(split.clone()),
        inputs: kv_in.clone(),
    });
    out.push(OutTensor {
        name: format!("{b}attn_v_b.weight"),
        ne: vec![r, v, hkv],
        source: Source::KvbV(split),
        inputs: kv_in,
    });
    out.push(copy(
        format!("{b}attn_output.weight"),
        format!("{at}o_proj.weight"),
        vec![d, h * v],
    ));
}

fn moe(cfg: &KimiConfig, m: &str, b: &str, out: &mut Vec<OutTensor>) {
    let (d, e, f) = (cfg.hidden_size, cfg.num_experts, cfg.moe_intermediate_size);
    out.push(copy(
        format!("{b}ffn_gate_inp.weight"),
        format!("{m}gate.weight"),
        vec![e, d],
    ));
    out.push(copy(
        format!("{b}exp_probs_b.bias"),
        format!("{m}gate.e_score_correction_bias"),
        vec![e],
    ));
    // w1 = gate, w3 = up, w2 = down (llama.cpp's MOE_BLOCK_SPARSE naming).
    for (gguf, w, shape) in [
        ("ffn_gate_exps", "w1", [f, d]),
        ("ffn_up_exps", "w3", [f, d]),
        ("ffn_down_exps", "w2", [d, f]),
    ] {
        let names: Vec<String> = (0..e)
            .map(|x| format!("{m}experts.{x}.{w}.weight"))
            .collect();
        out.push(OutTensor {
            name: format!("{b}{gguf}.weight"),
            ne: vec![shape[1], shape[0], e],
            inputs: names
                .iter()
                .map(|n| one(n.clone(), shape.to_vec()))
                .collect(),
            source: Source::Experts(names),
        });
    }
    if cfg.num_shared_experts > 0 {
        let s = f * cfg.num_shared_experts;
        let sh = format!("{m}shared_experts.");
        out.push(copy(
            format!("{b}ffn_gate_shexp.weight"),
            format!("{sh}gate_proj.weight"),
            vec![s, d],
        ));
        out.push(copy(
            format!("{b}ffn_up_shexp.weight"),
            format!("{sh}up_proj.weight"),
            vec![s, d],
        ));
        out.push(copy(
            format!("{b}ffn_down_shexp.weight"),
            format!("{sh}down_proj.weight"),
            vec![d, s],
        ));
    }
}

/// Checks that the checkpoint holds exactly the tensors the layout reads, with the shapes
/// config.json implies. Names llama.cpp's converter drops on purpose are allowed extra.
pub fn validate(layout: &[OutTensor], ckpt: &Checkpoint) -> Result<(), MappingError> {
    let mut used = BTreeSet::new();
    for t in layout {
        for inp in &t.inputs {
            let Some(e) = ckpt.get(&inp.name) else {
                return Err(MappingError::Missing {
                    tensor: inp.name.clone(),
                    expected: inp.shapes[0].clone(),
                });
            };
            if !inp.shapes.iter().any(|s| s == &e.shape) {
                let expected = inp
                    .shapes
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(" or ");
                return Err(MappingError::Shape {
                    tensor: inp.name.clone(),
                    shard: ckpt.shard_name(e).to_string(),
                    found: e.shape.clone(),
                    expected,
                });
            }
            used.insert(inp.name.as_str());
        }
    }
    let cfg_tied_extra = |n: &str| n == "lm_head.weight";
    for n in ckpt.names() {
        let ignorable = n.ends_with(".rotary_emb.inv_freq")
            || (cfg_tied_extra(n) && !layout.iter().any(|t| t.name == "output.weight"));
        if !used.contains(n) && !ignorable {
            let e = ckpt.get(n).expect("name from the checkpoint");
            return Err(MappingError::Unexpected {
                tensor: n.to_string(),
                shard: ckpt.shard_name(e).to_string(),
            });
        }
    }
    Ok(())
}

impl OutTensor {
    /// Fills `out` with rows `[r0, r0 + out.len() / ne[0])` of this tensor, in f32.
    pub fn fill_rows(&self, ckpt: &Checkpoint, r0: usize, out: &mut [f32]) {
        let n = self.n_per_row();
        let rows = out.len() / n;
        let entry = |name: &str| -> &TensorEntry {
            ckpt.get(name)
                .expect("layout validated against the checkpoint")
        };
        match &self.source {
            Source::Copy(src) => ckpt.read_f32(entry(src), r0 * n, out),
            Source::NegExp(src) => {
                ckpt.read_f32(entry(src), r0 * n, out);
                for x in out.iter_mut() {
                    *x = -x.exp();
                }
            }
            Source::Experts(srcs) => {
                let per = self.n_rows() / srcs.len();
                let mut r = r0;
                let mut o = 0;
                while r < r0 + rows {
                    let (ex, within) = (r / per, r % per);
                    let take = (per - within).min(r0 + rows - r);
                    ckpt.read_f32(
                        entry(&srcs[ex]),
                        within * n,
                        &mut out[o * n..(o + take) * n],
                    );
                    r += take;
                    o += take;
                }
            }
            Source::KvbV(s) => {
                // Output row (h, j) is kv_b row h·(nope+v) + nope + j: whole source rows.
                for (k, row) in out.chunks_mut(n).enumerate() {
                    let (h, j) = ((r0 + k) / s.v, (r0 + k) % s.v);
                    ckpt.read_f32(
                        entry(&s.src),
                        (h * (s.nope + s.v) + s.nope + j) * s.rank,
                        row,
                    );
                }
            }
            Source::KvbK(s) => {
                // Output row (h, c) holds column c of head h's nope×rank key block.
                let e = entry(&s.src);
                let mut block = vec![0f32; s.nope * s.rank];
                let mut cur_head = usize::MAX;
                for (k, row) in out.chunks_mut(n).enumerate() {
                    let (h, c) = ((r0 + k) / s.rank, (r0 + k) % s.rank);
                    if h != cur_head {
                        ckpt.read_f32(e, h * (s.nope + s.v) * s.rank, &mut block);
                        cur_head = h;
                    }
                    for (i, x) in row.iter_mut().enumerate() {
                        *x = block[i * s.rank + c];
                    }
                }
            }
        }
    }

    /// Hands the source pages behind rows `[r0, r1)` back to the kernel once they are converted.
    pub fn release_rows(&self, ckpt: &Checkpoint, r0: usize, r1: usize) {
        let n = self.n_per_row();
        let entry = |name: &str| {
            ckpt.get(name)
                .expect("layout validated against the checkpoint")
        };
        match &self.source {
            Source::Copy(src) | Source::NegExp(src) => {
                ckpt.release(entry(src), r0 * n, (r1 - r0) * n)
            }
            Source::Experts(srcs) => {
                let per = self.n_rows() / srcs.len();
                for (ex, src) in srcs.iter().enumerate() {
                    let (a, b) = (r0.max(ex * per), r1.min((ex + 1) * per));
                    if a < b {
                        ckpt.release(entry(src), (a - ex * per) * n, (b - a) * n);
                    }
                }
            }
            // kv_b is small and read by both halves; it goes back once the tensor is done.
            Source::KvbK(s) | Source::KvbV(s) => {
                if r1 == self.n_rows() {
                    let e = entry(&s.src);
                    ckpt.release(e, 0, e.numel());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hf::KimiConfig;
    use std::path::Path;

    fn cfg() -> KimiConfig {
        let v = crate::hf::config_tests::sample_json();
        KimiConfig::from_json(&v.to_string(), Path::new("config.json")).unwrap()
    }

    #[test]
    fn names_and_shapes_follow_llama_cpp() {
        let l = layout(&cfg());
        let get = |n: &str| {
            l.iter()
                .find(|t| t.name == n)
                .unwrap_or_else(|| panic!("{n}"))
                .ne
                .clone()
        };
        assert_eq!(get("token_embd.weight"), vec![64, 512]);
        assert_eq!(get("blk.0.ssm_conv1d_q.weight"), vec![4, 1, 128, 1]);
        assert_eq!(get("blk.0.ssm_a"), vec![1, 4, 1, 1]);
        assert_eq!(get("blk.0.ssm_dt.bias"), vec![128]);
        assert_eq!(get("blk.0.ssm_f_b.weight"), vec![32, 128]);
        assert_eq!(get("blk.0.ffn_gate.weight"), vec![64, 160]);
        assert_eq!(get("blk.3.attn_q.weight"), vec![64, 4 * 24]);
        assert_eq!(get("blk.3.attn_kv_a_mqa.weight"), vec![64, 40]);
        assert_eq!(get("blk.3.attn_k_b.weight"), vec![16, 32, 4]);
        assert_eq!(get("blk.3.attn_v_b.weight"), vec![32, 16, 4]);
        assert_eq!(get("blk.3.attn_output.weight"), vec![64, 64]);
        assert_eq!(get("blk.1.ffn_gate_exps.weight"), vec![64, 32, 8]);
        assert_eq!(get("blk.1.ffn_down_exps.weight"), vec![32, 64, 8]);
        assert_eq!(get("blk.1.exp_probs_b.bias"), vec![8]);
        assert!(!l.iter().any(|t| t.name == "blk.0.ffn_gate_inp.weight"));
        assert!(!l.iter().any(|t| t.name.starts_with("blk.3.ssm")));
        // 4 layers: 3 KDA × 15 + 1 MLA × 6 attention tensors; 1 dense × 3 + 3 MoE × 8 FFN; 2 norms each.
        assert_eq!(l.len(), 3 + 3 * 15 + 6 + 3 + 3 * 8 + 4 * 2);
        assert_eq!(
            l.iter()
                .find(|t| t.name == "blk.2.ffn_up_exps.weight")
                .unwrap()
                .layer(),
            Some(2)
        );
    }
}
