//! Unit tests: one hand-made file per error the reader must report, and the writer's checks.

use super::*;
use crate::quant::GgmlType;

/// Builds GGUF bytes by hand, so tests can make files the writer refuses to make.
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Bytes {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Bytes {
        let mut b = Bytes::default();
        b.raw(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        b
    }
    fn raw(&mut self, x: &[u8]) -> &mut Self {
        self.0.extend_from_slice(x);
        self
    }
    fn u32(&mut self, x: u32) -> &mut Self {
        self.raw(&x.to_le_bytes())
    }
    fn u64(&mut self, x: u64) -> &mut Self {
        self.raw(&x.to_le_bytes())
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    /// A metadata entry holding a u32.
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key).u32(ValueType::U32.id()).u32(v)
    }
    fn tensor(&mut self, name: &str, ne: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name).u32(ne.len() as u32);
        for &d in ne {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Pads to 32 and appends `n` data bytes.
    fn data(&mut self, n: usize) -> &mut Self {
        let pad = self.0.len().next_multiple_of(32);
        self.0.resize(pad + n, 0xAB);
        self
    }
    fn parse(&self) -> Result<Gguf, GgufError> {
        Gguf::from_bytes_named(self.0.clone(), "test.gguf")
    }
}

#[track_caller]
fn expect_err(b: &Bytes, want: impl Fn(&FormatError) -> bool) -> String {
    let e = b.parse().expect_err("expected an error");
    let msg = e.to_string();
    assert!(
        msg.starts_with("test.gguf: "),
        "error does not name the file: {msg}"
    );
    let kind = e
        .format_kind()
        .unwrap_or_else(|| panic!("not a format error: {msg}"));
    assert!(want(kind), "unexpected error: {msg}");
    msg
}

/// Strips the key or tensor context layers off an error.
fn root(e: &FormatError) -> &FormatError {
    match e {
        FormatError::InKey { source, .. } | FormatError::InTensor { source, .. } => root(source),
        e => e,
    }
}

#[test]
fn reads_minimal_v3_and_v2() {
    for v in [2, 3] {
        let mut b = Bytes::header(v, 1, 1);
        b.kv_u32("a", 5)
            .tensor("t", &[4, 2], GgmlType::F32.id(), 0)
            .data(32);
        let g = b.parse().unwrap();
        assert_eq!(g.version(), v);
        assert_eq!(g.get_u32("a"), Some(5));
        assert_eq!(g.get_i64("a"), Some(5));
        let t = g.tensor("t").unwrap();
        assert_eq!(t.shape(), &[4, 2]);
        assert_eq!(g.tensor_bytes(t), &[0xAB; 32][..]);
        assert_eq!(g.data_offset() % 32, 0);
    }
}

#[test]
fn header_errors() {
    expect_err(&Bytes(b"GGU".to_vec()), |e| {
        matches!(e, FormatError::Truncated { .. })
    });
    expect_err(&Bytes(Vec::new()), |e| {
        matches!(e, FormatError::Truncated { .. })
    });
    let mut b = Bytes::header(3, 0, 0);
    b.0[0] = b'X';
    expect_err(&b, |e| matches!(e, FormatError::BadMagic(_)));
    expect_err(&Bytes::header(1, 0, 0), |e| {
        *e == FormatError::BadVersion(1)
    });
    expect_err(&Bytes::header(4, 0, 0), |e| {
        *e == FormatError::BadVersion(4)
    });
    expect_err(&Bytes::header(3u32.swap_bytes(), 0, 0), |e| {
        *e == FormatError::BigEndian
    });
    let msg = expect_err(&Bytes::header(3, 0, u64::MAX), |e| {
        matches!(e, FormatError::CountTooLarge { .. })
    });
    assert!(msg.contains("metadata entry"), "{msg}");
    expect_err(&Bytes::header(3, 1 << 40, 0), |e| {
        matches!(e, FormatError::CountTooLarge { .. })
    });
    assert!(Bytes::header(3, 0, 0).parse().is_ok());
}

#[test]
fn metadata_errors() {
    let mut b = Bytes::header(3, 0, 2);
    b.kv_u32("k", 1).kv_u32("k", 2);
    let msg = expect_err(
        &b,
        |e| matches!(e, FormatError::DuplicateKey(k) if k == "k"),
    );
    assert!(msg.contains("\"k\""), "{msg}");

    let mut b = Bytes::header(3, 0, 1);
    b.str("k").u32(13).u32(0);
    expect_err(&b, |e| {
        matches!(root(e), FormatError::UnknownValueType { id: 13, .. })
    });

    let mut b = Bytes::header(3, 0, 1);
    b.str("k").u32(ValueType::Bool.id()).raw(&[2]);
    expect_err(&b, |e| {
        matches!(root(e), FormatError::BadBool { byte: 2, .. })
    });

    let mut b = Bytes::header(3, 0, 1);
    b.str("k")
        .u32(ValueType::String.id())
        .u64(2)
        .raw(&[0xC3, 0x28]);
    expect_err(&b, |e| matches!(root(e), FormatError::InvalidUtf8 { .. }));

    let mut b = Bytes::header(3, 0, 1);
    b.str("k").u32(ValueType::String.id()).u64(u64::MAX);
    expect_err(&b, |e| matches!(root(e), FormatError::Truncated { .. }));

    // An array count larger than the rest of the file, checked before allocating.
    let mut b = Bytes::header(3, 0, 1);
    b.str("k")
        .u32(ValueType::Array.id())
        .u32(ValueType::U64.id())
        .u64(1 << 61);
    expect_err(&b, |e| matches!(root(e), FormatError::CountTooLarge { .. }));
    let mut b = Bytes::header(3, 0, 1);
    b.str("k")
        .u32(ValueType::Array.id())
        .u32(ValueType::String.id())
        .u64(u64::MAX / 4);
    expect_err(&b, |e| matches!(root(e), FormatError::CountTooLarge { .. }));

    // Arrays of one array each, nested one level too deep.
    let mut b = Bytes::header(3, 0, 1);
    b.str("k").u32(ValueType::Array.id());
    for _ in 0..MAX_ARRAY_DEPTH {
        b.u32(ValueType::Array.id()).u64(1);
    }
    b.u32(ValueType::U8.id()).u64(0);
    expect_err(&b, |e| matches!(root(e), FormatError::TooDeep { .. }));
}

#[test]
fn alignment() {
    for bad in [0u32, 3, 48] {
        let mut b = Bytes::header(3, 0, 1);
        b.kv_u32("general.alignment", bad);
        expect_err(&b, |e| matches!(e, FormatError::BadAlignment(_)));
    }
    let mut b = Bytes::header(3, 1, 1);
    b.kv_u32("general.alignment", 64)
        .tensor("t", &[8], GgmlType::F32.id(), 0);
    let n = b.0.len().next_multiple_of(64);
    b.0.resize(n + 32, 1);
    let g = b.parse().unwrap();
    assert_eq!((g.alignment(), g.data_offset()), (64, n as u64));
    // gguf-py and llama.cpp want u32, but a u64 is not ambiguous, so the reader takes it.
    let mut b = Bytes::header(3, 0, 1);
    b.str("general.alignment").u32(ValueType::U64.id()).u64(16);
    assert_eq!(b.parse().unwrap().alignment(), 16);
}

#[test]
fn tensor_errors() {
    let f32 = GgmlType::F32.id();
    let tensor = |ne: &[u64], ty: u32, offset: u64, data: usize| {
        let mut b = Bytes::header(3, 1, 0);
        b.tensor("t", ne, ty, offset).data(data);
        b
    };
    let msg = expect_err(&tensor(&[1, 1, 1, 1, 1], f32, 0, 4), |e| {
        *root(e) == FormatError::TooManyDims(5)
    });
    assert!(msg.contains("tensor \"t\""), "{msg}");
    expect_err(&tensor(&[4], 3_000, 0, 16), |e| {
        *root(e) == FormatError::UnknownType(3_000)
    });
    expect_err(&tensor(&[4], 4, 0, 16), |e| {
        *root(e) == FormatError::UnknownType(4)
    });
    expect_err(&tensor(&[33], GgmlType::Q8_0.id(), 0, 64), |e| {
        matches!(root(e), FormatError::BlockMisaligned { ne0: 33, .. })
    });
    expect_err(&tensor(&[1 << 40, 1 << 40], f32, 0, 4), |e| {
        matches!(root(e), FormatError::ElementOverflow { .. })
    });
    expect_err(&tensor(&[4], f32, 16, 64), |e| {
        matches!(root(e), FormatError::MisalignedOffset { offset: 16, .. })
    });
    expect_err(&tensor(&[4], f32, 0, 15), |e| {
        matches!(root(e), FormatError::DataPastEnd { .. })
    });
    expect_err(&tensor(&[4], f32, !31, 16), |e| {
        matches!(root(e), FormatError::DataPastEnd { .. })
    });
    assert!(tensor(&[4], f32, 0, 16).parse().is_ok());
    assert!(tensor(&[0, 7], f32, 0, 0).parse().is_ok());

    let mut b = Bytes::header(3, 2, 0);
    b.tensor("t", &[4], f32, 0)
        .tensor("t", &[4], f32, 32)
        .data(64);
    expect_err(
        &b,
        |e| matches!(e, FormatError::DuplicateTensor(n) if n == "t"),
    );

    let mut b = Bytes::header(3, 2, 0);
    b.tensor("a", &[16], f32, 0)
        .tensor("b", &[4], f32, 32)
        .data(64);
    let msg = expect_err(
        &b,
        |e| matches!(root(e), FormatError::Overlap { other } if other == "a"),
    );
    assert!(msg.contains("tensor \"b\""), "{msg}");
}

fn sample_writer() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "kimi-linear").unwrap();
    w.add_kv("n", 7u32).unwrap();
    w.add_kv(
        "nested",
        Array::Array(vec![Array::I8(vec![-1]), Array::String(vec!["é".into()])]),
    )
    .unwrap();
    w.add_tensor("a", &[32, 2], GgmlType::Q8_0).unwrap();
    w.add_tensor("b", &[3], GgmlType::F16).unwrap();
    w
}

