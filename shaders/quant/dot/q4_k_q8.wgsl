// Q4_K decode products on integer dot products, against the activation row in 8 bits that
// x_q8.wgsl staged in workgroup memory or x_q8_global.wgsl reads from memory (each file's
// `unit_x` gives a unit its activations). Units, passes and loads as dot/q4_k.wgsl; per unit
// the 16 weight bytes are 32 nibbles: the low ones of a word pair with 4 staged activations
// of sub-block 2 (u % 8 / 2), the high ones with the same 4 of the next sub-block, one
// dot4I8Packed each.
// Σ (d·sc·q − dmin·m)·x ≈ d·sc·dx·Σ q·xq − dmin·m·dx·Σ xq over the unit's 16 values.
const PD: u32 = 32u;

// What unit u's block header `h` gives its values: d and dmin ([0]), and the scale and min of
// the unit's two sub-blocks ([1] for the low nibbles, [2] for the high). An array, not a
// struct: kernels of several weights hold a renamed copy of this file per weight.
fn unit_scales(h: vec4<u32>, u: u32) -> array<vec2<f32>, 3> {
    let pair = (u % 8u) / 2u;
    return array<vec2<f32>, 3>(
        unpack2x16float(h.x),
        k4_scale_min(h, 2u * pair),
        k4_scale_min(h, 2u * pair + 1u),
    );
}

// One unit's 16 weight bytes `q` (block header `h`) · its staged activations.
fn unit_mul(h: vec4<u32>, q: vec4<u32>, u: u32, x: UnitX) -> f32 {
    let sc = unit_scales(h, u);
    var lo = 0;
    var hi = 0;
    for (var j = 0u; j < 4u; j++) {
        lo += dot4I8Packed(q[j] & 0x0f0f0f0fu, x.lo[j]);
        hi += dot4I8Packed((q[j] >> 4u) & 0x0f0f0f0fu, x.hi[j]);
    }
    return sc[0].x * (sc[1].x * x.d.x * f32(lo) + sc[2].x * x.d.y * f32(hi))
        - sc[0].y * (sc[1].y * x.sum.x + sc[2].y * x.sum.y);
}

// The block header and the 16 bytes of unit u of the row from quad r0: what `unit_mul` reads,
// for kernels that issue several rows' loads before their first multiply (moe_down_units.wgsl).
fn unit_load(r0: u32, u: u32) -> array<vec4<u32>, 2> {
    let b = r0 + (u / 8u) * 9u;
    return array<vec4<u32>, 2>(wq(b), wq(b + 1u + u % 8u));
}

// The block header and both units' 16 bytes of sub-block pair u / 2 (u even) of the row from
// quad r0: what `unit_mul2` reads, for kernels that issue several rows' loads before their
// first multiply.
fn unit_load2(r0: u32, u: u32) -> array<vec4<u32>, 3> {
    let b = r0 + (u / 8u) * 9u;
    return array<vec4<u32>, 3>(wq(b), wq(b + 1u + u % 8u), wq(b + 2u + u % 8u));
}

// Units u and u + 1 (u even: both halves of one sub-block pair's 32 bytes, block header `h`)
// · their activations: one header and one pair of scales for 64 weights, where `unit_mul`
// extracts them for each 32.
fn unit_mul2(h: vec4<u32>, qa: vec4<u32>, qb: vec4<u32>, u: u32, xa: UnitX, xb: UnitX) -> f32 {
    let sc = unit_scales(h, u);
    var lo_a = 0;
    var hi_a = 0;
    var lo_b = 0;
    var hi_b = 0;
    for (var j = 0u; j < 4u; j++) {
        lo_a += dot4I8Packed(qa[j] & 0x0f0f0f0fu, xa.lo[j]);
        hi_a += dot4I8Packed((qa[j] >> 4u) & 0x0f0f0f0fu, xa.hi[j]);
        lo_b += dot4I8Packed(qb[j] & 0x0f0f0f0fu, xb.lo[j]);
        hi_b += dot4I8Packed((qb[j] >> 4u) & 0x0f0f0f0fu, xb.hi[j]);
    }
    let lo = xa.d.x * f32(lo_a) + xb.d.x * f32(lo_b);
    let hi = xa.d.y * f32(hi_a) + xb.d.y * f32(hi_b);
    return sc[0].x * (sc[1].x * lo + sc[2].x * hi)
        - sc[0].y * (sc[1].y * (xa.sum.x + xb.sum.x) + sc[2].y * (xa.sum.y + xb.sum.y));
}

// This lane's share of rows klo..khi (of RT, row_bytes() apart from byte rb on) · the staged
// activations of the row that x holds from vec4 index xb0 (where stage_x read it, or one of
// the rows stage_rows read). A lane takes both units of a sub-block pair at a time
// (`unit_mul2`), TPR pairs apart; UN does not apply. The walk of dot/part_pairs_q8.wgsl
// (Q6_K's, Q3_K's), counted in quads: Q4_K through that one, in bytes, decoded 0.2-0.4%
// slower on the H100 (tg128 414.7-416.0 against 416.5-416.8 tok/s in three alternated rounds).
fn rows_dot(rb: u32, klo: u32, khi: u32, xb0: u32, lane: u32) -> vec4<f32> {
    let pairs = (p.cols / QK) * 4u;
    // In quads: rows and blocks are multiples of 16 bytes.
    let stride = row_bytes() >> 4u;
    let r0 = rb >> 4u;
    // The row's first staged group (32 values, 8 vec4s).
    let g0 = (xb0 - x_base) / 8u;
    var acc = vec4<f32>(0.0);
    for (var v = lane; v < pairs; v += TPR) {
        let u = 2u * v;
        let xa = unit_x(u, g0);
        let xb = unit_x(u + 1u, g0);
        for (var k = 0u; k < RT; k++) {
            if k >= klo && k < khi {
                let b = r0 + (k - klo) * stride + (u / 8u) * 9u;
                let qa = wq(b + 1u + u % 8u);
                let qb = wq(b + 2u + u % 8u);
                acc[k] += unit_mul2(wq(b), qa, qb, u, xa, xb);
            }
        }
    }
    return acc;
}
