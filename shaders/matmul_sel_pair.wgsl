// Two `matmul_sel` products with one selection in one dispatch (a decoded token's MoE expert
// gate and up): y_j[y_off + (lead + pair) · y_stride + r] = W_j[ids[pair]][r] · x[pair / x_div]
// for j = 0, 1, each matrix `per` rows of one stacked weight; for one token, with p.lead = 1,
// the shared expert's gate and up (W_2, W_3) too, as slot 0 before the pairs, so that they
// need no dispatch of their own. Built by the host as `matvecs` is (renamed helpers per
// weight, `job_dot`; four weights, W_0 and W_1 bound again as W_2 and W_3 where there is no
// shared expert); the first half of the workgroups serve W_0 (and W_2).
// Parameters and bindings: matmul_sel_pair_io.wgsl; for Q4_K on integer dot products the host
// takes matmul_sel_pair_units.wgsl's entry instead of this one.

@compute @workgroup_size(256)
fn matmul_sel_pair(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    let groups = (p.per + RPW - 1u) / RPW;
    let slots = p.lead + p.pairs;
    let j = lin / (groups * slots);
    if j >= 2u {
        return;
    }
    let q = lin % (groups * slots);
    let slot = q / groups;
    // Slot 0 is the shared expert's where p.lead is 1: weights W_2 and W_3, the one token's x.
    let is_shared = slot < p.lead;
    let pair = slot - p.lead;
    let r = (q % groups) * RPW + (li / TPR) * RT;
    let lane = li % TPR;
    let n = min(RT, max(p.per, r) - r);
    let xb0 = select((pair / p.x_div) * p.x_stride / 4u, 0u, is_shared);
    stage_x(li, xb0);
    var acc = vec4<f32>(0.0);
    if n > 0u {
        if is_shared {
            acc = job_dot(j + 2u, r * row_bytes_0(), 0u, n, xb0, lane);
        } else {
            let grow = ids[pair] * p.per + r;
            acc = job_dot(j, grow * row_bytes_0(), 0u, n, xb0, lane);
        }
    }
    let s = reduce_rows(li, acc);
    // Stored straight to y0 / y1: the shared expert's products go to the same two outputs,
    // and job_store would bind y2 and y3 too.
    if lane == 0u {
        for (var k = 0u; k < n; k++) {
            let i = p.y_off + slot * p.y_stride + r + k;
            if j == 0u {
                y0[i] = s[k];
            } else {
                y1[i] = s[k];
            }
        }
    }
}
