// A decode product's activations already in 8 bits in memory, written by the kernel that
// produced them (q8_half.wgsl: a decoded token's norms, elementwise.wgsl; its SwiGLU,
// matmul_sel_pair_swiglu_q8.wgsl), read where x_q8.wgsl would stage them: no staging pass, no
// barrier before the first weight loads. Staging the SwiGLU of 9216 values in each of
// `moe_down`'s 144 workgroups held every workgroup's loads back behind it.
// The host binds the row as x (declared array<vec4<u32>> for these kernels) in groups of 32
// values, three quads each: group g's values 0..16 as 8-bit integers (4 to a word) in x[3g],
// values 16..32 in x[3g + 1], and x[3g + 2] holding the bits of each half's scale d and the sum
// of its quantized values times d (d₀, d₀·Σq₀, d₁, d₁·Σq₁): the halves are quantized apart, as
// a unit of a Q4_K row multiplies 16 values of each of two sub-blocks.

// 0: rows are found from the start of x (see `rows_dot`).
var<private> x_base: u32;

fn stage_x(li: u32, xb0: u32) {}

fn stage_rows(li: u32, xb0: u32, n: u32) {}

// The activations unit u of a Q4_K row multiplies (dot/q4_k_q8.wgsl), where the row's first
// group is g0.
fn unit_x(u: u32, g0: u32) -> UnitX {
    let part = u % 8u;
    let pair = part / 2u;
    let h = part % 2u;
    // Groups 2 pair and 2 pair + 1 of block u / 8; the unit's values are half h of each.
    let g = g0 + (u / 8u) * 8u + 2u * pair;
    let slo = bitcast<vec4<f32>>(x[3u * g + 2u]);
    let shi = bitcast<vec4<f32>>(x[3u * g + 5u]);
    let odd = h == 1u;
    return UnitX(
        x[3u * g + h],
        x[3u * g + 3u + h],
        vec2<f32>(select(slo.x, slo.z, odd), select(shi.x, shi.z, odd)),
        vec2<f32>(select(slo.y, slo.w, odd), select(shi.y, shi.w, odd)),
    );
}
