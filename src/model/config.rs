//! The model's hyper-parameters, read from the `kimi-linear.*` GGUF metadata (the keys llama.cpp
//! writes; spec gguf-kimi-linear.md §2).

use crate::gguf::Gguf;

use super::ModelError;

pub const ARCH: &str = "kimi-linear";

/// eps of the q/k L2 norm inside KDA. transformers and fla use 1e-6 (llama.cpp reuses the RMS
/// eps, 1e-5); the file does not say, and we follow the reference implementation.
pub const KDA_L2_EPS: f32 = 1e-6;
/// eps of the MLA latent RMSNorm: transformers builds `kv_a_layernorm` without passing
/// rms_norm_eps, so it keeps its default 1e-6.
pub const MLA_NORM_EPS: f32 = 1e-6;

/// What mixes tokens in a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// Kimi Delta Attention (recurrent).
    Kda,
    /// Multi-head latent attention (full attention over a latent cache).
    Mla,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub n_layer: usize,
    pub hidden: usize,
    pub vocab: usize,
    /// Heads of both KDA and MLA (the file has one `attention.head_count`).
    pub n_head: usize,
    pub layers: Vec<LayerKind>,
    pub rms_eps: f32,

    /// KDA head dim (K = V).
    pub kda_head_dim: usize,
    pub conv_kernel: usize,

    pub kv_lora: usize,
    pub qk_nope: usize,
    pub qk_rope: usize,
    pub v_head_dim: usize,

    /// Layers `< n_dense` use the dense SwiGLU, the others MoE.
    pub n_dense: usize,
    pub dense_ff: usize,
    pub n_expert: usize,
    pub n_expert_used: usize,
    pub expert_ff: usize,
    pub n_shared_expert: usize,
    pub expert_scale: f32,
}

/// `expert_gating_func` value of a sigmoid router.
const GATING_SIGMOID: u64 = 2;

impl Config {
    pub fn from_gguf(f: &Gguf) -> Result<Config, ModelError> {
        let arch = f.architecture().unwrap_or("");
        if arch != ARCH {
            return Err(ModelError::Architecture {
                path: f.path().to_string(),
                found: arch.to_string(),
            });
        }
        let key = |k: &str| format!("{ARCH}.{k}");
        let missing = |k: &str| ModelError::MissingKey {
            path: f.path().to_string(),
            key: key(k),
        };
        let u = |k: &str| -> Result<usize, ModelError> {
            f.get_u64(&key(k))
                .map(|v| v as usize)
                .ok_or_else(|| missing(k))
        };
        let u_or = |k: &str, default: usize| f.get_u64(&key(k)).map_or(default, |v| v as usize);
        // Scalar, or one value per layer (llama.cpp reads some keys with get_key_or_arr).
        let u_any = |k: &str| -> Result<usize, ModelError> {
            match f.get_u64(&key(k)) {
                Some(v) => Ok(v as usize),
                None => f
                    .get_arr(&key(k))
                    .and_then(|a| a.to_u64s())
                    .and_then(|v| v.into_iter().max())
                    .map(|v| v as usize)
                    .ok_or_else(|| missing(k)),
            }
        };

        let n_layer = u("block_count")?;
        let kinds = f
            .get_arr(&key("attention.head_count_kv"))
            .and_then(|a| a.to_u64s())
            .ok_or_else(|| missing("attention.head_count_kv"))?;
        if kinds.len() != n_layer {
            return Err(ModelError::BadKey {
                path: f.path().to_string(),
                key: key("attention.head_count_kv"),
                msg: format!("{} values for {n_layer} layers", kinds.len()),
            });
        }
        let layers = kinds
            .iter()
            .map(|&k| {
                if k == 0 {
                    LayerKind::Kda
                } else {
                    LayerKind::Mla
                }
            })
            .collect();

        let gating = f
            .get_u64(&key("expert_gating_func"))
            .unwrap_or(GATING_SIGMOID);
        if gating != GATING_SIGMOID {
            return Err(ModelError::BadKey {
                path: f.path().to_string(),
                key: key("expert_gating_func"),
                msg: format!("{gating}; only the sigmoid router (2) is implemented"),
            });
        }

        let qk_rope = u("rope.dimension_count")?;
        let key_mla = u("attention.key_length_mla")?;
        let vocab = match f.get_u64(&key("vocab_size")) {
            Some(v) => v as usize,
            None => f
                .tensor("token_embd.weight")
                .map(|t| t.ne()[1] as usize)
                .ok_or_else(|| missing("vocab_size"))?,
        };
        Ok(Config {
            n_layer,
            hidden: u("embedding_length")?,
            vocab,
            n_head: u("attention.head_count")?,
            layers,
            rms_eps: f
                .get_f32(&key("attention.layer_norm_rms_epsilon"))
                .ok_or_else(|| missing("attention.layer_norm_rms_epsilon"))?,
            kda_head_dim: u("kda.head_dim")?,
            conv_kernel: u("ssm.conv_kernel")?,
            kv_lora: u("attention.kv_lora_rank")?,
            qk_nope: key_mla
                .checked_sub(qk_rope)
                .ok_or_else(|| ModelError::BadKey {
                    path: f.path().to_string(),
                    key: key("attention.key_length_mla"),
                    msg: format!("{key_mla} is less than the rope dims {qk_rope}"),
                })?,
            qk_rope,
            v_head_dim: u("attention.value_length_mla")?,
            n_dense: u_or("leading_dense_block_count", 0),
            dense_ff: u_any("feed_forward_length")?,
            n_expert: u("expert_count")?,
            n_expert_used: u("expert_used_count")?,
            expert_ff: u_any("expert_feed_forward_length")?,
            n_shared_expert: u_or("expert_shared_count", 0),
            expert_scale: f.get_f32(&key("expert_weights_scale")).unwrap_or(1.0),
        })
    }

    pub fn kda_width(&self) -> usize {
        self.n_head * self.kda_head_dim
    }

    pub fn mla_cache_width(&self) -> usize {
        self.kv_lora + self.qk_rope
    }

    pub fn is_moe(&self, layer: usize) -> bool {
        layer >= self.n_dense
    }
}
