//! The GGUF metadata of a Kimi Linear model: `general.*` and every `kimi-linear.*` key that
//! llama.cpp's converter writes (`conversion/kimi_linear.py` on top of
//! `TextModel.set_gguf_parameters`), with the same value types.

use crate::hf::KimiConfig;
use kiln::gguf::{Array, Value};

pub const ARCH: &str = "kimi-linear";
/// ggml's GGML_QNT_VERSION.
pub const QUANTIZATION_VERSION: u32 = 2;

/// Ordered key/value pairs, ready for the GGUF writer.
pub type Metadata = Vec<(String, Value)>;

fn k(key: &str) -> String {
    format!("{ARCH}.{key}")
}

fn u32v(x: usize) -> Value {
    Value::U32(u32::try_from(x).unwrap_or(u32::MAX))
}

/// `general.*` keys. `file_type` is llama_ftype.
pub fn general(name: &str, file_type: u32) -> Metadata {
    vec![
        ("general.architecture".into(), Value::from(ARCH)),
        ("general.type".into(), Value::from("model")),
        ("general.name".into(), Value::from(name)),
        ("general.file_type".into(), Value::U32(file_type)),
        (
            "general.quantization_version".into(),
            Value::U32(QUANTIZATION_VERSION),
        ),
    ]
}

/// The `kimi-linear.*` hyperparameters.
pub fn hparams(c: &KimiConfig) -> Metadata {
    let mut m: Metadata = Vec::new();
    let mut put = |key: &str, v: Value| m.push((k(key), v));
    put("block_count", u32v(c.num_hidden_layers));
    if let Some(ctx) = c.context_length {
        put(
            "context_length",
            Value::U32(u32::try_from(ctx).unwrap_or(u32::MAX)),
        );
    }
    put("embedding_length", u32v(c.hidden_size));
    put("feed_forward_length", u32v(c.intermediate_size));
    put("attention.head_count", u32v(c.num_attention_heads));
    // Layer-type selector: 0 = KDA (recurrent), 1 = MLA in its MQA form. gguf-py writes Python
    // ints as INT32 arrays.
    let kv: Vec<i32> = (0..c.num_hidden_layers)
        .map(|i| i32::from(c.is_mla(i)))
        .collect();
    put("attention.head_count_kv", Value::Array(Array::I32(kv)));
    if let Some(theta) = c.rope_theta {
        put("rope.freq_base", Value::F32(theta as f32));
    }
    put(
        "attention.layer_norm_rms_epsilon",
        Value::F32(c.rms_norm_eps as f32),
    );
    put("expert_count", u32v(c.num_experts));
    put("expert_used_count", u32v(c.num_experts_per_token));
    if let Some(g) = c.topk_group {
        put("expert_group_used_count", Value::U32(g));
    }
    put("expert_gating_func", Value::U32(c.router_activation as u32));
    // key_length is the MLA cache row (latent + rope dims); value_length keeps HF's head_dim.
    put(
        "attention.key_length",
        u32v(c.kv_lora_rank + c.qk_rope_head_dim),
    );
    if let Some(hd) = c.head_dim {
        put("attention.value_length", u32v(hd));
    }
    put("vocab_size", u32v(c.vocab_size));
    put("ssm.conv_kernel", u32v(c.conv_kernel));
    put("kda.head_dim", u32v(c.kda_head_dim));
    if let Some(q) = c.q_lora_rank {
        put("attention.q_lora_rank", u32v(q));
    }
    put("attention.kv_lora_rank", u32v(c.kv_lora_rank));
    put("rope.dimension_count", u32v(c.qk_rope_head_dim));
    put(
        "attention.key_length_mla",
        u32v(c.qk_nope_head_dim + c.qk_rope_head_dim),
    );
    put("attention.value_length_mla", u32v(c.v_head_dim));
    put("expert_feed_forward_length", u32v(c.moe_intermediate_size));
    put("expert_shared_count", u32v(c.num_shared_experts));
    put("leading_dense_block_count", u32v(c.first_k_dense_replace));
    put(
        "expert_weights_scale",
        Value::F32(c.routed_scaling_factor as f32),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn per_layer_selector_and_mla_sizes() {
        let v = crate::hf::config_tests::sample_json();
        let c = KimiConfig::from_json(&v.to_string(), Path::new("config.json")).unwrap();
        let m = hparams(&c);
        let get = |key: &str| {
            m.iter()
                .find(|(k, _)| k == &format!("kimi-linear.{key}"))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("attention.head_count_kv"),
            Some(Value::Array(Array::I32(vec![0, 0, 0, 1])))
        );
        assert_eq!(get("attention.key_length"), Some(Value::U32(40)));
        assert_eq!(get("attention.key_length_mla"), Some(Value::U32(24)));
        assert_eq!(get("attention.value_length"), Some(Value::U32(16)));
        assert_eq!(get("expert_gating_func"), Some(Value::U32(2)));
        assert_eq!(get("kda.head_dim"), Some(Value::U32(32)));
        assert!(get("attention.q_lora_rank").is_none());
    }
}
