// A decoded token's MoE down products and their weighted sum in one dispatch:
// out[r] = W_1[r] · a[0] + Σ_k wts[k] · W_0[ids[k]][r] · a[k + 1], where W_0 stacks the
// experts' down matrices (`rows` rows each), W_1 is the shared expert's down matrix and a holds
// pairs + 1 rows of `cols` activations (the shared expert's SwiGLU, then the chosen experts' in
// slot order). Each workgroup serves RPW output rows for all pairs + 1 products, so no
// per-expert outputs or combine pass are needed; it stages all the activation rows once (8-bit
// with x_q8.wgsl: the host checks that (pairs + 1) · cols ≤ XQ_MAX; there a is the SwiGLU of
// the gate products in x and the up products in x_up, see x_in_swiglu.wgsl, else a is x).
// Built by the host as `matvecs` is (renamed helpers per weight, `job_dot`); the weights share
// a type and row length.
// Parameters and bindings: moe_down_io.wgsl; for Q4_K on integer dot products the host takes
// moe_down_units.wgsl's entry instead of this one.

@compute @workgroup_size(256)
fn moe_down(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    let r = lin * RPW + (li / TPR) * RT;
    let lane = li % TPR;
    let n = min(RT, max(p.rows, r) - r);
    stage_rows(li, 0u, (p.pairs + 1u) * p.cols);
    let stride = row_bytes_0();
    var acc = vec4<f32>(0.0);
    if n > 0u {
        acc = job_dot(1u, r * stride, 0u, n, 0u, lane);
        for (var k = 0u; k < p.pairs; k++) {
            let rb = (ids[k] * p.rows + r) * stride;
            acc += wts[k] * job_dot(0u, rb, 0u, n, (k + 1u) * p.cols / 4u, lane);
        }
    }
    let s = reduce_rows(li, acc);
    if lane == 0u {
        for (var k = 0u; k < n; k++) {
            y0[r + k] = s[k];
        }
    }
}
