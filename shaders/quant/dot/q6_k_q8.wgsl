// Q6_K decode products on integer dot products, against the activation row in 8 bits that
// x_q8.wgsl staged in workgroup memory or x_q8_global.wgsl reads from memory, through the same
// `unit_x` as dot/q4_k_q8.wgsl. A lane takes two 32-value parts of a block at a time (parts
// 2 pair and 2 pair + 1, 64 values): Q4_K's unit pair u, u + 1 (u = 8 block + 2 pair) covers
// the same two groups of activations, `unit_x(u)` their first halves (the lo part's in .lo,
// the hi part's in .hi) and `unit_x(u + 1)` their second. Each 16-value half of a part has its
// own scale in Q6_K as in the 8-bit row, so
// Σ d·sc·(q − 32)·x ≈ d·sc·(dx·Σ q·xq − 32·dx·Σ xq), with q the stored 6-bit value (0..63,
// a valid signed byte for dot4I8Packed) and dx·Σ xq the half's sum that the row carries.
const PD: u32 = 32u;

// The 16 bytes at byte offset `off`, whatever its alignment: five word loads, where four
// `u32at` would make eight. Never reads past a Q6_K block's end for the ql and qh runs it serves
// (the scales follow them).
fn bytes16at(off: u32) -> vec4<u32> {
    let i = off >> 2u;
    let a = vec4<u32>(wd(i), wd(i + 1u), wd(i + 2u), wd(i + 3u));
    let sh = (off & 3u) * 8u;
    if sh == 0u {
        return a;
    }
    let b = vec4<u32>(a.y, a.z, a.w, wd(i + 4u));
    return (a >> vec4<u32>(sh)) | (b << vec4<u32>(32u - sh));
}

// Σ q·xq over half h (16 values) of the part at `at` (q6k_part) against its activation words.
fn q6k_half_dot(at: vec4<u32>, h: u32, xw: vec4<u32>) -> i32 {
    let lo = (bytes16at(at.x + 16u * h) >> vec4<u32>(at.z)) & vec4<u32>(0x0f0f0f0fu);
    let hi = (bytes16at(at.y + 16u * h) >> vec4<u32>(at.w)) & vec4<u32>(0x03030303u);
    let q = lo | (hi << vec4<u32>(4u));
    return dot4I8Packed(q.x, xw.x) + dot4I8Packed(q.y, xw.y) + dot4I8Packed(q.z, xw.z)
        + dot4I8Packed(q.w, xw.w);
}

// Parts p and p + 1 (p even) of the block at byte wb · their activations: xa the first halves
// (part p's in .lo, part p + 1's in .hi), xb the second.
fn part_pair_dot(wb: u32, p: u32, xa: UnitX, xb: UnitX) -> f32 {
    let a0 = q6k_part(wb, p);
    let a1 = q6k_part(wb, p + 1u);
    // The scales of sub-blocks 2p .. 2p + 3 (signed bytes): parts p and p + 1, two halves each.
    let sc = vec4<f32>(b4i(wb + 192u + 2u * p));
    let s = vec4<f32>(
        xa.d.x * f32(q6k_half_dot(a0, 0u, xa.lo)) - 32.0 * xa.sum.x,
        xb.d.x * f32(q6k_half_dot(a0, 1u, xb.lo)) - 32.0 * xb.sum.x,
        xa.d.y * f32(q6k_half_dot(a1, 0u, xa.hi)) - 32.0 * xa.sum.y,
        xb.d.y * f32(q6k_half_dot(a1, 1u, xb.hi)) - 32.0 * xb.sum.y,
    );
    return f16at(wb + 208u) * dot(sc, s);
}

// This lane's share of rows klo..khi (of RT, row_bytes() apart from byte rb on) · the staged
// activations of the row that x holds from vec4 index xb0: the row's part pairs lane,
// lane + TPR, ...
fn rows_dot(rb: u32, klo: u32, khi: u32, xb0: u32, lane: u32) -> vec4<f32> {
    let pairs = (p.cols / QK) * 4u;
    let stride = row_bytes();
    // The row's first staged group (32 values).
    let g0 = (xb0 - x_base) / 8u;
    var acc = vec4<f32>(0.0);
    for (var v = lane; v < pairs; v += TPR) {
        let u = 2u * v;
        let xa = unit_x(u, g0);
        let xb = unit_x(u + 1u, g0);
        for (var k = 0u; k < RT; k++) {
            if k >= klo && k < khi {
                let wb = rb + (k - klo) * stride + (u / 8u) * BLOCK_BYTES;
                acc[k] += part_pair_dot(wb, u % 8u, xa, xb);
            }
        }
    }
    return acc;
}
