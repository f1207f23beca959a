// Row-wise and element-wise f32 kernels. Every entry point uses a subset of the same five
// bindings; the host binds exactly the subset each one declares (see kernels.rs). The row
// kernels reduce through `sum_all` and `argmax_all` of reduce_subgroup.wgsl or
// reduce_workgroup.wgsl.

struct Params {
    n: u32,
    t: u32,
    eps: f32,
    extra: u32,
}

@group(0) @binding(0) var<storage, read> src0: array<f32>;
@group(0) @binding(1) var<storage, read> src1: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read_write> acc: array<f32>;
// The norms' output row in 8 bits (q8_half.wgsl), where p.extra is 1.
@group(0) @binding(5) var<storage, read_write> q8_row: array<vec4<u32>>;

const WG: u32 = 256u;
// Values of a row each thread holds in registers: rows up to WG · VPT values are read once,
// every load before the first store (a store to a read_write binding may alias the others,
// so loads after it wait for it), reduced once, written once. Longer rows take the loops.
const VPT: u32 = 16u;

fn lin_id(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

// A row's normed values where the norm writes them in 8 bits too (q8_half.wgsl).
var<workgroup> q8_vals: array<f32, WG * VPT>;

// Where p.extra is 1 (the host sets it for one row of a multiple of 32 values): the normed row
// that the threads hold (`o`, this thread's values, WG apart) also in 8 bits, for the decode
// products that read it so (x_q8_global.wgsl) instead of staging it in every workgroup.
fn store_row_q8(li: u32, o: array<f32, VPT>) {
    if p.extra == 0u {
        return;
    }
    for (var k = 0u; k < VPT; k++) {
        let i = li + k * WG;
        if i < p.n {
            q8_vals[i] = o[k];
        }
    }
    workgroupBarrier();
    for (var h = li; h < p.n / 16u; h += WG) {
        store_q8_half(16u * h, 16u * h);
    }
}

// dst = src1 ⊙ src0 / sqrt(mean(src0²) + eps), one workgroup per row of n.
@compute @workgroup_size(256)
fn rms_norm(th: Thread) {
    let row = lin_id(th.wid, th.nwg);
    if row >= p.t {
        return;
    }
    let b = row * p.n;
    if p.n <= WG * VPT {
        var x: array<f32, VPT>;
        var w: array<f32, VPT>;
        for (var k = 0u; k < VPT; k++) {
            let i = th.li + k * WG;
            if i < p.n {
                x[k] = src0[b + i];
                w[k] = src1[i];
            }
        }
        var ss = 0.0;
        for (var k = 0u; k < VPT; k++) {
            ss += x[k] * x[k];
        }
        let inv = 1.0 / sqrt(sum_all(ss, th) / f32(p.n) + p.eps);
        var o: array<f32, VPT>;
        for (var k = 0u; k < VPT; k++) {
            let i = th.li + k * WG;
            o[k] = w[k] * (x[k] * inv);
            if i < p.n {
                dst[b + i] = o[k];
            }
        }
        store_row_q8(th.li, o);
        return;
    }
    var ss = 0.0;
    for (var i = th.li; i < p.n; i += WG) {
        ss += src0[b + i] * src0[b + i];
    }
    let inv = 1.0 / sqrt(sum_all(ss, th) / f32(p.n) + p.eps);
    for (var i = th.li; i < p.n; i += WG) {
        dst[b + i] = src1[i] * (src0[b + i] * inv);
    }
}

// acc ← acc + src0, then dst = src1 ⊙ acc / sqrt(mean(acc²) + eps), one workgroup per row of
// n: the residual add and the next norm in one pass.
@compute @workgroup_size(256)
fn add_rms_norm(th: Thread) {
    let row = lin_id(th.wid, th.nwg);
    if row >= p.t {
        return;
    }
    let b = row * p.n;
    if p.n <= WG * VPT {
        var a: array<f32, VPT>;
        var x: array<f32, VPT>;
        var w: array<f32, VPT>;
        for (var k = 0u; k < VPT; k++) {
            let i = th.li + k * WG;
            if i < p.n {
                a[k] = acc[b + i];
                x[k] = src0[b + i];
                w[k] = src1[i];
            }
        }
        var ss = 0.0;
        for (var k = 0u; k < VPT; k++) {
            let i = th.li + k * WG;
            let v = a[k] + x[k];
            a[k] = v;
            ss += v * v;
            if i < p.n {
                acc[b + i] = v;
            }
        }
        let inv = 1.0 / sqrt(sum_all(ss, th) / f32(p.n) + p.eps);
        var o: array<f32, VPT>;
        for (var k = 0u; k < VPT; k++) {
            let i = th.li + k * WG;
            o[k] = w[k] * (a[k] * inv);
            if i < p.n {
                dst[b + i] = o[k];
            }
        }
        store_row_q8(th.li, o);
        return;
    }
    var ss = 0.0;
    for (var i = th.li; i < p.n; i += WG) {
        let v = acc[b + i] + src0[b + i];
        acc[b + i] = v;
        ss += v * v;
    }
    let inv = 1.0 / sqrt(sum_all(ss, th) / f32(p.n) + p.eps);
    for (var i = th.li; i < p.n; i += WG) {
        dst[b + i] = src1[i] * (acc[b + i] * inv);
    }
}

// In place per head of n: dst ← src1 ⊙ dst / sqrt(mean(dst²) + eps) ⊙ sigmoid(src0).
@compute @workgroup_size(256)
fn gated_rms_norm(th: Thread) {
    let row = lin_id(th.wid, th.nwg);
    if row >= p.t {
        return;
    }
    let b = row * p.n;
    if p.n <= WG * VPT {
        var o: array<f32, VPT>;
        var g: array<f32, VPT>;
        var w: array<f32, VPT>;
        for (var k = 0u; k < VPT; k++) {
            let i = th.li + k * WG;
            if i < p.n {
                o[k] = dst[b + i];
                g[k] = src0[b + i];
                w[k] = src1[i];
            }
        }
        var ss = 0.0;
        for (var k = 0u; k < VPT; k++) {
            ss += o[k] * o[k];
        }
        let inv = 1.0 / sqrt(sum_all(ss, th) / f32(p.n) + p.eps);
        for (var k = 0u; k < VPT; k++) {
            let i = th.li + k * WG;
            if i < p.n {
                dst[b + i] = w[k] * (o[k] * inv) * sigmoid(g[k]);
            }
        }
        return;
    }
    var ss = 0.0;
    for (var i = th.li; i < p.n; i += WG) {
        ss += dst[b + i] * dst[b + i];
    }
    let inv = 1.0 / sqrt(sum_all(ss, th) / f32(p.n) + p.eps);
    for (var i = th.li; i < p.n; i += WG) {
        dst[b + i] = src1[i] * (dst[b + i] * inv) * sigmoid(src0[b + i]);
    }
}

// dst ← silu(dst) ⊙ src0 over n values.
@compute @workgroup_size(256)
fn swiglu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.n {
        return;
    }
    let g = dst[i];
    dst[i] = g / (1.0 + exp(-g)) * src0[i];
}

