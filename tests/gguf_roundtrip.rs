//! Property tests: whatever metadata and tensors are declared, writing then reading gives them
//! back exactly, and re-writing what was read reproduces the file byte for byte.

use kiln::gguf::{Array, Gguf, GgufWriter, MAX_DIMS, Value};
use kiln::quant::GgmlType;
use proptest::prelude::*;

fn float32() -> impl Strategy<Value = f32> {
    // NaN != NaN would fail the comparison without saying anything about the format.
    any::<f32>().prop_filter("NaN", |x| !x.is_nan())
}

fn float64() -> impl Strategy<Value = f64> {
    any::<f64>().prop_filter("NaN", |x| !x.is_nan())
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), "\\PC{0,12}", "[a-z._]{1,20}"]
}

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        float32().prop_map(Value::F32),
        any::<bool>().prop_map(Value::Bool),
        string().prop_map(Value::String),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        float64().prop_map(Value::F64),
    ]
}

fn leaf_array() -> impl Strategy<Value = Array> {
    use prop::collection::vec;
    let n = 0..6usize;
    prop_oneof![
        vec(any::<u8>(), n.clone()).prop_map(Array::U8),
        vec(any::<i8>(), n.clone()).prop_map(Array::I8),
        vec(any::<u16>(), n.clone()).prop_map(Array::U16),
        vec(any::<i16>(), n.clone()).prop_map(Array::I16),
        vec(any::<u32>(), n.clone()).prop_map(Array::U32),
        vec(any::<i32>(), n.clone()).prop_map(Array::I32),
        vec(float32(), n.clone()).prop_map(Array::F32),
        vec(any::<bool>(), n.clone()).prop_map(Array::Bool),
        vec(string(), n.clone()).prop_map(Array::String),
        vec(any::<u64>(), n.clone()).prop_map(Array::U64),
        vec(any::<i64>(), n.clone()).prop_map(Array::I64),
        vec(float64(), n).prop_map(Array::F64),
    ]
}

fn array() -> impl Strategy<Value = Array> {
    leaf_array().prop_recursive(3, 24, 4, |inner| {
        prop::collection::vec(inner, 0..4).prop_map(Array::Array)
    })
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![3 => scalar(), 2 => array().prop_map(Value::Array)]
}

#[derive(Debug, Clone)]
struct TensorCase {
    ty: GgmlType,
    shape: Vec<u64>,
    seed: u64,
}

fn tensor_case() -> impl Strategy<Value = TensorCase> {
    let types: Vec<GgmlType> = GgmlType::all().collect();
    (
        prop::sample::select(types),
        0..=MAX_DIMS,
        0..4u64,
        prop::collection::vec(1..4u64, MAX_DIMS),
        any::<u64>(),
    )
        .prop_map(|(ty, n_dims, blocks, rest, seed)| {
            let mut shape: Vec<u64> = rest[..n_dims].to_vec();
            if n_dims > 0 {
                shape[0] = blocks * ty.block_size() as u64;
            } else if ty.block_size() != 1 {
                // A scalar is one element, which only a one-element-block type can hold.
                return TensorCase {
                    ty: GgmlType::F32,
                    shape,
                    seed,
                };
            }
            TensorCase { ty, shape, seed }
        })
}