#[test]
fn writer_round_trip_in_memory() {
    let mut out = sample_writer().write_to(Vec::new()).unwrap();
    assert_eq!(out.next_tensor().unwrap().name(), "a");
    out.write_tensor_data(&[1; 68]).unwrap();
    out.write_tensor_with(|w| {
        w.write_all(&[2; 4])?;
        w.write_all(&[3; 2])
    })
    .unwrap();
    let bytes = out.finish().unwrap();
    assert_eq!(bytes.len() % 32, 0);
    let g = Gguf::from_bytes(bytes).unwrap();
    assert_eq!(g.architecture(), Some("kimi-linear"));
    assert_eq!(g.get_u64("n"), Some(7));
    assert_eq!(
        g.get_arr("nested").unwrap().as_arrays().unwrap()[1]
            .as_strings()
            .unwrap(),
        ["é"]
    );
    assert_eq!(g.tensor_data("a").unwrap(), &[1; 68][..]);
    assert_eq!(g.tensor_data("b").unwrap(), &[2, 2, 2, 2, 3, 3][..]);
    assert_eq!(g.tensor("b").unwrap().offset(), 96);
    let e = g.tensor_data("c").unwrap_err().to_string();
    assert_eq!(e, "<memory>: no tensor named \"c\"");
}