// Two SwiGLUs in one dispatch (the routed experts' and the shared expert's): dst ← silu(dst) ⊙
// src0 over the first n values, acc ← silu(acc) ⊙ src1 over the next `extra`.
@compute @workgroup_size(256)
fn swiglu_pair(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i < p.n {
        let g = dst[i];
        dst[i] = g / (1.0 + exp(-g)) * src0[i];
    } else if i - p.n < p.extra {
        let j = i - p.n;
        let g = acc[j];
        acc[j] = g / (1.0 + exp(-g)) * src1[j];
    }
}

// dst ← dst + src0 over n values.
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.n {
        return;
    }
    dst[i] = dst[i] + src0[i];
}

// dst ← the sum of p.t slices of n values each, src0[s · n + i] for slice s, added in slice
// order (the partial products of `matmul_split`).
@compute @workgroup_size(256)
fn sum_slices(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.n {
        return;
    }
    var s = 0.0;
    for (var k = 0u; k < p.t; k++) {
        s += src0[k * p.n + i];
    }
    dst[i] = s;
}

// The largest of values lo..hi of row b (the first on ties; NaN never wins), VPT values per
// thread loaded in one batch, and its index within the row.
fn row_argmax(b: u32, lo: u32, hi: u32, th: Thread) -> Best {
    var best = lo + th.li;
    var bv = -3.4028235e38;
    for (var i0 = lo; i0 < hi; i0 += WG * VPT) {
        var v: array<f32, VPT>;
        for (var k = 0u; k < VPT; k++) {
            let i = i0 + th.li + k * WG;
            v[k] = bv;
            if i < hi {
                v[k] = src0[b + i];
            }
        }
        for (var k = 0u; k < VPT; k++) {
            if v[k] > bv {
                bv = v[k];
                best = i0 + th.li + k * WG;
            }
        }
    }
    return argmax_all(bv, best, th);
}

