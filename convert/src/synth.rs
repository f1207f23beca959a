//! Random models at true shapes, for memory and speed work where the real weights are out of
//! reach: the shapes come from a `models.toml` entry, the values from a cheap deterministic
//! generator with the statistics of a trained model's tensors (so every block has finite, sane
//! scales and the router spreads tokens over the experts).

use crate::hf::KimiConfig;
use crate::write::RowSource;
use half::f16;
use kiln::quant::GgmlType;
use rayon::prelude::*;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{path}: {reason}")]
    Registry { path: String, reason: String },
    #[error("{path}: no model {name:?} (known: {known})")]
    UnknownModel {
        path: String,
        name: String,
        known: String,
    },
}

/// Reads `[models.<name>]` of a models.toml and turns it into the config a checkpoint of that
/// model would have.
pub fn config_from_registry(path: &Path, name: &str) -> Result<KimiConfig, SynthError> {
    let p = path.display().to_string();
    let reg = |reason: String| SynthError::Registry {
        path: p.clone(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| reg(e.to_string()))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| reg(e.to_string().replace('\n', " ")))?;
    let models = doc
        .get("models")
        .and_then(|m| m.as_table())
        .ok_or_else(|| reg("no [models] table".into()))?;
    let Some(m) = models.get(name).and_then(|m| m.as_table()) else {
        let known = models.keys().cloned().collect::<Vec<_>>().join(", ");
        return Err(SynthError::UnknownModel {
            path: p,
            name: name.into(),
            known,
        });
    };
    let int = |k: &str| -> Result<i64, SynthError> {
        m.get(k)
            .and_then(|v| v.as_integer())
            .ok_or_else(|| reg(format!("models.{name}.{k}: missing or not an integer")))
    };
    let float = |k: &str| -> Result<f64, SynthError> {
        m.get(k)
            .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
            .ok_or_else(|| reg(format!("models.{name}.{k}: missing or not a number")))
    };
    let n_layers = int("num_hidden_layers")?;
    let full: Vec<i64> = m
        .get("full_attn_layers")
        .and_then(|v| v.as_array())
        .ok_or_else(|| reg(format!("models.{name}.full_attn_layers: missing")))?
        .iter()
        .map(|v| {
            v.as_integer()
                .ok_or_else(|| reg(format!("models.{name}.full_attn_layers: not integers")))
        })
        .collect::<Result<_, _>>()?;
    let kda: Vec<i64> = (1..=n_layers).filter(|l| !full.contains(l)).collect();
    let heads = int("num_attention_heads")?;
    let json = serde_json::json!({
        "architectures": ["KimiLinearForCausalLM"],
        "vocab_size": int("vocab_size")?,
        "hidden_size": int("hidden_size")?,
        "num_hidden_layers": n_layers,
        "intermediate_size": int("intermediate_size")?,
        "moe_intermediate_size": int("moe_intermediate_size")?,
        "num_experts": int("num_experts")?,
        "num_experts_per_token": int("num_experts_per_token")?,
        "num_shared_experts": int("num_shared_experts")?,
        "first_k_dense_replace": int("first_k_dense_replace")?,
        "routed_scaling_factor": float("routed_scaling_factor")?,
        "moe_router_activation_func": "sigmoid",
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "q_lora_rank": null,
        "kv_lora_rank": int("kv_lora_rank")?,
        "qk_nope_head_dim": int("qk_nope_head_dim")?,
        "qk_rope_head_dim": int("qk_rope_head_dim")?,
        "v_head_dim": int("v_head_dim")?,
        "head_dim": int("hidden_size")? / heads,
        "rope_theta": 10000.0,
        "model_max_length": int("context_length")?,
        "rms_norm_eps": float("rms_norm_eps")?,
        "topk_group": 1,
        "tie_word_embeddings": false,
        "linear_attn_config": {
            "kda_layers": kda,
            "full_attn_layers": full,
            "head_dim": int("kda_head_dim")?,
            "num_heads": int("kda_num_heads")?,
            "short_conv_kernel_size": int("short_conv_kernel_size")?,
        },
    });
    KimiConfig::from_json(&json.to_string(), path).map_err(|e| reg(e.to_string()))
}

/// SplitMix64: one multiply-xorshift round per value, plenty for weights nobody trains.
#[inline]
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Uniform in [-1, 1).
#[inline]
fn unit(seed: u64, i: u64) -> f32 {
    let bits = mix(seed.wrapping_add(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)));
    ((bits >> 40) as f32 / (1u64 << 23) as f32) - 1.0
}

/// The values of one kind of tensor, as (offset, half-width) of a uniform distribution.
fn distribution(name: &str, n_per_row: usize) -> (f32, f32) {
    if name.ends_with("_norm.weight") {
        (1.0, 0.2)
    } else if name.ends_with("ssm_a") {
        // -exp(A_log) with A_log = ln U(1, 16).
        (-8.5, 7.5)
    } else if name.ends_with("ssm_dt.bias") {
        (-3.0, 1.5)
    } else if name.ends_with("exp_probs_b.bias") {
        (0.0, 0.5)
    } else if name.contains("ssm_conv1d") {
        (0.0, 1.3)
    } else if name == "token_embd.weight" {
        (0.0, 1.7)
    } else {
        // std 1.5/sqrt(fan_in): U(-a, a) has std a/sqrt(3).
        (0.0, 1.5 * 3f32.sqrt() / (n_per_row as f32).sqrt())
    }
}

