// y = x · Wᵀ for one token, for a weight in any GGUF block format (the type file prepended to
// this one defines QK, BLOCK_BYTES, PV, PV4 and part_values; its dot file PD and
// part_dot_rows; rows_dot.wgsl row_bytes and rows_dot; decode_reduce.wgsl the decode
// workgroup shape and reduce_rows). The weight is read straight from its raw blocks.
//
// `matvec` (one token) and `matmul_sel` (one token per (token, expert) pair). A workgroup
// serves RPW weight rows: TPR threads per group of RT rows stride over the rows' parts
// (part_dot_rows fuses decoding with the multiply and loads the activations once for the RT
// rows), so each weight byte is read once; the TPR partial sums are reduced in workgroup
// memory. `matmul_sel` picks the pair's matrix inside a stacked tensor on the GPU, so that the
// MoE and the per-head MLA products run without a host round trip. x is read only through the
// staging (x_q8.wgsl, x_f32.wgsl, x_q8_global.wgsl) and rows_dot, so that a kernel reading its
// row in 8 bits may declare it so. Parameters and bindings: matmul_io.wgsl.

@compute @workgroup_size(256)
fn matvec(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    let groups = (p.rows + RPW - 1u) / RPW;
    let tok = lin / groups;
    if tok >= p.t {
        return;
    }
    let row = (lin % groups) * RPW + (li / TPR) * RT;
    let lane = li % TPR;
    let n = min(RT, max(p.rows, row) - row);
    let xb0 = (p.x_off + tok * p.x_stride) / 4u;
    let ahead = store_ahead(li, row);
    stage_x(li, xb0);
    var acc = vec4<f32>(0.0);
    if n > 0u {
        acc = rows_dot(row * row_bytes(), 0u, n, xb0, lane);
    }
    let s = reduce_rows(li, acc);
    store_rows(li, lane, tok, row, n, s, ahead);
}

@compute @workgroup_size(256)
fn matmul_sel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    let groups = (p.per + RPW - 1u) / RPW;
    let pair = lin / groups;
    if pair >= p.t {
        return;
    }
    let r = (lin % groups) * RPW + (li / TPR) * RT;
    let lane = li % TPR;
    var e: u32;
    if p.mode == 0u {
        e = ids[pair];
    } else {
        e = pair % p.heads;
    }
    // Rows r + k of the pair's matrix, for k in klo..khi: those of the matrix that this
    // dispatch's weight part holds.
    let grow = e * p.per + r;
    let end = min(grow + min(RT, max(p.per, r) - r), p.row0 + p.rows);
    let klo = max(grow, p.row0) - grow;
    let khi = max(end, grow + klo) - grow;
    let xb0 = (p.x_off + (pair / p.x_div) * p.x_stride) / 4u;
    stage_x(li, xb0);
    var acc = vec4<f32>(0.0);
    if khi > klo {
        acc = rows_dot((grow + klo - p.row0) * row_bytes(), klo, khi, xb0, lane);
    }
    let s = reduce_rows(li, acc);
    if lane == 0u {
        for (var k = klo; k < khi; k++) {
            y[p.y_off + pair * p.y_stride + r + k] = s[k];
        }
    }
}
