//! `config.json` of a Kimi Linear checkpoint (the original moonshotai field set), read into a
//! typed config and validated. Every dimension the converter uses comes from here.

use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not valid JSON for a Kimi Linear config: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path}: unknown architecture {found} (expected KimiLinearForCausalLM / model_type kimi_linear)"
    )]
    UnknownArchitecture { path: PathBuf, found: String },
    #[error("{path}: {field}: {reason}")]
    Invalid {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
}

#[derive(Deserialize)]
struct RawLinearAttn {
    kda_layers: Vec<usize>,
    full_attn_layers: Vec<usize>,
    head_dim: usize,
    num_heads: usize,
    short_conv_kernel_size: usize,
}

#[derive(Deserialize)]
struct RawConfig {
    vocab_size: usize,
    hidden_size: usize,
    num_hidden_layers: usize,
    intermediate_size: usize,
    moe_intermediate_size: usize,
    num_experts: usize,
    num_experts_per_token: usize,
    num_shared_experts: usize,
    first_k_dense_replace: usize,
    #[serde(default)]
    moe_layer_freq: Option<usize>,
    routed_scaling_factor: f64,
    moe_router_activation_func: String,
    num_attention_heads: usize,
    #[serde(default)]
    num_key_value_heads: Option<usize>,
    #[serde(default)]
    q_lora_rank: Option<usize>,
    kv_lora_rank: usize,
    qk_nope_head_dim: usize,
    qk_rope_head_dim: usize,
    v_head_dim: usize,
    #[serde(default)]
    head_dim: Option<usize>,
    #[serde(default)]
    rope_theta: Option<f64>,
    #[serde(default)]
    max_position_embeddings: Option<u64>,
    #[serde(default)]
    model_max_length: Option<u64>,
    rms_norm_eps: f64,
    #[serde(default)]
    tie_word_embeddings: bool,
    #[serde(default)]
    bos_token_id: Option<u32>,
    #[serde(default)]
    eos_token_id: Option<u32>,
    #[serde(default)]
    pad_token_id: Option<u32>,
    #[serde(default)]
    topk_group: Option<u32>,
    linear_attn_config: RawLinearAttn,
}

/// How the MoE router turns logits into probabilities (llama.cpp's `expert_gating_func`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RouterActivation {
    Softmax = 1,
    Sigmoid = 2,
}

#[derive(Clone, Debug)]
pub struct KimiConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub intermediate_size: usize,
    pub moe_intermediate_size: usize,
    pub num_experts: usize,
    pub num_experts_per_token: usize,
    pub num_shared_experts: usize,
    pub first_k_dense_replace: usize,
    pub routed_scaling_factor: f64,
    pub router_activation: RouterActivation,
    pub num_attention_heads: usize,
    /// MLA heads of `kv_b_proj` (num_key_value_heads, which the original config sets equal to
    /// the query heads).
    pub num_key_value_heads: usize,
    pub q_lora_rank: Option<usize>,
    pub kv_lora_rank: usize,
    pub qk_nope_head_dim: usize,
    pub qk_rope_head_dim: usize,
    pub v_head_dim: usize,
    pub head_dim: Option<usize>,
    pub rope_theta: Option<f64>,
    pub context_length: Option<u64>,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_id: Option<u32>,
    pub pad_token_id: Option<u32>,
    pub topk_group: Option<u32>,
    pub kda_num_heads: usize,
    pub kda_head_dim: usize,
    pub conv_kernel: usize,
    /// 0-based indices of the MLA (full attention) layers; every other layer is KDA.
    pub mla_layers: BTreeSet<usize>,
}

