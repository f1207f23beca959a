// Two `matmul_sel` products with one selection in one dispatch (a decoded token's MoE expert
// gate and up): y_j[y_off + pair · y_stride + r] = W_j[ids[pair]][r] · x[pair / x_div] for
// j = 0, 1, each matrix `per` rows of one stacked weight. Built by the host as `matvecs` is
// (renamed helpers per weight, `job_dot` / `job_store`); the first half of the workgroups
// serve W_0.
// Parameters and bindings: matmul_sel_pair_io.wgsl; for Q4_K on integer dot products the host
// takes matmul_sel_pair_units.wgsl's entry instead of this one.

@compute @workgroup_size(256)
fn matmul_sel_pair(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    let groups = (p.per + RPW - 1u) / RPW;
    let j = lin / (groups * p.pairs);
    if j >= 2u {
        return;
    }
    let q = lin % (groups * p.pairs);
    let pair = q / groups;
    let r = (q % groups) * RPW + (li / TPR) * RT;
    let lane = li % TPR;
    let n = min(RT, max(p.per, r) - r);
    let xb0 = (pair / p.x_div) * p.x_stride / 4u;
    stage_x(li, xb0);
    var acc = vec4<f32>(0.0);
    if n > 0u {
        let grow = ids[pair] * p.per + r;
        acc = job_dot(j, grow * row_bytes_0(), 0u, n, xb0, lane);
    }
    let s = reduce_rows(li, acc);
    if lane == 0u {
        for (var k = 0u; k < n; k++) {
            job_store(j, p.y_off + pair * p.y_stride + r + k, s[k]);
        }
    }
}
