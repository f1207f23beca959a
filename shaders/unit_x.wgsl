// What a Q4_K unit's multiply (dot/q4_k_q8.wgsl; Q6_K's and Q3_K's part pairs take two units'
// worth, dot/part_pairs_q8.wgsl) gets of the 8-bit activations, from either
// staging (`unit_x` in x_q8.wgsl, x_q8_global.wgsl): the 4 words of each of the two 16-value
// halves it multiplies (one of each of two adjacent groups of 32), their scales and the sums of
// their quantized values times the scale (the min corrections).
struct UnitX {
    lo: vec4<u32>,
    hi: vec4<u32>,
    // Scale of the low and the high sub-block's half, then their sums.
    d: vec2<f32>,
    sum: vec2<f32>,
}
