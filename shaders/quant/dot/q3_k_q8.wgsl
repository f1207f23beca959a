// Q3_K decode products on integer dot products, against the activation row in 8 bits: the
// `part_pair_dot` that dot/part_pairs_q8.wgsl's `rows_dot` calls. A value's code c = low 2 bits
// | hmask bit << 2 is 0..7 (value c − 4), and each 16-value half of a part has its own scale
// in Q3_K as in the 8-bit row, so Σ d·sc·(c − 4)·x ≈ d·sc·(dx·Σ c·xq − 4·dx·Σ xq), with
// dx·Σ xq the half's sum that the row carries.
const PD: u32 = 32u;

// Σ c·xq over half h (16 values) of part p of the block at wb against its activation words
// (the codes as quant/q3_k.wgsl's q3k_codes makes them, from 16 bytes of qs and of hmask).
fn q3k_half_dot(wb: u32, p: u32, h: u32, xw: vec4<u32>) -> i32 {
    let qs = bytes16at(q3k_qs(wb, p) + 16u * h);
    let hm = bytes16at(wb + 16u * h);
    let c = vec4<u32>(
        q3k_codes(qs.x, hm.x, p),
        q3k_codes(qs.y, hm.y, p),
        q3k_codes(qs.z, hm.z, p),
        q3k_codes(qs.w, hm.w, p),
    );
    return dot16(c, xw);
}

// Parts p and p + 1 (p even) of the block at byte wb · their activations: xa the first halves
// (part p's in .lo, part p + 1's in .hi), xb the second.
fn part_pair_dot(wb: u32, p: u32, xa: UnitX, xb: UnitX) -> f32 {
    // The scales of sub-blocks 2p .. 2p + 3: parts p and p + 1, two halves each.
    let sc = vec4<f32>(
        q3k_scale(wb, 2u * p),
        q3k_scale(wb, 2u * p + 1u),
        q3k_scale(wb, 2u * p + 2u),
        q3k_scale(wb, 2u * p + 3u),
    );
    let s = vec4<f32>(
        xa.d.x * f32(q3k_half_dot(wb, p, 0u, xa.lo)) - 4.0 * xa.sum.x,
        xb.d.x * f32(q3k_half_dot(wb, p, 1u, xb.lo)) - 4.0 * xb.sum.x,
        xa.d.y * f32(q3k_half_dot(wb, p + 1u, 0u, xa.hi)) - 4.0 * xa.sum.y,
        xb.d.y * f32(q3k_half_dot(wb, p + 1u, 1u, xb.hi)) - 4.0 * xb.sum.y,
    );
    return f16at(wb + 108u) * dot(sc, s);
}
