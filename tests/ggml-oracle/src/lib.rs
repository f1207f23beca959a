//! ggml itself as a test oracle: its reference quantizers, dequantizers and CPU dot products,
//! reached through llama-cpp-sys-2's vendored ggml. Dev-only; kiln never links this at run time.
//!
//! Types are passed by their ggml id (`GgmlType::id()` on the kiln side) so this crate does not
//! depend on kiln and its slow C++ build never reruns when kiln changes.

use llama_cpp_sys_2 as sys;
use std::os::raw::{c_int, c_void};
use std::sync::Once;

/// `struct ggml_type_traits_cpu` from ggml-cpu.h, which the bindings do not include.
#[repr(C)]
struct TypeTraitsCpu {
    from_float: Option<unsafe extern "C" fn(*const f32, *mut c_void, i64)>,
    vec_dot: Option<
        unsafe extern "C" fn(
            c_int,
            *mut f32,
            usize,
            *const c_void,
            usize,
            *const c_void,
            usize,
            c_int,
        ),
    >,
    vec_dot_type: u32,
    nrows: i64,
}

unsafe extern "C" {
    fn ggml_get_type_traits_cpu(ty: u32) -> *const TypeTraitsCpu;
    fn ggml_cpu_init();
}

static INIT: Once = Once::new();

fn init() {
    // ggml fills its f16 lookup tables here; every entry point below needs them.
    INIT.call_once(|| unsafe { ggml_cpu_init() });
}

fn traits(ty: u32) -> &'static sys::ggml_type_traits {
    init();
    // SAFETY: ggml returns a pointer into its static type table for every id below GGML_TYPE_COUNT.
    assert!(ty < sys::GGML_TYPE_COUNT, "ggml type id {ty} out of range");
    unsafe { &*sys::ggml_get_type_traits(ty as _) }
}

fn cpu_traits(ty: u32) -> &'static TypeTraitsCpu {
    init();
    assert!(ty < sys::GGML_TYPE_COUNT, "ggml type id {ty} out of range");
    // SAFETY: as above, a pointer into ggml-cpu's static table.
    unsafe { &*ggml_get_type_traits_cpu(ty) }
}

/// Elements per block of type `ty`.
pub fn block_size(ty: u32) -> usize {
    traits(ty).blck_size as usize
}

/// Bytes per block of type `ty`.
pub fn type_size(ty: u32) -> usize {
    traits(ty).type_size
}

/// Bytes of `n` elements of type `ty`.
pub fn row_size(ty: u32, n: usize) -> usize {
    n / block_size(ty) * type_size(ty)
}

/// Whether ggml refuses to quantize `ty` without importance weights.
pub fn requires_imatrix(ty: u32) -> bool {
    init();
    unsafe { sys::ggml_quantize_requires_imatrix(ty as _) }
}

/// `ggml_quantize_chunk` over `src` (rows of `n_per_row`), with optional importance weights.
pub fn quantize_chunk(ty: u32, src: &[f32], n_per_row: usize, imatrix: Option<&[f32]>) -> Vec<u8> {
    assert!(n_per_row > 0 && src.len().is_multiple_of(n_per_row));
    if let Some(w) = imatrix {
        assert_eq!(
            w.len(),
            n_per_row,
            "ggml takes one importance weight per column"
        );
    }
    let nrows = src.len() / n_per_row;
    let mut dst = vec![0u8; nrows * row_size(ty, n_per_row)];
    let written = unsafe {
        sys::ggml_quantize_chunk(
            ty as _,
            src.as_ptr(),
            dst.as_mut_ptr().cast(),
            0,
            nrows as i64,
            n_per_row as i64,
            imatrix.map_or(std::ptr::null(), |w| w.as_ptr()),
        )
    };
    assert_eq!(written, dst.len());
    dst
}

/// The type's `from_float_ref` (the reference quantizer; the only entry point for Q8_K).
pub fn from_float_ref(ty: u32, src: &[f32]) -> Vec<u8> {
    let f = traits(ty)
        .from_float_ref
        .expect("type has no from_float_ref");
    let mut dst = vec![0u8; row_size(ty, src.len())];
    unsafe { f(src.as_ptr(), dst.as_mut_ptr().cast(), src.len() as i64) };
    dst
}

/// The type's `to_float`: dequantizes `n` elements held in `bytes`.
pub fn to_float(ty: u32, bytes: &[u8], n: usize) -> Vec<f32> {
    assert_eq!(bytes.len(), row_size(ty, n));
    let f = traits(ty).to_float.expect("type has no to_float");
    let mut out = vec![0f32; n];
    unsafe { f(bytes.as_ptr().cast(), out.as_mut_ptr(), n as i64) };
    out
}

/// The ggml id of the activation type `ty`'s CPU dot product takes.
pub fn vec_dot_type(ty: u32) -> u32 {
    cpu_traits(ty).vec_dot_type
}

/// ggml-cpu's quantizer into the dot type (may use SIMD; equal to the reference in value).
pub fn cpu_from_float(ty: u32, src: &[f32]) -> Vec<u8> {
    let f = cpu_traits(ty)
        .from_float
        .expect("type has no cpu from_float");
    let mut dst = vec![0u8; row_size(ty, src.len())];
    unsafe { f(src.as_ptr(), dst.as_mut_ptr().cast(), src.len() as i64) };
    dst
}

/// ggml-cpu's dot product of `n` elements: `w` of type `ty`, `x` of `vec_dot_type(ty)`.
pub fn vec_dot(ty: u32, n: usize, w: &[u8], x: &[u8]) -> f32 {
    let t = cpu_traits(ty);
    assert_eq!(w.len(), row_size(ty, n));
    assert_eq!(x.len(), row_size(t.vec_dot_type, n));
    let f = t.vec_dot.expect("type has no cpu vec_dot");
    let mut s = 0f32;
    unsafe {
        f(
            n as c_int,
            &mut s,
            0,
            w.as_ptr().cast(),
            0,
            x.as_ptr().cast(),
            0,
            1,
        )
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_round_trip_through_ggml() {
        const Q8_0: u32 = 8;
        let x: Vec<f32> = (0..64).map(|i| (i as f32 - 31.5) / 8.0).collect();
        let q = quantize_chunk(Q8_0, &x, 64, None);
        assert_eq!(q.len(), 68);
        let y = to_float(Q8_0, &q, 64);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 0.02, "{a} vs {b}");
        }
        assert_eq!(vec_dot_type(Q8_0), Q8_0);
        let d = vec_dot(Q8_0, 64, &q, &q);
        let exact: f32 = y.iter().map(|v| v * v).sum();
        assert!((d - exact).abs() < 1e-2 * exact.abs(), "{d} vs {exact}");
    }
}