#[test]
fn writer_checks_sizes_and_counts() {
    let mut out = sample_writer().write_to(Vec::new()).unwrap();
    let e = out.write_tensor_data(&[0; 67]).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::TensorSize {
                expected: 68,
                got: 67,
                ..
            }
        ),
        "{e}"
    );
    assert!(matches!(
        out.write_tensor_data(&[0; 68]),
        Err(GgufError::Poisoned { .. })
    ));

    let mut out = sample_writer().write_to(Vec::new()).unwrap();
    let e = out.write_tensor_data(&[0; 69]).unwrap_err();
    assert!(
        matches!(
            e,
            GgufError::TensorSize {
                expected: 68,
                got: 69,
                ..
            }
        ),
        "{e}"
    );

    let mut out = sample_writer().write_to(Vec::new()).unwrap();
    out.write_tensor_data(&[0; 68]).unwrap();
    assert!(matches!(
        out.finish(),
        Err(GgufError::MissingTensors {
            written: 1,
            declared: 2,
            ..
        })
    ));

    let mut out = sample_writer().write_to(Vec::new()).unwrap();
    out.write_tensors(|i, t, w| w.write_all(&vec![i as u8; t.n_bytes() as usize]))
        .unwrap();
    assert!(matches!(
        out.write_tensor_data(&[]),
        Err(GgufError::TooManyTensors { declared: 2, .. })
    ));
    assert!(out.finish().is_ok());
}