/// Deterministic filler bytes, so cases stay small to shrink but data is not all zeros.
fn bytes_for(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn alignment() -> impl Strategy<Value = Option<u32>> {
    prop_oneof![Just(None), (0..9u32).prop_map(|p| Some(1 << p))]
}

fn write(
    kvs: &[(String, Value)],
    tensors: &[(String, TensorCase)],
    alignment: Option<u32>,
) -> Vec<u8> {
    let mut w = GgufWriter::new();
    for (k, v) in kvs {
        w.add_kv(k.clone(), v.clone()).unwrap();
    }
    if let Some(a) = alignment {
        w.set_alignment(a).unwrap();
    }
    for (name, t) in tensors {
        w.add_tensor(name.clone(), &t.shape, t.ty).unwrap();
    }
    let mut out = w.write_to(Vec::new()).unwrap();
    out.write_tensors(|i, info, w| {
        w.write_all(&bytes_for(tensors[i].1.seed, info.n_bytes() as usize))
    })
    .unwrap();
    out.finish().unwrap()
}

proptest! {
    #[test]
    fn write_then_read_round_trips(
        raw_kvs in prop::collection::vec((string(), value()), 0..10),
        raw_tensors in prop::collection::vec(("[a-z_.]{0,20}", tensor_case()), 0..6),
        alignment in alignment(),
    ) {
        // Index prefixes make keys and names unique without constraining the rest.
        let kvs: Vec<(String, Value)> =
            raw_kvs.into_iter().enumerate().map(|(i, (k, v))| (format!("k{i}.{k}"), v)).collect();
        let tensors: Vec<(String, TensorCase)> =
            raw_tensors.into_iter().enumerate().map(|(i, (n, t))| (format!("t{i}{n}"), t)).collect();
        let bytes = write(&kvs, &tensors, alignment);

        let g = Gguf::from_bytes(bytes.clone()).unwrap();
        let mut expected = kvs.clone();
        if let Some(a) = alignment {
            expected.push(("general.alignment".into(), Value::U32(a)));
        }
        let got: Vec<(String, Value)> = g.metadata().map(|(k, v)| (k.to_owned(), v.clone())).collect();
        prop_assert_eq!(&got, &expected);
        for (k, v) in &expected {
            prop_assert_eq!(g.get(k), Some(v));
        }
        let a = u64::from(alignment.unwrap_or(32));
        prop_assert_eq!(g.alignment(), a);
        prop_assert_eq!(g.data_offset() % a, 0);

        prop_assert_eq!(g.tensors().len(), tensors.len());
        for (info, (name, t)) in g.tensors().iter().zip(&tensors) {
            prop_assert_eq!(info.name(), name.as_str());
            prop_assert_eq!(info.shape(), &t.shape[..]);
            prop_assert_eq!(info.ty(), t.ty);
            prop_assert_eq!(info.offset() % a, 0);
            let data = g.tensor_bytes(info);
            prop_assert_eq!(data, &bytes_for(t.seed, info.n_bytes() as usize)[..]);
            prop_assert_eq!(g.tensor_data(name).unwrap(), data);
            prop_assert_eq!(g.tensor(name), Some(info));
        }

        // What the reader exposes is all the file holds: writing it again gives the same bytes.
        let mut w = GgufWriter::new();
        for (k, v) in g.metadata() {
            w.add_kv(k, v.clone()).unwrap();
        }
        for t in g.tensors() {
            w.add_tensor(t.name(), t.shape(), t.ty()).unwrap();
        }
        let mut out = w.write_to(Vec::new()).unwrap();
        out.write_tensors(|i, _, w| w.write_all(g.tensor_bytes(&g.tensors()[i]))).unwrap();
        prop_assert!(out.finish().unwrap() == bytes);
    }
}

/// The same through a real file and the memory map.
#[test]
fn round_trip_through_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.gguf");
    let kvs = vec![
        (
            "general.architecture".to_owned(),
            Value::from("kimi-linear"),
        ),
        ("tokens".to_owned(), Value::from(vec!["a", "ß", "日本"])),
        (
            "nested".to_owned(),
            Value::Array(Array::Array(vec![
                Array::F32(vec![1.5]),
                Array::Array(vec![]),
            ])),
        ),
    ];
    let tensors = [(
        "w".to_owned(),
        TensorCase {
            ty: GgmlType::Q4_K,
            shape: vec![512, 3],
            seed: 7,
        },
    )];
    let bytes = write(&kvs, &tensors, Some(64));
    let mut w = GgufWriter::new();
    for (k, v) in &kvs {
        w.add_kv(k.clone(), v.clone()).unwrap();
    }
    w.set_alignment(64).unwrap();
    w.add_tensor("w", &[512, 3], GgmlType::Q4_K).unwrap();
    let mut out = w.create(&path).unwrap();
    let data = bytes_for(7, 2 * 144 * 3);
    // In pieces, as a converter quantizing row by row would.
    out.write_tensor_with(|w| data.chunks(100).try_for_each(|c| w.write_all(c)))
        .unwrap();
    out.finish().unwrap();
    assert!(std::fs::read(&path).unwrap() == bytes);
    let g = Gguf::open(&path).unwrap();
    assert_eq!(g.tensor_data("w").unwrap(), &data[..]);
    assert_eq!(g.get_str_arr("tokens").unwrap(), ["a", "ß", "日本"]);
    // mmap views are as aligned in memory as the data is in the file.
    assert_eq!(g.tensor_data("w").unwrap().as_ptr() as usize % 64, 0);
}
