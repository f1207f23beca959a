//! Which ggml type each tensor gets: the file types offered on the command line, llama.cpp's
//! per-tensor rules for this architecture (`src/llama-quant.cpp`), `--tensor-type` overrides
//! and `--target-size` fitting.

use kiln::quant::GgmlType;
use regex::Regex;

/// A `--type` value. F32/F16/BF16/Q8_0 follow llama.cpp's HF converter (every quantizable
/// tensor in that type); the K-quant names are llama-quantize's mixes.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    F32,
    F16,
    BF16,
    Q8_0,
    Q6_K,
    Q5_K_M,
    Q5_K_S,
    Q4_K_M,
    Q4_K_S,
    Q3_K_M,
    Q3_K_S,
    Q2_K,
    /// Every quantizable matrix in Q4_K, rows that are not a multiple of 256 in Q8_0: the layout of
    /// the reference synthetic file (llama-quantize `--pure`, but with a Q8_0 fallback).
    Q4_K,
}

const NAMES: &[(&str, FileType)] = &[
    ("f32", FileType::F32),
    ("f16", FileType::F16),
    ("bf16", FileType::BF16),
    ("q8_0", FileType::Q8_0),
    ("q6_k", FileType::Q6_K),
    ("q5_k_m", FileType::Q5_K_M),
    ("q5_k_s", FileType::Q5_K_S),
    ("q4_k_m", FileType::Q4_K_M),
    ("q4_k_s", FileType::Q4_K_S),
    ("q3_k_m", FileType::Q3_K_M),
    ("q3_k_s", FileType::Q3_K_S),
    ("q2_k", FileType::Q2_K),
    ("q4_k", FileType::Q4_K),
];

impl FileType {
    pub fn parse(s: &str) -> Option<FileType> {
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(s))
            .map(|(_, t)| *t)
    }

    pub fn all_names() -> impl Iterator<Item = &'static str> {
        NAMES.iter().map(|(n, _)| *n)
    }

    pub fn name(self) -> &'static str {
        NAMES
            .iter()
            .find(|(_, t)| *t == self)
            .map(|(n, _)| *n)
            .expect("every FileType is named")
    }

    /// `general.file_type` (llama_ftype).
    pub fn llama_ftype(self) -> u32 {
        match self {
            FileType::F32 => 0,
            FileType::F16 => 1,
            FileType::Q8_0 => 7,
            FileType::Q2_K => 10,
            FileType::Q3_K_S => 11,
            FileType::Q3_K_M => 12,
            FileType::Q4_K_S => 14,
            FileType::Q4_K_M | FileType::Q4_K => 15,
            FileType::Q5_K_S => 16,
            FileType::Q5_K_M => 17,
            FileType::Q6_K => 18,
            FileType::BF16 => 32,
        }
    }

    /// llama_ftype_get_default_type.
    pub fn default_type(self) -> GgmlType {
        match self {
            FileType::F32 => GgmlType::F32,
            FileType::F16 => GgmlType::F16,
            FileType::BF16 => GgmlType::BF16,
            FileType::Q8_0 => GgmlType::Q8_0,
            FileType::Q6_K => GgmlType::Q6_K,
            FileType::Q5_K_M | FileType::Q5_K_S => GgmlType::Q5_K,
            FileType::Q4_K_M | FileType::Q4_K_S | FileType::Q4_K => GgmlType::Q4_K,
            FileType::Q3_K_M | FileType::Q3_K_S => GgmlType::Q3_K,
            FileType::Q2_K => GgmlType::Q2_K,
        }
    }

    /// Whether the type is one of llama-quantize's mixes (as opposed to the HF converter's
    /// uniform types).
    fn is_mix(self) -> bool {
        !matches!(
            self,
            FileType::F32 | FileType::F16 | FileType::BF16 | FileType::Q8_0 | FileType::Q4_K
        )
    }
}

/// What the per-tensor rules need to know about the model.
#[derive(Clone, Copy, Debug)]
pub struct ModelInfo {
    pub n_layer: usize,
    pub n_expert: usize,
    /// n_head / n_head_kv of layer 0 (0 when layer 0 is KDA, as llama.cpp evaluates it).
    pub n_gqa: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    #[error("--tensor-type {0:?}: expected REGEX=TYPE")]
    OverrideSyntax(String),
    #[error("--tensor-type {spec:?}: {reason}")]
    OverrideRegex { spec: String, reason: String },
    #[error(
        "unknown tensor type {0:?} (f32, f16, bf16, q8_0, q4_0, q5_0, q5_1, q2_k, q3_k, q4_k, q5_k, q6_k)"
    )]
    UnknownType(String),
    #[error(
        "--target-size {target} bytes is below the smallest file this model can make ({min} bytes of tensors)"
    )]
    TargetTooSmall { target: u64, min: u64 },
    #[error("bad size {0:?} (examples: 22GiB, 21.5GB, 900MiB)")]
    BadSize(String),
}

