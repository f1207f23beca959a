//! gguf-py (PyPI `gguf`) reads a file our writer wrote and agrees with us on every key, value,
//! tensor name, shape, type and byte. Fails when Python or `gguf` is missing, unless
//! `KILN_SKIP_PYTHON=1`; `KILN_PYTHON` picks the interpreter (default `python3`).

use std::path::Path;
use std::process::Command;

use kiln::gguf::{Array, Gguf, GgufWriter, Value};
use kiln::quant::GgmlType;
use serde_json::{Value as Json, json};

fn python() -> String {
    std::env::var("KILN_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

/// The gguf-py type names of `v` and what `ReaderField.contents()` gives for it: nested arrays
/// flattened to their leaves, typed by their first element (so an empty array is just
/// `ARRAY`; the manifest's `elem_type` checks its element type).
fn expected(v: &Value) -> (Vec<&'static str>, Json) {
    match v {
        Value::Array(a) => {
            let mut types = vec!["ARRAY"];
            if !a.is_empty() {
                types.extend(array_types(a));
            }
            let mut leaves = Vec::new();
            flatten(a, &mut leaves);
            (types, Json::Array(leaves))
        }
        v => (vec![v.value_type().name()], scalar_json(v)),
    }
}

fn array_types(a: &Array) -> Vec<&'static str> {
    match a {
        Array::Array(v) => {
            let mut t = vec!["ARRAY"];
            t.extend(
                v.first()
                    .filter(|a| !a.is_empty())
                    .map(array_types)
                    .unwrap_or_default(),
            );
            t
        }
        a => vec![a.elem_type().name()],
    }
}

fn flatten(a: &Array, out: &mut Vec<Json>) {
    match a {
        Array::Array(v) => v.iter().for_each(|a| flatten(a, out)),
        a => out.extend((0..a.len()).map(|i| scalar_json(&a.get(i).expect("index below len")))),
    }
}

fn scalar_json(v: &Value) -> Json {
    match *v {
        Value::U8(x) => json!(x),
        Value::I8(x) => json!(x),
        Value::U16(x) => json!(x),
        Value::I16(x) => json!(x),
        Value::U32(x) => json!(x),
        Value::I32(x) => json!(x),
        // f32 -> f64 is exact, and gguf-py's contents() widens the same way.
        Value::F32(x) => json!(f64::from(x)),
        Value::Bool(x) => json!(x),
        Value::String(ref s) => json!(s),
        Value::U64(x) => json!(x),
        Value::I64(x) => json!(x),
        Value::F64(x) => json!(x),
        Value::Array(_) => unreachable!("arrays are flattened by the caller"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn metadata() -> Vec<(&'static str, Value)> {
    vec![
        ("general.architecture", "kimi-linear".into()),
        ("general.name", "kiln gguf-py check: ünïcödé 日本".into()),
        ("u8", Value::U8(200)),
        ("i8", Value::I8(-100)),
        ("u16", Value::U16(60_000)),
        ("i16", Value::I16(-30_000)),
        ("u32", Value::U32(4_000_000_000)),
        ("i32", Value::I32(-2_000_000_000)),
        ("f32", Value::F32(1e-6)),
        ("bool.true", Value::Bool(true)),
        ("bool.false", Value::Bool(false)),
        ("string.empty", "".into()),
        ("u64", Value::U64(u64::MAX - 1)),
        ("i64", Value::I64(i64::MIN + 1)),
        ("f64", Value::F64(-123.456e100)),
        ("arr.u8", vec![0u8, 1, 255].into()),
        ("arr.i8", vec![-128i8, 0, 127].into()),
        ("arr.u16", vec![1u16, 65535].into()),
        ("arr.i16", vec![-1i16, 1].into()),
        ("arr.u32", vec![7u32, 8, 9].into()),
        ("arr.i32", vec![-7i32, 8].into()),
        ("arr.f32", vec![0.5f32, -2.25, 3.0e38].into()),
        ("arr.bool", vec![true, false, true].into()),
        (
            "arr.string",
            vec!["<s>", "", "héllo", "Ġworld", "日本語"].into(),
        ),
        ("arr.u64", vec![u64::MAX, 0].into()),
        ("arr.i64", vec![i64::MIN, i64::MAX].into()),
        ("arr.f64", vec![1.0f64 / 3.0, -0.0].into()),
        ("arr.empty", Value::Array(Array::F32(vec![]))),
        (
            "arr.nested.u16",
            Value::Array(Array::Array(vec![
                Array::U16(vec![1, 2]),
                Array::U16(vec![3]),
            ])),
        ),
        (
            "arr.nested.string",
            Value::Array(Array::Array(vec![
                Array::String(vec!["a".into(), "b".into()]),
                Array::String(vec!["c".into()]),
            ])),
        ),
        ("general.alignment", Value::U32(64)),
    ]
}

fn tensors() -> Vec<(&'static str, Vec<u64>, GgmlType)> {
    vec![
        ("token_embd.weight", vec![64, 3], GgmlType::Q8_0),
        ("output_norm.weight", vec![7], GgmlType::F32),
        ("blk.0.attn_q.weight", vec![5, 2, 3], GgmlType::F16),
        ("blk.0.ffn_up.weight", vec![4, 2, 2, 2], GgmlType::BF16),
        ("blk.0.ffn_down.weight", vec![256, 2], GgmlType::Q4_K),
        ("blk.0.ffn_gate.weight", vec![256], GgmlType::Q6_K),
        ("blk.0.attn_k.weight", vec![32, 2], GgmlType::Q4_0),
        ("blk.0.ids", vec![3], GgmlType::I32),
        ("blk.0.exps.weight", vec![256, 1, 2], GgmlType::IQ4_XS),
        ("empty", vec![0, 4], GgmlType::F32),
    ]
}

fn write_case(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let mut w = GgufWriter::new();
    let mut kv_json = Vec::new();
    for (k, v) in metadata() {
        let (types, contents) = expected(&v);
        let elem_type = v.as_array().map(|a| a.elem_type().id());
        kv_json.push(
            json!({ "key": k, "types": types, "contents": contents, "elem_type": elem_type }),
        );
        w.add_kv(k, v).unwrap();
    }
    for (name, shape, ty) in tensors() {
        w.add_tensor(name, &shape, ty).unwrap();
    }
    let path = dir.join("check.gguf");
    let mut out = w.create(&path).unwrap();
    out.write_tensors(|i, t, w| {
        let bytes: Vec<u8> = (0..t.n_bytes())
            .map(|j| (j as u8).wrapping_mul(31).wrapping_add(i as u8))
            .collect();
        w.write_all(&bytes)
    })
    .unwrap();
    out.finish().unwrap();

    // The manifest describes the file as our reader sees it, so it checks reader and writer both.
    let g = Gguf::open(&path).unwrap();
    let tensor_json: Vec<Json> = g
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name(),
                "shape": t.shape(),
                "type": t.ty().name(),
                "n_bytes": t.n_bytes(),
                "hex": hex(g.tensor_bytes(t)),
            })
        })
        .collect();
    assert_eq!(tensor_json.len(), tensors().len());
    let manifest = json!({ "alignment": g.alignment(), "kv": kv_json, "tensors": tensor_json });
    let manifest_path = dir.join("check.json");
    std::fs::write(
        &manifest_path,
        serde_json::to_string_pretty(&manifest).unwrap(),
    )
    .unwrap();
    (path, manifest_path)
}

#[test]
fn gguf_py_reads_what_we_write() {
    let skip = std::env::var("KILN_SKIP_PYTHON").is_ok_and(|v| v == "1");
    let py = python();
    let probe = Command::new(&py)
        .args(["-c", "import gguf, numpy"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(_) | Err(_) if skip => {
            eprintln!("skipped: {py} cannot import gguf and KILN_SKIP_PYTHON=1");
            return;
        }
        Ok(o) => panic!(
            "{py} cannot import gguf/numpy (install with `pip install gguf numpy`, or set \
             KILN_SKIP_PYTHON=1 to skip):\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run {py}: {e} (set KILN_PYTHON, or KILN_SKIP_PYTHON=1 to skip)"),
    }

    let dir = tempfile::tempdir().unwrap();
    let (file, manifest) = write_case(dir.path());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference/gguf_py_check.py");
    let out = Command::new(&py)
        .arg(&script)
        .arg(&file)
        .arg(&manifest)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stdout}{stderr}");
    assert!(
        out.status.success(),
        "gguf_py_check.py failed ({}):\n{stdout}{stderr}",
        out.status
    );
}
