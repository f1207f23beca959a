// `matmul_sel_pair` for Q4_K on integer dot products (the host takes this entry instead of
// matmul_sel_pair.wgsl's there, and dispatches half the workgroups): a workgroup serves its
// rows of both weights, and each lane issues the loads of its units in both rows (up to AHEAD
// units each) before its first multiply, so that one memory round trip serves the pair where
// one workgroup per weight made one each and staged the activations twice. Uses
// dot/q4_k_q8.wgsl's unit_load and unit_mul through their copies for W_0 (_0) and W_1 (_1),
// and unit_load's for the shared expert's W_2 (_2) and W_3 (_3) in slot 0, and the staging's
// unit_x. What it writes besides the products comes last (`store_act`: nothing, or the SwiGLU
// in 8 bits, matmul_sel_pair_swiglu_q8.wgsl).

// Sub-block pairs (two units each) per lane in flight at once, per weight (a 2304-value row
// has 36: up to 2 per lane of 32). One pair holds as many loads as two units and a header;
// with one unit at a time, two units per weight in flight were fastest (351.5 / 351.3 tok/s
// against 347.2 with three, 346.5 with one). Two pairs were not faster on the H100 (349.1 /
// 355.3 tok/s in noisy runs, against 371 with one).
const AHEAD: u32 = 1u;

@compute @workgroup_size(256)
fn matmul_sel_pair(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    let groups = (p.per + RPW - 1u) / RPW;
    let slot = lin / groups;
    if slot >= p.lead + p.pairs {
        return;
    }
    // Slot 0 is the shared expert's where p.lead is 1: weights W_2 and W_3, the one token's x.
    let is_shared = slot < p.lead;
    let pair = slot - p.lead;
    var first = 0u;
    if !is_shared {
        first = ids[pair] * p.per;
    }
    let r = (lin % groups) * RPW + (li / TPR) * RT;
    let lane = li % TPR;
    let n = min(RT, max(p.per, r) - r);
    let xb0 = select((pair / p.x_div) * p.x_stride / 4u, 0u, is_shared);
    stage_x(li, xb0);
    let units = (p.cols / QK) * 8u;
    // In quads: rows and blocks are multiples of 16 bytes.
    let stride = row_bytes_0() >> 4u;
    let g0 = (xb0 - x_base) / 8u;
    // acc[k] holds row r + k's products with W_0 and W_1 in .x and .y.
    var acc: array<vec2<f32>, 4>;
    for (var k = 0u; k < n; k++) {
        let r0 = (first + r + k) * stride;
        // A lane takes both units of a sub-block pair at a time (unit_mul2), AHEAD pairs.
        for (var v0 = lane; 2u * v0 < units; v0 += TPR * AHEAD) {
            var l0: array<array<vec4<u32>, 3>, AHEAD>;
            var l1: array<array<vec4<u32>, 3>, AHEAD>;
            for (var i = 0u; i < AHEAD; i++) {
                let u = 2u * (v0 + i * TPR);
                if u < units && is_shared {
                    l0[i] = unit_load2_2(r0, u);
                    l1[i] = unit_load2_3(r0, u);
                } else if u < units {
                    l0[i] = unit_load2_0(r0, u);
                    l1[i] = unit_load2_1(r0, u);
                }
            }
            for (var i = 0u; i < AHEAD; i++) {
                let u = 2u * (v0 + i * TPR);
                if u < units {
                    let xa = unit_x(u, g0);
                    let xb = unit_x(u + 1u, g0);
                    acc[k] += vec2<f32>(
                        unit_mul2_0(l0[i][0], l0[i][1], l0[i][2], u, xa, xb),
                        unit_mul2_0(l1[i][0], l1[i][1], l1[i][2], u, xa, xb),
                    );
                }
            }
        }
    }
    // reduce_rows sums 4 values per lane: both weights' rows at once where RT ≤ 2, else in two
    // passes (a barrier between: the second rewrites what the first's last step reads).
    var s: array<vec2<f32>, 4>;
    if RT <= 2u {
        let v = reduce_rows(li, vec4<f32>(acc[0], acc[1]));
        s[0] = v.xy;
        s[1] = v.zw;
    } else {
        let v0 = reduce_rows(li, vec4<f32>(acc[0].x, acc[1].x, acc[2].x, acc[3].x));
        workgroupBarrier();
        let v1 = reduce_rows(li, vec4<f32>(acc[0].y, acc[1].y, acc[2].y, acc[3].y));
        for (var k = 0u; k < 4u; k++) {
            s[k] = vec2<f32>(v0[k], v1[k]);
        }
    }
    if lane == 0u {
        for (var k = 0u; k < n; k++) {
            let i = p.y_off + slot * p.y_stride + r + k;
            y0[i] = s[k].x;
            y1[i] = s[k].y;
        }
    }
    store_act(li, lane, slot, (lin % groups) * RPW, r, n, s);
}