/// One `--tensor-type REGEX=TYPE`.
#[derive(Clone, Debug)]
pub struct Override {
    pub pattern: Regex,
    pub ty: GgmlType,
}

impl Override {
    pub fn parse(spec: &str) -> Result<Override, RecipeError> {
        let (re, ty) = spec
            .rsplit_once('=')
            .ok_or_else(|| RecipeError::OverrideSyntax(spec.into()))?;
        let ty = parse_tensor_type(ty)?;
        let pattern = Regex::new(re).map_err(|e| RecipeError::OverrideRegex {
            spec: spec.into(),
            reason: e.to_string(),
        })?;
        Ok(Override { pattern, ty })
    }
}

pub fn parse_tensor_type(s: &str) -> Result<GgmlType, RecipeError> {
    let ty = GgmlType::from_name(s).ok_or_else(|| RecipeError::UnknownType(s.into()))?;
    use GgmlType::*;
    if !matches!(
        ty,
        F32 | F16 | BF16 | Q8_0 | Q4_0 | Q5_0 | Q5_1 | Q2_K | Q3_K | Q4_K | Q5_K | Q6_K
    ) {
        return Err(RecipeError::UnknownType(s.into()));
    }
    Ok(ty)
}

/// Parses "22GiB", "21.5GB", "900MiB", "1234" (bytes).
pub fn parse_size(s: &str) -> Result<u64, RecipeError> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| RecipeError::BadSize(s.into()))?;
    let mul = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kib" => 1024.0,
        "mib" => 1024f64.powi(2),
        "gib" => 1024f64.powi(3),
        "tib" => 1024f64.powi(4),
        "kb" | "k" => 1e3,
        "mb" | "m" => 1e6,
        "gb" | "g" => 1e9,
        "tb" | "t" => 1e12,
        _ => return Err(RecipeError::BadSize(s.into())),
    };
    Ok((v * mul) as u64)
}

/// A tensor as the rules see it: its GGUF name and ggml dims.
pub trait TensorShape {
    fn name(&self) -> &str;
    fn ne(&self) -> &[usize];
}

impl TensorShape for crate::mapping::OutTensor {
    fn name(&self) -> &str {
        &self.name
    }
    fn ne(&self) -> &[usize] {
        &self.ne
    }
}

impl TensorShape for crate::write::TensorJob {
    fn name(&self) -> &str {
        &self.name
    }
    fn ne(&self) -> &[usize] {
        &self.ne
    }
}

fn n_dims(ne: &[usize]) -> usize {
    ne.iter().rposition(|&d| d != 1).map_or(1, |p| p + 1)
}

/// llama.cpp's `tensor_allows_quantization` for this architecture's names. Everything it
/// refuses is stored F32 by the HF converter.
pub fn allows_quantization(name: &str, ne: &[usize]) -> bool {
    n_dims(ne) >= 2
        && name.ends_with("weight")
        && !name.contains("_norm.weight")
        && !name.contains("ffn_gate_inp.weight")
        && !name.contains("ssm_conv1d")
}

pub fn tensor_bytes(ty: GgmlType, ne: &[usize]) -> u64 {
    let rows: usize = ne[1..].iter().product();
    ty.row_bytes(ne[0]).map_or(0, |r| (r * rows) as u64)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Category {
    TokenEmbd,
    AttnQ,
    AttnV,
    AttnK,
    AttnQkv,
    AttnKvB,
    AttnOutput,
    FfnUp,
    FfnGate,
    FfnDown,
    Output,
    Other,
}

fn category(name: &str) -> Category {
    use Category::*;
    if name == "output.weight" {
        Output
    } else if name == "token_embd.weight" {
        TokenEmbd
    } else if name.contains("attn_qkv.weight") {
        AttnQkv
    } else if name.contains("attn_kv_b.weight") {
        AttnKvB
    } else if name.contains("attn_v.weight") {
        AttnV
    } else if name.contains("attn_k.weight") {
        AttnK
    } else if name.contains("attn_q.weight") {
        AttnQ
    } else if name.contains("attn_output.weight") {
        AttnOutput
    } else if name.contains("ffn_up") {
        FfnUp
    } else if name.contains("ffn_gate") {
        FfnGate
    } else if name.contains("ffn_down") {
        FfnDown
    } else {
        Other
    }
}

fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("blk.")?.split('.').next()?.parse().ok()
}

