//! Every weight of the model, found by its llama.cpp GGUF name, shape-checked against the
//! config and handed to the backend as the file's raw bytes.

use crate::backend::{Backend, FfnWeights, MlaWeights, MoeWeights, TensorBytes};
use crate::gguf::Gguf;

use super::ModelError;
use super::config::{Config, LayerKind};

pub struct KdaWeights<W> {
    pub q: W,
    pub k: W,
    pub v: W,
    /// Depthwise conv taps of the q, k and v streams, ne `[kernel, 1, width, 1]`.
    pub conv: [W; 3],
    pub f_a: W,
    pub f_b: W,
    pub beta: W,
    /// −exp(A_log) per head.
    pub a: W,
    pub dt_bias: W,
    pub g_a: W,
    pub g_b: W,
    pub norm: W,
    pub out: W,
}

pub struct MlaLayerWeights<W> {
    pub q: W,
    pub kv_a: W,
    pub attn: MlaWeights<W>,
    pub out: W,
}

pub enum Mixer<W> {
    Kda(KdaWeights<W>),
    Mla(MlaLayerWeights<W>),
}

pub enum FeedForward<W> {
    Dense(FfnWeights<W>),
    Moe(MoeWeights<W>),
}

pub struct LayerWeights<W> {
    pub attn_norm: W,
    pub mixer: Mixer<W>,
    pub ffn_norm: W,
    pub ffn: FeedForward<W>,
}

pub struct Weights<W> {
    pub token_embd: W,
    pub output_norm: W,
    pub output: W,
    pub layers: Vec<LayerWeights<W>>,
}

/// Looks tensors up in the file, checks their shapes, and uploads them.
struct Loader<'w, 'b, B: Backend> {
    file: &'w Gguf,
    backend: &'b B,
}

impl<'w, B: Backend> Loader<'w, '_, B> {
    /// The tensor `name`, whose ne (padded with 1s) must be `ne`.
    fn get(&self, name: &str, ne: &[usize]) -> Result<B::Weight<'w>, ModelError> {
        let path = self.file.path().to_string();
        let info = self
            .file
            .tensor(name)
            .ok_or_else(|| ModelError::MissingTensor {
                path: path.clone(),
                name: name.to_string(),
            })?;
        let mut want = [1usize; 4];
        want[..ne.len()].copy_from_slice(ne);
        let got = info.ne().map(|d| d as usize);
        if got != want {
            return Err(ModelError::TensorShape {
                path,
                name: name.to_string(),
                expected: want,
                found: got,
            });
        }
        let t = TensorBytes {
            name: info.name(),
            ty: info.ty(),
            ne: got,
            bytes: self.file.tensor_bytes(info),
        };
        Ok(self.backend.upload(t)?)
    }
}

impl<W> Weights<W> {
    pub fn load<'w, B: Backend<Weight<'w> = W>>(
        file: &'w Gguf,
        cfg: &Config,
        backend: &B,
    ) -> Result<Self, ModelError> {
        let l = Loader { file, backend };
        let d = cfg.hidden;
        let layers = (0..cfg.n_layer)
            .map(|i| {
                let b = |s: &str| format!("blk.{i}.{s}");
                let mixer = match cfg.layers[i] {
                    LayerKind::Kda => Mixer::Kda(kda(&l, cfg, i)?),
                    LayerKind::Mla => Mixer::Mla(mla(&l, cfg, i)?),
                };
                let ffn = if cfg.is_moe(i) {
                    FeedForward::Moe(moe(&l, cfg, i)?)
                } else {
                    FeedForward::Dense(dense(&l, cfg, i)?)
                };
                Ok(LayerWeights {
                    attn_norm: l.get(&b("attn_norm.weight"), &[d])?,
                    mixer,
                    ffn_norm: l.get(&b("ffn_norm.weight"), &[d])?,
                    ffn,
                })
            })
            .collect::<Result<_, ModelError>>()?;
        Ok(Weights {
            token_embd: l.get("token_embd.weight", &[d, cfg.vocab])?,
            output_norm: l.get("output_norm.weight", &[d])?,
            output: l.get("output.weight", &[d, cfg.vocab])?,
            layers,
        })
    }
}