impl KimiConfig {
    pub fn from_file(path: &Path) -> Result<KimiConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_json(&text, path)
    }

    /// Parses and validates; `path` only labels the error messages.
    pub fn from_json(text: &str, path: &Path) -> Result<KimiConfig, ConfigError> {
        // Architecture first: a config of another model fails on the architecture, not on the
        // first Kimi field it happens to lack.
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|source| ConfigError::Parse {
                path: path.into(),
                source,
            })?;
        let archs: Vec<String> = value
            .get("architectures")
            .and_then(|a| a.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let model_type = value
            .get("model_type")
            .and_then(|m| m.as_str())
            .map(String::from);
        let known = archs
            .iter()
            .any(|a| a == "KimiLinearForCausalLM" || a == "KimiLinearModel")
            || (archs.is_empty() && model_type.as_deref() == Some("kimi_linear"));
        if !known {
            let found = if archs.is_empty() {
                model_type.unwrap_or_else(|| "(none)".into())
            } else {
                archs.join(",")
            };
            return Err(ConfigError::UnknownArchitecture {
                path: path.into(),
                found,
            });
        }
        let raw: RawConfig =
            serde_json::from_value(value).map_err(|source| ConfigError::Parse {
                path: path.into(),
                source,
            })?;
        Self::validate(raw, path)
    }

    fn validate(raw: RawConfig, path: &Path) -> Result<KimiConfig, ConfigError> {
        let bad = |field: &'static str, reason: String| ConfigError::Invalid {
            path: path.into(),
            field,
            reason,
        };
        let n = raw.num_hidden_layers;
        let la = &raw.linear_attn_config;
        for (field, v) in [
            ("vocab_size", raw.vocab_size),
            ("hidden_size", raw.hidden_size),
            ("num_hidden_layers", n),
            ("num_attention_heads", raw.num_attention_heads),
            ("kv_lora_rank", raw.kv_lora_rank),
            ("qk_nope_head_dim", raw.qk_nope_head_dim),
            ("v_head_dim", raw.v_head_dim),
            ("linear_attn_config.head_dim", la.head_dim),
            ("linear_attn_config.num_heads", la.num_heads),
            (
                "linear_attn_config.short_conv_kernel_size",
                la.short_conv_kernel_size,
            ),
        ] {
            if v == 0 {
                return Err(bad(field, "must be > 0".into()));
            }
        }
        let kda: BTreeSet<usize> = la.kda_layers.iter().copied().collect();
        let full: BTreeSet<usize> = la.full_attn_layers.iter().copied().collect();
        if let Some(l) = kda.iter().chain(&full).find(|&&l| l == 0 || l > n) {
            return Err(bad(
                "linear_attn_config",
                format!("layer {l} is outside 1..={n} (the lists are 1-based)"),
            ));
        }
        if let Some(l) = kda.intersection(&full).next() {
            return Err(bad(
                "linear_attn_config",
                format!("layer {l} is in both kda_layers and full_attn_layers"),
            ));
        }
        if kda.len() + full.len() != n {
            let missing: Vec<usize> = (1..=n)
                .filter(|l| !kda.contains(l) && !full.contains(l))
                .collect();
            return Err(bad(
                "linear_attn_config",
                format!("layers {missing:?} are in neither kda_layers nor full_attn_layers"),
            ));
        }
        // GGUF has one attention.head_count for both layer kinds.
        if la.num_heads != raw.num_attention_heads {
            return Err(bad(
                "linear_attn_config.num_heads",
                format!(
                    "{} differs from num_attention_heads {}; llama.cpp's kimi-linear needs them equal",
                    la.num_heads, raw.num_attention_heads
                ),
            ));
        }
        if raw.moe_layer_freq.unwrap_or(1) != 1 {
            return Err(bad(
                "moe_layer_freq",
                "only 1 is supported (every layer after the dense ones is MoE)".into(),
            ));
        }
        if raw.first_k_dense_replace > n {
            return Err(bad(
                "first_k_dense_replace",
                format!(
                    "{} exceeds num_hidden_layers {n}",
                    raw.first_k_dense_replace
                ),
            ));
        }
        if raw.first_k_dense_replace < n && (raw.num_experts == 0 || raw.moe_intermediate_size == 0)
        {
            return Err(bad(
                "num_experts",
                "MoE layers need num_experts and moe_intermediate_size > 0".into(),
            ));
        }
        if raw.num_experts_per_token > raw.num_experts {
            return Err(bad(
                "num_experts_per_token",
                format!(
                    "{} exceeds num_experts {}",
                    raw.num_experts_per_token, raw.num_experts
                ),
            ));
        }
        let router_activation = match raw.moe_router_activation_func.as_str() {
            "sigmoid" => RouterActivation::Sigmoid,
            "softmax" => RouterActivation::Softmax,
            other => {
                return Err(bad(
                    "moe_router_activation_func",
                    format!("{other:?} is not sigmoid or softmax"),
                ));
            }
        };
        Ok(KimiConfig {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            num_hidden_layers: n,
            intermediate_size: raw.intermediate_size,
            moe_intermediate_size: raw.moe_intermediate_size,
            num_experts: raw.num_experts,
            num_experts_per_token: raw.num_experts_per_token,
            num_shared_experts: raw.num_shared_experts,
            first_k_dense_replace: raw.first_k_dense_replace,
            routed_scaling_factor: raw.routed_scaling_factor,
            router_activation,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads.unwrap_or(raw.num_attention_heads),
            q_lora_rank: raw.q_lora_rank,
            kv_lora_rank: raw.kv_lora_rank,
            qk_nope_head_dim: raw.qk_nope_head_dim,
            qk_rope_head_dim: raw.qk_rope_head_dim,
            v_head_dim: raw.v_head_dim,
            head_dim: raw.head_dim,
            rope_theta: raw.rope_theta,
            // llama.cpp's converter looks for max_position_embeddings before model_max_length.
            context_length: raw.max_position_embeddings.or(raw.model_max_length),
            rms_norm_eps: raw.rms_norm_eps,
            tie_word_embeddings: raw.tie_word_embeddings,
            bos_token_id: raw.bos_token_id,
            eos_token_id: raw.eos_token_id,
            pad_token_id: raw.pad_token_id,
            topk_group: raw.topk_group,
            kda_num_heads: la.num_heads,
            kda_head_dim: la.head_dim,
            conv_kernel: la.short_conv_kernel_size,
            mla_layers: full.iter().map(|l| l - 1).collect(),
        })
    }

    pub fn is_mla(&self, layer: usize) -> bool {
        self.mla_layers.contains(&layer)
    }

    pub fn is_dense(&self, layer: usize) -> bool {
        layer < self.first_k_dense_replace
    }

    /// Width of the KDA q/k/v projections (heads × head_dim).
    pub fn kda_width(&self) -> usize {
        self.kda_num_heads * self.kda_head_dim
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample_json() -> serde_json::Value {
        serde_json::json!({
            "architectures": ["KimiLinearForCausalLM"], "model_type": "kimi_linear",
            "vocab_size": 512, "hidden_size": 64, "num_hidden_layers": 4, "intermediate_size": 160,
            "moe_intermediate_size": 32, "num_experts": 8, "num_experts_per_token": 2,
            "num_shared_experts": 1, "first_k_dense_replace": 1, "moe_layer_freq": 1,
            "routed_scaling_factor": 2.446, "moe_router_activation_func": "sigmoid",
            "num_attention_heads": 4, "num_key_value_heads": 4, "q_lora_rank": null,
            "kv_lora_rank": 32, "qk_nope_head_dim": 16, "qk_rope_head_dim": 8, "v_head_dim": 16,
            "head_dim": 16, "rope_theta": 10000.0, "model_max_length": 1048576, "rms_norm_eps": 1e-5,
            "tie_word_embeddings": false, "bos_token_id": 256, "eos_token_id": 258, "pad_token_id": 511,
            "linear_attn_config": {"kda_layers": [1, 2, 3], "full_attn_layers": [4], "head_dim": 32,
                                   "num_heads": 4, "short_conv_kernel_size": 4}
        })
    }

    fn parse(v: &serde_json::Value) -> Result<KimiConfig, ConfigError> {
        KimiConfig::from_json(&v.to_string(), Path::new("config.json"))
    }

    #[test]
    fn reads_layer_pattern_and_sizes() {
        let c = parse(&sample_json()).unwrap();
        assert!(c.is_mla(3) && !c.is_mla(0) && !c.is_mla(2));
        assert!(c.is_dense(0) && !c.is_dense(1));
        assert_eq!(c.kda_width(), 128);
        assert_eq!(c.context_length, Some(1048576));
        assert_eq!(c.router_activation, RouterActivation::Sigmoid);
    }

    #[test]
    fn rejects_unknown_architecture() {
        let mut v = sample_json();
        v["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
        let e = parse(&v).unwrap_err().to_string();
        assert!(e.contains("unknown architecture LlamaForCausalLM"), "{e}");
    }

    #[test]
    fn rejects_layer_lists_that_do_not_cover_the_model() {
        let mut v = sample_json();
        v["linear_attn_config"]["kda_layers"] = serde_json::json!([1, 2]);
        let e = parse(&v).unwrap_err().to_string();
        assert!(e.contains("[3]") && e.contains("neither"), "{e}");
        let mut v = sample_json();
        v["linear_attn_config"]["full_attn_layers"] = serde_json::json!([3, 4]);
        assert!(parse(&v).unwrap_err().to_string().contains("both"));
        let mut v = sample_json();
        v["linear_attn_config"]["full_attn_layers"] = serde_json::json!([5]);
        assert!(parse(&v).unwrap_err().to_string().contains("1-based"));
    }

    #[test]
    fn missing_field_is_named() {
        let mut v = sample_json();
        v.as_object_mut().unwrap().remove("kv_lora_rank");
        let e = parse(&v).unwrap_err().to_string();
        assert!(e.contains("kv_lora_rank"), "{e}");
    }
}