/// llama.cpp processes tensors in `weight_name_comparer` order (non-block tensors first, then by
/// block number, then by name); the attn_v counter of the mixes depends on it.
fn llama_order<T: TensorShape>(tensors: &[T]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..tensors.len()).collect();
    idx.sort_by(|&a, &b| {
        let (na, nb) = (tensors[a].name(), tensors[b].name());
        let la = layer_of(na).map_or(-1, |l| l as i64);
        let lb = layer_of(nb).map_or(-1, |l| l as i64);
        la.cmp(&lb).then_with(|| na.cmp(nb))
    });
    idx
}

fn use_more_bits(i: usize, n: usize) -> bool {
    i < n / 8 || i >= 7 * n / 8 || (i as i64 - (n / 8) as i64) % 3 == 2
}

/// Types for rows whose length is not a multiple of the chosen block (llama.cpp's
/// `tensor_type_fallback`; F16 when even the fallback does not fit).
fn fallback(ty: GgmlType, ncols: usize, ftype: FileType) -> GgmlType {
    use GgmlType::*;
    if ncols.is_multiple_of(ty.block_size()) {
        return ty;
    }
    let fb = match ty {
        Q2_K | Q3_K => Q4_0,
        Q4_K if ftype == FileType::Q4_K => Q8_0,
        Q4_K => Q5_0,
        Q5_K => Q5_1,
        Q6_K => Q8_0,
        _ => F16,
    };
    if ncols.is_multiple_of(fb.block_size()) {
        fb
    } else {
        F16
    }
}

/// The configured choice of types: a file type, optional `--pure`, and overrides.
#[derive(Clone, Debug)]
pub struct Recipe {
    pub ftype: FileType,
    pub pure: bool,
    pub overrides: Vec<Override>,
}

struct MixState {
    n_attention_wv: usize,
    i_attention_wv: usize,
    i_ffn_down: usize,
    tied: bool,
}

impl Recipe {
    pub fn new(ftype: FileType) -> Recipe {
        Recipe {
            ftype,
            pure: false,
            overrides: Vec::new(),
        }
    }

    /// The type of every tensor, in the order given.
    pub fn assign<T: TensorShape>(&self, info: &ModelInfo, tensors: &[T]) -> Vec<GgmlType> {
        let mut st = MixState {
            n_attention_wv: tensors
                .iter()
                .filter(|t| {
                    matches!(
                        category(t.name()),
                        Category::AttnV | Category::AttnQkv | Category::AttnKvB
                    )
                })
                .count(),
            i_attention_wv: 0,
            i_ffn_down: 0,
            tied: !tensors.iter().any(|t| t.name() == "output.weight"),
        };
        let mut out = vec![GgmlType::F32; tensors.len()];
        for i in llama_order(tensors) {
            out[i] = self.one(info, &mut st, tensors[i].name(), tensors[i].ne());
        }
        out
    }

    fn one(&self, info: &ModelInfo, st: &mut MixState, name: &str, ne: &[usize]) -> GgmlType {
        if !allows_quantization(name, ne) {
            return GgmlType::F32;
        }
        let mut ty = self.ftype.default_type();
        let manual = self.overrides.iter().find(|o| o.pattern.is_match(name));
        if let Some(o) = manual {
            ty = o.ty;
        } else if self.ftype.is_mix() && !self.pure {
            ty = mix_rule(self.ftype, ty, info, st, name, ne);
        }
        fallback(ty, ne[0], self.ftype)
    }
}