#[test]
fn writer_rejects_bad_declarations() {
    let mut w = sample_writer();
    assert!(matches!(
        w.add_kv("n", 1u8).unwrap_err().format_kind(),
        Some(FormatError::DuplicateKey(_))
    ));
    assert!(w.add_tensor("a", &[32], GgmlType::F32).is_err());
    assert!(w.add_tensor("x".repeat(64), &[32], GgmlType::F32).is_err());
    assert!(w.add_tensor("q", &[31], GgmlType::Q4_K).is_err());
    assert!(w.set_alignment(0).is_err());
    assert!(w.set_alignment(24).is_err());
    assert!(w.add_kv("general.alignment", 64u64).is_err());
    let mut deep = Array::U8(vec![]);
    for _ in 0..MAX_ARRAY_DEPTH {
        deep = Array::Array(vec![deep]);
    }
    assert!(w.add_kv("deep", deep).is_err());
}

#[test]
fn set_alignment_moves_offsets() {
    let mut w = sample_writer();
    w.set_alignment(128).unwrap();
    w.set_alignment(256).unwrap();
    let mut out = w.write_to(Vec::new()).unwrap();
    out.write_tensors(|_, t, w| w.write_all(&vec![9; t.n_bytes() as usize]))
        .unwrap();
    let g = Gguf::from_bytes(out.finish().unwrap()).unwrap();
    assert_eq!(g.alignment(), 256);
    assert_eq!(g.get("general.alignment"), Some(&Value::U32(256)));
    assert_eq!(
        g.metadata()
            .filter(|(k, _)| *k == "general.alignment")
            .count(),
        1
    );
    assert_eq!(g.tensor("b").unwrap().offset(), 256);
    assert_eq!(g.data_offset() % 256, 0);
}

#[test]
fn file_writer_renames_on_finish_and_cleans_up_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("m.gguf");
    let listing = || {
        let mut v: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        v.sort();
        v
    };

    let mut out = sample_writer().create(&target).unwrap();
    assert!(out.temp_path().exists());
    out.write_tensor_data(&[0; 68]).unwrap();
    drop(out);
    assert!(listing().is_empty(), "{:?}", listing());

    let out = sample_writer().create(&target).unwrap();
    assert!(out.finish().is_err());
    assert!(listing().is_empty(), "{:?}", listing());

    let mut out = sample_writer().create(&target).unwrap();
    out.write_tensors(|_, t, w| w.write_all(&vec![5; t.n_bytes() as usize]))
        .unwrap();
    out.finish().unwrap();
    assert_eq!(listing(), ["m.gguf"]);
    let g = Gguf::open(&target).unwrap();
    assert_eq!(g.path(), target.display().to_string());
    assert_eq!(g.tensor_data("b").unwrap(), &[5; 6][..]);

    let e = Gguf::open(dir.path().join("missing.gguf"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.gguf"), "{e}");
    std::fs::write(&target, b"").unwrap();
    let e = Gguf::open(&target).unwrap_err().to_string();
    assert!(e.contains("m.gguf") && e.contains("truncated"), "{e}");
}
