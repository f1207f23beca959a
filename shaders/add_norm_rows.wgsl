// A decode product followed by the residual add and all of the next RMS norm but its scale (a
// decoded token's `matmul_add_norm`, the KDA and MLA output projections): for each of its rows
// i the workgroup adds the product into the residual (res[i] += y), stores v = res[i] · w[i]
// (the norm's weight) in y and in 8 bits in q8_row (q8_half.wgsl, as the products read it,
// x_q8_global.wgsl), and for each 16-row half the sum of the residual's squares in norm_ss.
// The norm's scale, 1 / sqrt(Σ norm_ss / rows + eps), needs every workgroup's rows, so the
// row's readers apply it: the MoE router's last workgroup to its logits and to the 8-bit
// row's scales (moe.wgsl), `norm_settle` (elementwise.wgsl) for any other reader. Scaling a
// half by a positive number leaves its 8-bit integers as they are. That saves the norm its own
// dispatch. The host takes this file where a workgroup serves whole halves (RPW a multiple of
// 16, at most MV_WG) of one token's product of a one-part weight.

@group(0) @binding(32) var<storage, read_write> res: array<f32>;
@group(0) @binding(33) var<storage, read> norm_w: array<f32>;
@group(0) @binding(34) var<storage, read_write> q8_row: array<vec4<u32>>;
@group(0) @binding(35) var<storage, read_write> norm_ss: array<f32>;

// The workgroup's rows: first the product's sums, then v (for store_q8_half).
var<workgroup> q8_vals: array<f32, MV_WG>;
var<workgroup> norm_sq: array<f32, MV_WG>;

// What thread li's row of the add needs, (res, w), loaded before the product so that the add
// waits for no memory round trip of its own.
fn store_ahead(li: u32, row: u32) -> vec2<f32> {
    let i = row - (li / TPR) * RT + li;
    if li < RPW && i < p.rows {
        return vec2<f32>(res[i], norm_w[i]);
    }
    return vec2<f32>(0.0);
}

// `matvec`'s store: lane 0 of each row group puts its rows' sums in q8_vals, then the
// workgroup's threads take a row each and a half each.
fn store_rows(li: u32, lane: u32, tok: u32, row: u32, n: u32, s: vec4<f32>, ahead: vec2<f32>) {
    let r0 = row - (li / TPR) * RT;
    if lane == 0u {
        for (var k = 0u; k < n; k++) {
            q8_vals[row - r0 + k] = s[k];
        }
    }
    workgroupBarrier();
    let i = r0 + li;
    if li < RPW && i < p.rows {
        let a = ahead.x + q8_vals[li];
        res[i] = a;
        let v = a * ahead.y;
        y[i] = v;
        norm_sq[li] = a * a;
        q8_vals[li] = v;
    }
    workgroupBarrier();
    let half = 16u * li;
    if half < RPW && r0 + half < p.rows {
        store_q8_half(r0 + half, half);
        var ss = 0.0;
        for (var k = 0u; k < 16u; k++) {
            ss += norm_sq[half + k];
        }
        norm_ss[(r0 + half) / 16u] = ss;
    }
}