/// `llama_tensor_get_type_impl` restricted to the file types offered here.
fn mix_rule(
    ft: FileType,
    mut ty: GgmlType,
    info: &ModelInfo,
    st: &mut MixState,
    name: &str,
    ne: &[usize],
) -> GgmlType {
    use Category as C;
    use FileType as F;
    use GgmlType as G;
    let cat = category(name);
    let n_expert = info.n_expert.max(1);
    if cat == C::Output || (st.tied && cat == C::TokenEmbd) {
        if !ne[0].is_multiple_of(ty.block_size()) {
            ty = G::Q8_0;
        } else if ty != G::Q8_0 {
            ty = G::Q6_K;
        }
    } else if cat == C::TokenEmbd {
        // The K mixes keep the default type for the embedding.
    } else if matches!(cat, C::AttnV | C::AttnQkv | C::AttnKvB) {
        let i = st.i_attention_wv;
        match ft {
            F::Q2_K => ty = if info.n_gqa >= 4 { G::Q4_K } else { G::Q3_K },
            F::Q3_K_M => ty = if i < 2 { G::Q5_K } else { G::Q4_K },
            F::Q4_K_M | F::Q5_K_M if use_more_bits(i, st.n_attention_wv) => ty = G::Q6_K,
            F::Q4_K_S if i < 4 => ty = G::Q5_K,
            _ => {}
        }
        if n_expert == 8 {
            ty = G::Q8_0;
        }
        st.i_attention_wv += 1;
    } else if cat == C::AttnK {
        if n_expert == 8 {
            ty = G::Q8_0;
        }
    } else if cat == C::FfnDown {
        let n_layer = info.n_layer;
        let i_layer = if n_expert > 1 {
            layer_of(name).unwrap_or(st.i_ffn_down)
        } else {
            st.i_ffn_down
        };
        match ft {
            F::Q2_K => ty = G::Q3_K,
            // Not Falcon: every layer past the first sixteenth gets Q4_K.
            F::Q3_K_M => {
                ty = if i_layer < n_layer / 16 {
                    G::Q5_K
                } else {
                    G::Q4_K
                }
            }
            F::Q4_K_M | F::Q5_K_M if use_more_bits(i_layer, n_layer) => ty = G::Q6_K,
            F::Q4_K_S if i_layer < n_layer / 8 => ty = G::Q5_K,
            _ => {}
        }
        st.i_ffn_down += 1;
    } else if cat == C::AttnOutput {
        if n_expert == 8 {
            if matches!(ft, F::Q2_K | F::Q3_K_S | F::Q3_K_M | F::Q4_K_S | F::Q4_K_M) {
                ty = G::Q5_K;
            }
        } else if ft == F::Q2_K {
            ty = G::Q3_K;
        } else if ft == F::Q3_K_M {
            ty = G::Q4_K;
        }
    }
    ty
}

/// How much a tensor's quantization error is expected to cost, relative to a routed expert's.
/// Routed experts serve a few tokens each and give way first; attention, shared experts, the
/// router and the output are read for every token and keep their precision longest.
fn importance(name: &str) -> f64 {
    if name.contains("_exps") {
        if name.contains("ffn_down") { 2.0 } else { 1.0 }
    } else if name == "token_embd.weight" {
        4.0
    } else {
        64.0
    }
}

/// Expected squared error of a type per weight, up to a constant: each bit halves the step.
fn type_loss(ty: GgmlType) -> f64 {
    (-2.0 * ty.bits_per_weight()).exp2()
}

const LADDER: [GgmlType; 6] = [
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::Q8_0,
];

