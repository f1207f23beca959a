// A decode product's activation row as 8-bit integers in workgroup memory, for the integer dot
// products of the weight types that have them (dot/q4_k_q8.wgsl, q6_k_q8.wgsl, q3_k_q8.wgsl): per
// group of 32 values one scale d = max|x| / 127 and the sums of its two halves' quantized values
// times d (the min corrections: with the same rounding as the products, their errors cancel), as
// ggml's activations in Q8 blocks, so that a 4-bit weight word multiplies 4 activations in one
// dot4I8Packed instead of 4 conversions and multiply-adds. The values come through `x_at`
// (x_in.wgsl; x_in_swiglu.wgsl for a decoded token's `moe_down`; x_in_gated_norm.wgsl for a decoded
// token's KDA output projection), after `x_prepare` (what they need first). Each workgroup stages
// its one row (x from vec4 index xb0, p.cols values, at most XQ_MAX: the host checks), or with
// `stage_rows` several consecutive rows (n values in all, at most XQ_MAX); `rows_dot` then finds
// the row of x from vec4 index xb at staged group (xb - x_base) / 8. The host builds each kernel
// with XQ_MAX set to what it stages (kernels.rs, staging_for): workgroup memory reserved for the
// longest row slowed the shorter rows' products.
const XQ_MAX: u32 = 9216u;

var<workgroup> xq: array<vec4<u32>, XQ_MAX / 16u>;
var<workgroup> xs: array<vec4<f32>, XQ_MAX / 32u>;
// The vec4 index of x where the staged values start.
var<private> x_base: u32;

fn stage_x(li: u32, xb0: u32) {
    stage_rows(li, xb0, p.cols);
}

fn stage_rows(li: u32, xb0: u32, n: u32) {
    x_base = xb0;
    x_prepare(li, xb0, n);
    for (var g = li; g < n / 32u; g += MV_WG) {
        var v: array<vec4<f32>, 8>;
        var amax = vec4<f32>(0.0);
        for (var i = 0u; i < 8u; i++) {
            v[i] = x_at(xb0 + 8u * g + i);
            amax = max(amax, abs(v[i]));
        }
        let m = max(max(amax.x, amax.y), max(amax.z, amax.w));
        let id = select(0.0, 127.0 / m, m > 0.0);
        var w: array<u32, 8>;
        var s = vec2<f32>(0.0);
        for (var i = 0u; i < 8u; i++) {
            let q = round(v[i] * id);
            w[i] = pack4xI8(vec4<i32>(q));
            s[i / 4u] += q.x + q.y + q.z + q.w;
        }
        xq[2u * g] = vec4<u32>(w[0], w[1], w[2], w[3]);
        xq[2u * g + 1u] = vec4<u32>(w[4], w[5], w[6], w[7]);
        let d = m / 127.0;
        xs[g] = vec4<f32>(d, d * s.x, d * s.y, 0.0);
    }
    workgroupBarrier();
}

// The staged activations unit u of a Q4_K row multiplies (dot/q4_k_q8.wgsl), where the row's
// first staged group is g0.
fn unit_x(u: u32, g0: u32) -> UnitX {
    let part = u % 8u;
    let pair = part / 2u;
    // Sub-blocks (groups of 32 activations) 2 pair and 2 pair + 1 of block u / 8; the unit's
    // values are half part % 2 of each.
    let g = g0 + (u / 8u) * 8u + 2u * pair;
    let slo = xs[g];
    let shi = xs[g + 1u];
    let odd = part % 2u == 1u;
    return UnitX(
        xq[2u * g + part % 2u],
        xq[2u * g + 2u + part % 2u],
        vec2<f32>(slo.x, shi.x),
        vec2<f32>(select(slo.y, slo.z, odd), select(shi.y, shi.z, odd)),
    );
}