fn kda<'w, B: Backend>(
    l: &Loader<'w, '_, B>,
    cfg: &Config,
    i: usize,
) -> Result<KdaWeights<B::Weight<'w>>, ModelError> {
    let (d, c, h, k) = (cfg.hidden, cfg.kda_width(), cfg.n_head, cfg.kda_head_dim);
    let b = |s: &str| format!("blk.{i}.{s}");
    let conv = |s: &str| {
        l.get(
            &b(&format!("ssm_conv1d_{s}.weight")),
            &[cfg.conv_kernel, 1, c],
        )
    };
    Ok(KdaWeights {
        q: l.get(&b("attn_q.weight"), &[d, c])?,
        k: l.get(&b("attn_k.weight"), &[d, c])?,
        v: l.get(&b("attn_v.weight"), &[d, c])?,
        conv: [conv("q")?, conv("k")?, conv("v")?],
        f_a: l.get(&b("ssm_f_a.weight"), &[d, k])?,
        f_b: l.get(&b("ssm_f_b.weight"), &[k, c])?,
        beta: l.get(&b("ssm_beta.weight"), &[d, h])?,
        a: l.get(&b("ssm_a"), &[1, h])?,
        dt_bias: l.get(&b("ssm_dt.bias"), &[c])?,
        g_a: l.get(&b("ssm_g_a.weight"), &[d, k])?,
        g_b: l.get(&b("ssm_g_b.weight"), &[k, c])?,
        norm: l.get(&b("ssm_norm.weight"), &[k])?,
        out: l.get(&b("attn_output.weight"), &[c, d])?,
    })
}

fn mla<'w, B: Backend>(
    l: &Loader<'w, '_, B>,
    cfg: &Config,
    i: usize,
) -> Result<MlaLayerWeights<B::Weight<'w>>, ModelError> {
    let (d, h) = (cfg.hidden, cfg.n_head);
    let b = |s: &str| format!("blk.{i}.{s}");
    Ok(MlaLayerWeights {
        q: l.get(&b("attn_q.weight"), &[d, h * (cfg.qk_nope + cfg.qk_rope)])?,
        kv_a: l.get(&b("attn_kv_a_mqa.weight"), &[d, cfg.mla_cache_width()])?,
        attn: MlaWeights {
            kv_norm: l.get(&b("attn_kv_a_norm.weight"), &[cfg.kv_lora])?,
            k_b: l.get(&b("attn_k_b.weight"), &[cfg.qk_nope, cfg.kv_lora, h])?,
            v_b: l.get(&b("attn_v_b.weight"), &[cfg.kv_lora, cfg.v_head_dim, h])?,
        },
        out: l.get(&b("attn_output.weight"), &[h * cfg.v_head_dim, d])?,
    })
}

fn dense<'w, B: Backend>(
    l: &Loader<'w, '_, B>,
    cfg: &Config,
    i: usize,
) -> Result<FfnWeights<B::Weight<'w>>, ModelError> {
    let (d, f) = (cfg.hidden, cfg.dense_ff);
    let b = |s: &str| format!("blk.{i}.{s}");
    Ok(FfnWeights {
        gate: l.get(&b("ffn_gate.weight"), &[d, f])?,
        up: l.get(&b("ffn_up.weight"), &[d, f])?,
        down: l.get(&b("ffn_down.weight"), &[f, d])?,
    })
}

fn moe<'w, B: Backend>(
    l: &Loader<'w, '_, B>,
    cfg: &Config,
    i: usize,
) -> Result<MoeWeights<B::Weight<'w>>, ModelError> {
    let (d, e, f) = (cfg.hidden, cfg.n_expert, cfg.expert_ff);
    let b = |s: &str| format!("blk.{i}.{s}");
    let shared = if cfg.n_shared_expert > 0 {
        let s = f * cfg.n_shared_expert;
        Some(FfnWeights {
            gate: l.get(&b("ffn_gate_shexp.weight"), &[d, s])?,
            up: l.get(&b("ffn_up_shexp.weight"), &[d, s])?,
            down: l.get(&b("ffn_down_shexp.weight"), &[s, d])?,
        })
    } else {
        None
    };
    Ok(MoeWeights {
        router: l.get(&b("ffn_gate_inp.weight"), &[d, e])?,
        bias: l.get(&b("exp_probs_b.bias"), &[e])?,
        experts: FfnWeights {
            gate: l.get(&b("ffn_gate_exps.weight"), &[d, f, e])?,
            up: l.get(&b("ffn_up_exps.weight"), &[d, f, e])?,
            down: l.get(&b("ffn_down_exps.weight"), &[f, d, e])?,
        },
        shared,
        n_used: cfg.n_expert_used,
        scale: cfg.expert_scale,
    })
}