/// Chooses per-tensor types so the tensor data fits `target` bytes with the least expected loss:
/// every free tensor starts at Q8_0 and the step with the smallest loss per byte saved is taken
/// until the model fits. Tensors matched by an override, and those that are never quantized,
/// keep the type `base` gives them.
pub fn fit_to_size<T: TensorShape>(
    recipe: &Recipe,
    info: &ModelInfo,
    tensors: &[T],
    target: u64,
) -> Result<Vec<GgmlType>, RecipeError> {
    let base = recipe.assign(info, tensors);
    let free: Vec<bool> = tensors
        .iter()
        .map(|t| {
            allows_quantization(t.name(), t.ne())
                && !recipe
                    .overrides
                    .iter()
                    .any(|o| o.pattern.is_match(t.name()))
        })
        .collect();
    let mut rung = vec![LADDER.len() - 1; tensors.len()];
    let ty_at = |i: usize, r: usize| fallback(LADDER[r], tensors[i].ne()[0], FileType::Q4_K_M);
    let cur = |rung: &[usize], i: usize| if free[i] { ty_at(i, rung[i]) } else { base[i] };
    let total = |rung: &[usize]| -> u64 {
        (0..tensors.len())
            .map(|i| tensor_bytes(cur(rung, i), tensors[i].ne()))
            .sum()
    };

    let mut size = total(&rung);
    while size > target {
        let mut best: Option<(f64, usize)> = None;
        for i in 0..tensors.len() {
            if !free[i] || rung[i] == 0 {
                continue;
            }
            let (a, b) = (ty_at(i, rung[i]), ty_at(i, rung[i] - 1));
            let saved =
                tensor_bytes(a, tensors[i].ne()).saturating_sub(tensor_bytes(b, tensors[i].ne()));
            if saved == 0 {
                // The fallback maps both rungs to the same type: step over it for free.
                rung[i] -= 1;
                continue;
            }
            let n = tensors[i].ne().iter().product::<usize>() as f64;
            let cost =
                importance(tensors[i].name()) * n * (type_loss(b) - type_loss(a)) / saved as f64;
            if best.is_none_or(|(c, _)| cost < c) {
                best = Some((cost, i));
            }
        }
        let Some((_, i)) = best else {
            return Err(RecipeError::TargetTooSmall { target, min: size });
        };
        rung[i] -= 1;
        size = total(&rung);
    }
    Ok((0..tensors.len()).map(|i| cur(&rung, i)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T(String, Vec<usize>);
    impl TensorShape for T {
        fn name(&self) -> &str {
            &self.0
        }
        fn ne(&self) -> &[usize] {
            &self.1
        }
    }

    /// The 48B layout's quantizable names with true row lengths (a subset is enough for the rules).
    fn kimi48() -> (ModelInfo, Vec<T>) {
        let mut v = vec![
            T("token_embd.weight".into(), vec![2304, 163840]),
            T("output.weight".into(), vec![2304, 163840]),
        ];
        let mla = [3, 7, 11, 15, 19, 23, 26];
        for i in 0..27 {
            if mla.contains(&i) {
                v.push(T(format!("blk.{i}.attn_k_b.weight"), vec![128, 512, 32]));
                v.push(T(format!("blk.{i}.attn_q.weight"), vec![2304, 6144]));
            } else {
                v.push(T(format!("blk.{i}.attn_v.weight"), vec![2304, 4096]));
                v.push(T(format!("blk.{i}.ssm_f_b.weight"), vec![128, 4096]));
                v.push(T(format!("blk.{i}.ssm_a"), vec![1, 32, 1, 1]));
            }
            v.push(T(format!("blk.{i}.attn_output.weight"), vec![4096, 2304]));
            if i == 0 {
                v.push(T("blk.0.ffn_down.weight".into(), vec![9216, 2304]));
            } else {
                v.push(T(
                    format!("blk.{i}.ffn_down_exps.weight"),
                    vec![1024, 2304, 256],
                ));
                v.push(T(
                    format!("blk.{i}.ffn_gate_exps.weight"),
                    vec![2304, 1024, 256],
                ));
                v.push(T(
                    format!("blk.{i}.ffn_down_shexp.weight"),
                    vec![1024, 2304],
                ));
                v.push(T(format!("blk.{i}.ffn_gate_inp.weight"), vec![2304, 256]));
            }
        }
        (
            ModelInfo {
                n_layer: 27,
                n_expert: 256,
                n_gqa: 0,
            },
            v,
        )
    }

    fn types(ft: FileType) -> Vec<(String, GgmlType)> {
        let (info, t) = kimi48();
        let ty = Recipe::new(ft).assign(&info, &t);
        t.into_iter().map(|x| x.0).zip(ty).collect()
    }

    fn of(v: &[(String, GgmlType)], n: &str) -> GgmlType {
        v.iter().find(|x| x.0 == n).unwrap().1
    }

    #[test]
    fn q4_k_m_matches_spec_section_8() {
        use GgmlType::*;
        let v = types(FileType::Q4_K_M);
        assert_eq!(of(&v, "output.weight"), Q6_K);
        assert_eq!(of(&v, "token_embd.weight"), Q4_K);
        let more = [0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26];
        for i in 1..27 {
            let want = if more.contains(&i) { Q6_K } else { Q4_K };
            assert_eq!(
                of(&v, &format!("blk.{i}.ffn_down_exps.weight")),
                want,
                "layer {i}"
            );
            assert_eq!(
                of(&v, &format!("blk.{i}.ffn_down_shexp.weight")),
                want,
                "layer {i}"
            );
            assert_eq!(of(&v, &format!("blk.{i}.ffn_gate_exps.weight")), Q4_K);
            assert_eq!(of(&v, &format!("blk.{i}.ffn_gate_inp.weight")), F32);
        }
        assert_eq!(of(&v, "blk.0.ffn_down.weight"), Q6_K);
        let n_v6 = v
            .iter()
            .filter(|x| x.0.ends_with("attn_v.weight") && x.1 == Q6_K)
            .count();
        assert_eq!(n_v6, 10);
        assert_eq!(of(&v, "blk.0.ssm_f_b.weight"), Q5_0);
        assert_eq!(of(&v, "blk.3.attn_k_b.weight"), Q5_0);
        assert_eq!(of(&v, "blk.0.ssm_a"), F32);
    }

    #[test]
    fn q3_k_m_and_q2_k() {
        use GgmlType::*;
        let v = types(FileType::Q3_K_M);
        assert_eq!(of(&v, "blk.0.attn_v.weight"), Q5_K);
        assert_eq!(of(&v, "blk.1.attn_v.weight"), Q5_K);
        assert_eq!(of(&v, "blk.2.attn_v.weight"), Q4_K);
        assert_eq!(of(&v, "blk.0.ffn_down.weight"), Q5_K);
        assert_eq!(of(&v, "blk.5.ffn_down_exps.weight"), Q4_K);
        assert_eq!(of(&v, "blk.5.attn_output.weight"), Q4_K);
        assert_eq!(of(&v, "blk.5.ffn_gate_exps.weight"), Q3_K);
        assert_eq!(of(&v, "blk.0.ssm_f_b.weight"), Q4_0);
        let v = types(FileType::Q2_K);
        assert_eq!(of(&v, "blk.0.attn_v.weight"), Q3_K);
        assert_eq!(of(&v, "blk.9.ffn_down_exps.weight"), Q3_K);
        assert_eq!(of(&v, "blk.9.attn_output.weight"), Q3_K);
        assert_eq!(of(&v, "blk.9.ffn_gate_exps.weight"), Q2_K);
        assert_eq!(of(&v, "output.weight"), Q6_K);
    }

    #[test]
    fn pure_q4_k_reference_layout() {
        use GgmlType::*;
        let v = types(FileType::Q4_K);
        assert_eq!(of(&v, "output.weight"), Q4_K);
        assert_eq!(of(&v, "blk.1.ffn_down_exps.weight"), Q4_K);
        assert_eq!(of(&v, "blk.0.ssm_f_b.weight"), Q8_0);
        assert_eq!(of(&v, "blk.3.attn_k_b.weight"), Q8_0);
        assert_eq!(of(&v, "blk.0.ssm_a"), F32);
    }

    #[test]
    fn overrides_win_and_still_fall_back() {
        let (info, t) = kimi48();
        let mut r = Recipe::new(FileType::Q4_K_M);
        r.overrides
            .push(Override::parse(r"ffn_(gate|up)_exps=q2_k").unwrap());
        r.overrides.push(Override::parse(r"attn_k_b=q6_k").unwrap());
        let ty = r.assign(&info, &t);
        let get = |n: &str| ty[t.iter().position(|x| x.0 == n).unwrap()];
        assert_eq!(get("blk.4.ffn_gate_exps.weight"), GgmlType::Q2_K);
        assert_eq!(get("blk.3.attn_k_b.weight"), GgmlType::Q8_0);
        assert!(Override::parse("nope").is_err());
        assert!(Override::parse("x=q9_z").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("22GiB").unwrap(), 22 * (1 << 30));
        assert_eq!(parse_size("1.5GB").unwrap(), 1_500_000_000);
        assert_eq!(parse_size("900MiB").unwrap(), 900 << 20);
        assert!(parse_size("12 parsecs").is_err());
    }

    #[test]
    fn target_size_is_met_and_experts_give_way_first() {
        let (info, t) = kimi48();
        let r = Recipe::new(FileType::Q4_K_M);
        let target = 14u64 << 30;
        let ty = fit_to_size(&r, &info, &t, target).unwrap();
        let size: u64 = t.iter().zip(&ty).map(|(x, y)| tensor_bytes(*y, &x.1)).sum();
        assert!(size <= target && size > target - (1 << 30), "{size}");
        let get = |n: &str| ty[t.iter().position(|x| x.0 == n).unwrap()];
        assert!(get("blk.4.ffn_gate_exps.weight").bits_per_weight() < 4.0);
        assert!(get("output.weight").bits_per_weight() >= 6.0);
        assert!(get("blk.4.attn_v.weight").bits_per_weight() >= 6.0);
        assert!(get("blk.4.ffn_down_shexp.weight").bits_per_weight() >= 6.0);
        assert!(fit_to_size(&r, &info, &t, 1 << 30).is_err());
    }
}
