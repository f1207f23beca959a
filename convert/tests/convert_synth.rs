//! `kiln-convert synth`: random weights at the shapes of a models.toml entry, every block valid.

mod common;

use common::*;
use kiln::gguf::Gguf;
use kiln::quant::{self, GgmlType};
use std::ffi::OsStr;

fn synth(model: &str, ty: &str, out: &std::path::Path) {
    let models = repo_root().join("models.toml");
    let o = kiln_convert(&[
        OsStr::new("synth"),
        OsStr::new("--model"),
        OsStr::new(model),
        OsStr::new("--models"),
        models.as_os_str(),
        OsStr::new("--type"),
        OsStr::new(ty),
        OsStr::new("-o"),
        out.as_os_str(),
        OsStr::new("--quiet"),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn pure_q4_k_layout_with_finite_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.gguf");
    synth("kimi-linear-test-256", "q4_k", &out);
    let g = Gguf::open(&out).unwrap();
    assert_eq!(g.get_u32("kimi-linear.expert_count"), Some(16));
    let mut seen = std::collections::BTreeSet::new();
    for t in g.tensors() {
        let name = t.name();
        let ne0 = t.shape()[0] as usize;
        let quantizable = t.n_dims() >= 2
            && name.ends_with("weight")
            && !name.contains("_norm.weight")
            && !name.contains("ffn_gate_inp")
            && !name.contains("ssm_conv1d");
        let want = if !quantizable {
            GgmlType::F32
        } else if ne0.is_multiple_of(256) {
            GgmlType::Q4_K
        } else {
            GgmlType::Q8_0
        };
        assert_eq!(t.ty(), want, "{name}");
        if name.contains("ssm_f_b") || name.contains("ssm_g_b") || name.contains("attn_k_b") {
            assert_eq!(t.ty(), GgmlType::Q8_0, "{name}");
        }
        seen.insert(t.ty());
        let vals = quant::dequantize(
            t.ty(),
            g.tensor_data(name).unwrap(),
            t.n_elements() as usize,
        )
        .unwrap();
        assert!(
            vals.iter().all(|v| v.is_finite()),
            "{name}: non-finite values"
        );
        let rms = (vals.iter().map(|v| (v * v) as f64).sum::<f64>() / vals.len() as f64).sqrt();
        assert!(rms > 1e-3 && rms < 20.0, "{name}: rms {rms}");
        // Matrices get the spread of a trained layer, 1.5/sqrt(fan_in), whatever the block type.
        if quantizable && name != "token_embd.weight" {
            let ratio = rms * (ne0 as f64).sqrt() / 1.5;
            assert!(
                (0.7..1.4).contains(&ratio),
                "{name} ({}): rms {rms} is {ratio:.2} x the target",
                t.ty()
            );
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

#[test]
fn q4_k_m_mix_on_aligned_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.gguf");
    synth("kimi-linear-test-256", "q4_k_m", &out);
    let g = Gguf::open(&out).unwrap();
    let ty = |n: &str| g.tensor(n).unwrap_or_else(|| panic!("{n}")).ty();
    assert_eq!(ty("output.weight"), GgmlType::Q6_K);
    assert_eq!(ty("token_embd.weight"), GgmlType::Q4_K);
    // 4 layers: use_more_bits(i, 4) holds for i = 2 ((i - 0) % 3 == 2) and i = 3 (i >= 7n/8).
    assert_eq!(ty("blk.0.ffn_down.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.1.ffn_down_exps.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.2.ffn_down_exps.weight"), GgmlType::Q6_K);
    assert_eq!(ty("blk.3.ffn_down_exps.weight"), GgmlType::Q6_K);
    assert_eq!(ty("blk.1.ffn_gate_exps.weight"), GgmlType::Q4_K);
    assert_eq!(ty("blk.1.attn_k_b.weight"), GgmlType::Q5_0);
    assert_eq!(ty("blk.0.ssm_a"), GgmlType::F32);
}
