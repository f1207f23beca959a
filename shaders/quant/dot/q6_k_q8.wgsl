// Q6_K decode products on integer dot products, against the activation row in 8 bits: the
// `part_pair_dot` that dot/part_pairs_q8.wgsl's `rows_dot` calls. Each 16-value half of a part
// has its own scale in Q6_K as in the 8-bit row, so
// Σ d·sc·(q − 32)·x ≈ d·sc·(dx·Σ q·xq − 32·dx·Σ xq), with q the stored 6-bit value (0..63,
// a valid signed byte for dot4I8Packed) and dx·Σ xq the half's sum that the row carries.
const PD: u32 = 32u;

// Σ q·xq over half h (16 values) of the part at `at` (q6k_part) against its activation words
// (the values as quant/q6_k.wgsl's q6k_word makes them, from 16 bytes of ql and of qh).
fn q6k_half_dot(at: vec4<u32>, h: u32, xw: vec4<u32>) -> i32 {
    let ql = bytes16at(at.x + 16u * h);
    let qh = bytes16at(at.y + 16u * h);
    let q = vec4<u32>(
        q6k_word(ql.x, qh.x, at),
        q6k_word(ql.y, qh.y, at),
        q6k_word(ql.z, qh.z, at),
        q6k_word(ql.w, qh.w, at),
    );
    return dot16(q, xw);
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
