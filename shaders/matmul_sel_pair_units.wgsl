// `matmul_sel_pair` for Q4_K on integer dot products (the host takes this entry instead of
// matmul_sel_pair.wgsl's there, and dispatches half the workgroups): a workgroup serves its
// rows of both weights, and each lane issues the loads of its sub-block pair in both rows
// before its multiplies, so that one memory round trip serves the pair where one workgroup
// per weight made one each and staged the activations twice. Uses dot/q4_k_q8.wgsl's
// unit_load2 and unit_mul2 through their copies for W_0 (_0) and W_1 (_1), and unit_load2's
// for the shared expert's W_2 (_2) and W_3 (_3) in slot 0, and the activations' unit_x. What
// it writes besides the products comes last (`store_act`: nothing, or the SwiGLU in 8 bits,
// matmul_sel_pair_swiglu_q8.wgsl).

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
    // The lane group's n rows are one run of n · pairs sub-block pairs, TPR apart, a pair (both
    // its units, unit_mul2) per lane at a time: the lanes share out two 2304-value rows' 72
    // pairs three deep, where a row at a time left 28 of 32 lanes idle in each row's second
    // pass (36 pairs). H100 tg128 380.1 / 380.9 tok/s against 373.4 / 374.2 (in quiet runs of
    // a noisy machine), the same greedy tokens; two pairs per weight in flight at once were
    // not faster (349.1 / 355.3 in noisy runs against 371), nor four rows (380.8).
    let pairs = units / 2u;
    var k = 0u;
    var v = lane;
    while v >= pairs {
        v -= pairs;
        k++;
    }
    for (var it = lane; it < n * pairs; it += TPR) {
        let r0 = (first + r + k) * stride;
        let u = 2u * v;
        var l0: array<vec4<u32>, 3>;
        var l1: array<vec4<u32>, 3>;
        if is_shared {
            l0 = unit_load2_2(r0, u);
            l1 = unit_load2_3(r0, u);
        } else {
            l0 = unit_load2_0(r0, u);
            l1 = unit_load2_1(r0, u);
        }
        let xa = unit_x(u, g0);
        let xb = unit_x(u + 1u, g0);
        let y = vec2<f32>(
            unit_mul2_0(l0[0], l0[1], l0[2], u, xa, xb),
            unit_mul2_0(l1[0], l1[1], l1[2], u, xa, xb),
        );
        for (var kk = 0u; kk < RT; kk++) {
            if kk == k {
                acc[kk] += y;
            }
        }
        v += TPR;
        while v >= pairs {
            v -= pairs;
            k++;
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
