// The decode products' walk over rows on integer dot products, two 32-value parts of a block (64
// values) at a time per lane: appended after the type's file (dot/q6_k_q8.wgsl, dot/q3_k_q8.wgsl;
// Q4_K's keeps its own copy in quads), which defines `part_pair_dot`, against the activation row in
// 8 bits that x_q8.wgsl staged in workgroup memory or x_q8_global.wgsl reads from memory
// (`unit_x`). Parts 2 pair and 2 pair + 1 of a block are Q4_K's unit pair u, u + 1 (u = 8 block + 2
// pair), whose `unit_x(u)` holds the first halves of the same two groups of activations (the first
// part's in .lo, the second's in .hi) and `unit_x(u + 1)` their second halves.

// Σ over 16 values of the 8-bit codes q (4 to a word) times the activations xw.
fn dot16(q: vec4<u32>, xw: vec4<u32>) -> i32 {
    return dot4I8Packed(q.x, xw.x) + dot4I8Packed(q.y, xw.y) + dot4I8Packed(q.z, xw.z)
        + dot4I8Packed(q.w, xw.w);
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
