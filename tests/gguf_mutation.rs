//! Mutation test: thousands of truncations, bit flips and overwrites of a valid file. Each must
//! give an error or a valid parse: never a panic, a hang, or a large allocation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kiln::gguf::{Array, Gguf, GgufWriter, Value};
use kiln::quant::GgmlType;

/// Records the largest single allocation, to catch a parser trusting a count from the file.
struct MaxAlloc;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for MaxAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: MaxAlloc = MaxAlloc;

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_kv("general.architecture", "kimi-linear").unwrap();
    w.add_kv("kimi.block_count", 27u32).unwrap();
    w.add_kv("kimi.rope.freq_base", 50000.0f32).unwrap();
    w.add_kv("flag", true).unwrap();
    w.add_kv("i8", -3i8).unwrap();
    w.add_kv("u64", 1u64 << 40).unwrap();
    w.add_kv("f64", 0.25f64).unwrap();
    w.add_kv("tokens", vec!["<s>", "hé", "", "日本語"]).unwrap();
    w.add_kv("scores", vec![0.5f32, -1.0, 2.0]).unwrap();
    w.add_kv("types", vec![1i32, 2, 3, 6]).unwrap();
    w.add_kv("bools", vec![true, false]).unwrap();
    w.add_kv(
        "nested",
        Array::Array(vec![
            Array::U16(vec![1, 2]),
            Array::String(vec!["x".into()]),
            Array::Array(vec![]),
        ]),
    )
    .unwrap();
    w.add_kv("empty", Array::I64(vec![])).unwrap();
    w.add_tensor("token_embd.weight", &[32, 4], GgmlType::Q8_0)
        .unwrap();
    w.add_tensor("output_norm.weight", &[8], GgmlType::F32)
        .unwrap();
    w.add_tensor("blk.0.attn_q.weight", &[4, 2, 2], GgmlType::F16)
        .unwrap();
    let mut out = w.write_to(Vec::new()).unwrap();
    out.write_tensors(|i, t, w| w.write_all(&vec![i as u8 + 1; t.n_bytes() as usize]))
        .unwrap();
    out.finish().unwrap()
}

/// Values that make lengths, counts, type ids and offsets lie in interesting ways.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    9,
    12,
    13,
    31,
    32,
    33,
    64,
    255,
    256,
    0x7F,
    0x80,
    0xFF,
    0x7FFF,
    0xFFFF,
    0x7FFF_FFFF,
    0x8000_0000,
    0xFFFF_FFFF,
    1 << 32,
    1 << 40,
    0x7FFF_FFFF_FFFF_FFFF,
    0x8000_0000_0000_0000,
    u64::MAX,
    u64::MAX - 31,
];

/// Parses `bytes`, checks that a success is self-consistent, and fails the test with the
/// mutation's description on a panic.
fn check(bytes: Vec<u8>, what: &dyn Fn() -> String) -> bool {
    let len = bytes.len() as u64;
    let result = std::panic::catch_unwind(move || match Gguf::from_bytes(bytes) {
        Ok(g) => {
            assert!(g.alignment().is_power_of_two());
            for t in g.tensors() {
                assert_eq!(t.offset() % g.alignment(), 0);
                assert!(g.data_offset() + t.offset() + t.n_bytes() <= len);
                assert_eq!(g.tensor_bytes(t).len() as u64, t.n_bytes());
            }
            true
        }
        Err(e) => {
            assert!(e.to_string().starts_with("<memory>: "), "{e}");
            false
        }
    });
    match result {
        Ok(ok) => ok,
        Err(_) => panic!("parser panicked on {}", what()),
    }
}

#[test]
fn mutations_never_panic_hang_or_allocate_much() {
    let base = valid_file();
    assert!(Gguf::from_bytes(base.clone()).is_ok());
    let start = Instant::now();
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    let (mut cases, mut oks) = (0usize, 0usize);
    let mut count = |ok: bool| {
        cases += 1;
        oks += usize::from(ok);
    };

    for cut in 0..base.len() {
        count(check(base[..cut].to_vec(), &|| {
            format!("truncation to {cut} bytes")
        }));
    }
    for _ in 0..8000 {
        let (pos, bit) = (rng.below(base.len()), rng.below(8));
        let mut b = base.clone();
        b[pos] ^= 1 << bit;
        count(check(b, &|| format!("bit {bit} flipped at {pos}")));
    }
    for _ in 0..8000 {
        let (pos, val) = (
            rng.below(base.len()),
            INTERESTING[rng.below(INTERESTING.len())],
        );
        let width = [1, 2, 4, 8][rng.below(4)];
        let mut b = base.clone();
        let end = (pos + width).min(b.len());
        b[pos..end].copy_from_slice(&val.to_le_bytes()[..end - pos]);
        count(check(b, &|| {
            format!("{width}-byte write of {val:#x} at {pos}")
        }));
    }
    for _ in 0..6000 {
        let mut b = base.clone();
        let mut log = Vec::new();
        for _ in 0..1 + rng.below(4) {
            let pos = rng.below(b.len());
            match rng.below(3) {
                0 => {
                    let v = rng.next() as u8;
                    b[pos] = v;
                    log.push(format!("byte {v:#x} at {pos}"));
                }
                1 => {
                    let val = INTERESTING[rng.below(INTERESTING.len())];
                    let end = (pos + 8).min(b.len());
                    b[pos..end].copy_from_slice(&val.to_le_bytes()[..end - pos]);
                    log.push(format!("u64 {val:#x} at {pos}"));
                }
                _ => {
                    b.truncate(pos.max(1));
                    log.push(format!("truncated to {}", pos.max(1)));
                }
            }
        }
        count(check(b, &|| log.join(", ")));
    }

    let largest = LARGEST.load(Ordering::Relaxed);
    eprintln!(
        "{cases} mutations of a {}-byte file: {oks} parsed, {} rejected, in {:?}; largest allocation {largest} bytes",
        base.len(),
        cases - oks,
        start.elapsed()
    );
    assert!(cases >= 10_000);
    // The parser may allocate a few times the file size; anything near a megabyte means it
    // trusted a count from the file.
    assert!(
        largest < 1 << 20,
        "largest single allocation was {largest} bytes"
    );
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "too slow: {:?}",
        start.elapsed()
    );
}

/// Every declared count in the header pushed to extremes, one at a time.
#[test]
fn header_counts_at_extremes() {
    let base = valid_file();
    // tensor count at 8, metadata count at 16
    for pos in [8usize, 16] {
        for &val in INTERESTING {
            let mut b = base.clone();
            b[pos..pos + 8].copy_from_slice(&val.to_le_bytes());
            check(b, &|| format!("count {val:#x} at {pos}"));
        }
    }
    let g = Gguf::from_bytes(base).unwrap();
    assert_eq!(g.get("kimi.block_count"), Some(&Value::U32(27)));
}