// dst[row] = index of the largest of the row's n values (the first on ties; NaN never wins),
// as f32: exact below 2^24, far above any vocabulary. One workgroup per row.
@compute @workgroup_size(256)
fn argmax(th: Thread) {
    let row = lin_id(th.wid, th.nwg);
    if row >= p.t {
        return;
    }
    let m = row_argmax(row * p.n, 0u, p.n, th);
    if th.li == 0u {
        dst[row] = f32(m.i);
    }
}

// Long rows (a vocabulary's logits) in two dispatches, so that every SM reads a part: first
// one workgroup per WG · VPT values of a row, each writing its (largest, index as f32) to dst
// [row, extra chunks, 2]; then `argmax_merge`.
@compute @workgroup_size(256)
fn argmax_part(th: Thread) {
    let wg = lin_id(th.wid, th.nwg);
    let row = wg / p.extra;
    if row >= p.t {
        return;
    }
    let lo = (wg % p.extra) * WG * VPT;
    let m = row_argmax(row * p.n, lo, min(lo + WG * VPT, p.n), th);
    if th.li == 0u {
        dst[2u * wg] = m.v;
        dst[2u * wg + 1u] = f32(m.i);
    }
}

// dst[row] = the index of the largest of the row's n (largest, index) pairs that argmax_part
// wrote (the lowest index on ties). One workgroup per row.
@compute @workgroup_size(256)
fn argmax_merge(th: Thread) {
    let row = lin_id(th.wid, th.nwg);
    if row >= p.t {
        return;
    }
    let b = 2u * row * p.n;
    var bv = -3.4028235e38;
    var bi = 0xffffffffu;
    for (var j = th.li; j < p.n; j += WG) {
        let v = src0[b + 2u * j];
        let i = u32(src0[b + 2u * j + 1u]);
        if v > bv || (v == bv && i < bi) {
            bv = v;
            bi = i;
        }
    }
    let m = argmax_all(bv, bi, th);
    if th.li == 0u {
        dst[row] = f32(m.i);
    }
}

// A row whose producer left out its norm's scale (add_norm_rows.wgsl), for a reader that
// does not apply it: dst (p.n values) and, where p.extra is 1, the scales of its 8-bit copy in
// q8_row times 1 / sqrt(Σ src0 / n + eps), src0 holding the p.t sums of squares the producer
// wrote. One workgroup.
@compute @workgroup_size(256)
fn norm_settle(th: Thread) {
    var ss = 0.0;
    for (var i = th.li; i < p.t; i += WG) {
        ss += src0[i];
    }
    let inv = 1.0 / sqrt(sum_all(ss, th) / f32(p.n) + p.eps);
    for (var i = th.li; i < p.n; i += WG) {
        dst[i] *= inv;
    }
    if p.extra == 1u {
        for (var g = th.li; g < p.n / 32u; g += WG) {
            let s = bitcast<vec4<f32>>(q8_row[3u * g + 2u]) * inv;
            q8_row[3u * g + 2u] = bitcast<vec4<u32>>(s);
        }
    }
}