/// Random rows for the tensors being written; the same seed gives the same file.
pub struct SynthRows {
    pub names: Vec<String>,
    pub n_per_row: Vec<usize>,
    pub seed: u64,
}

impl RowSource for SynthRows {
    fn fill(&self, index: usize, r0: usize, out: &mut [f32]) -> Result<(), String> {
        let n = self.n_per_row[index];
        let (off, half) = distribution(&self.names[index], n);
        let tseed = mix(self.seed ^ mix(index as u64 + 1));
        out.par_chunks_mut(n).enumerate().for_each(|(k, row)| {
            let rseed = mix(tseed ^ ((r0 + k) as u64));
            for (i, x) in row.iter_mut().enumerate() {
                *x = off + half * unit(rseed, i as u64);
            }
        });
        Ok(())
    }

    fn raw(&self, index: usize, ty: GgmlType, r0: usize, rows: usize) -> Option<Vec<u8>> {
        let n = self.n_per_row[index];
        let (_, half) = distribution(&self.names[index], n);
        let row_bytes = ty.row_bytes(n)?;
        let layout = BlockLayout::of(ty)?;
        let tseed = mix(self.seed ^ mix(index as u64 + 1));
        let mut out = vec![0u8; rows * row_bytes];
        out.par_chunks_mut(row_bytes)
            .enumerate()
            .for_each(|(k, row)| {
                random_row(
                    row,
                    ty.type_size(),
                    &layout,
                    half / 3f32.sqrt(),
                    mix(tseed ^ ((r0 + k) as u64)),
                );
            });
        Some(out)
    }
}

/// Where a block keeps its fp16 scales, and how big a weight is per unit of `d` on average, so
/// random quant bits under a chosen `d` give weights of the wanted spread.
struct BlockLayout {
    d_at: usize,
    /// Offset of the fp16 min (`dmin` or `m`) and its size in units of `d`.
    min: Option<(usize, f32)>,
    /// Typical |weight| / d for uniformly random quant bits and scales.
    unit: f32,
}

impl BlockLayout {
    fn of(ty: GgmlType) -> Option<BlockLayout> {
        use GgmlType::*;
        Some(match ty {
            Q8_0 => BlockLayout {
                d_at: 0,
                min: None,
                unit: 73.0,
            },
            Q4_0 => BlockLayout {
                d_at: 0,
                min: None,
                unit: 4.6,
            },
            Q5_0 => BlockLayout {
                d_at: 0,
                min: None,
                unit: 9.2,
            },
            Q5_1 => BlockLayout {
                d_at: 0,
                min: Some((2, -15.5)),
                unit: 9.2,
            },
            Q2_K => BlockLayout {
                d_at: 80,
                min: Some((82, 1.5)),
                unit: 14.0,
            },
            Q3_K => BlockLayout {
                d_at: 108,
                min: None,
                unit: 40.0,
            },
            Q4_K => BlockLayout {
                d_at: 0,
                min: Some((2, 7.5)),
                unit: 264.0,
            },
            Q5_K => BlockLayout {
                d_at: 0,
                min: Some((2, 15.5)),
                unit: 540.0,
            },
            Q6_K => BlockLayout {
                d_at: 208,
                min: None,
                unit: 1380.0,
            },
            _ => return None,
        })
    }
}

/// Random quant bits with finite fp16 scales chosen for weights of standard deviation `std`.
fn random_row(row: &mut [u8], block: usize, l: &BlockLayout, std: f32, seed: u64) {
    for (i, c) in row.chunks_mut(8).enumerate() {
        let b = mix(seed.wrapping_add(i as u64)).to_le_bytes();
        c.copy_from_slice(&b[..c.len()]);
    }
    for (bi, blk) in row.chunks_mut(block).enumerate() {
        // Scales vary ±25% from block to block, like a trained tensor's.
        let jitter = 1.0 + 0.25 * unit(seed ^ 0x5eed, bi as u64);
        let d = std * jitter / l.unit;
        blk[l.d_at..l.d_at + 2].copy_from_slice(&f16::from_f32(d).to_bits().to_le_bytes());
        if let Some((at, k)) = l.min {
            blk[at..at + 2].copy_from_slice(&f16::from_f32(d * k).to_bits().to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_48b_gives_the_real_layer_pattern() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models.toml");
        let c = config_from_registry(&p, "kimi-linear-48b-a3b").unwrap();
        let mla: Vec<usize> = c.mla_layers.iter().copied().collect();
        assert_eq!(mla, vec![3, 7, 11, 15, 19, 23, 26]);
        assert_eq!(c.kda_width(), 4096);
        assert_eq!(c.num_experts, 256);
        let e = config_from_registry(&p, "no-such-model")
            .unwrap_err()
            .to_string();
        assert!(e.contains("kimi-linear-48b-a3b"), "{e}");
    }

    #[test]
    fn rows_are_deterministic_and_in_range() {
        let s = SynthRows {
            names: vec!["blk.0.ssm_a".into()],
            n_per_row: vec![1],
            seed: 7,
        };
        let mut a = vec![0f32; 64];
        let mut b = vec![0f32; 64];
        s.fill(0, 0, &mut a).unwrap();
        s.fill(0, 0, &mut b).unwrap();
        assert_eq!(a, b);
        assert!(a.iter().all(|&x| (-16.0..=-1.0).contains(&x)), "{a:?}");
        let spread =
            a.iter().cloned().fold(f32::MIN, f32::max) - a.iter().cloned().fold(f32::MAX, f32::min);
        assert!(spread > 5.0);
    }
}
