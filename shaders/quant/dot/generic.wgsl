// The decode products' walk over RT weight rows for block types without a fused version: per
// part, load its activations once, then decode and multiply each row.
const PD: u32 = PV;

// wb: the first byte of row klo's block (rows `stride` bytes apart); xb: the vec4 index of the
// block's first activation. Rows outside klo..khi give 0.
fn part_dot_rows(wb: u32, stride: u32, klo: u32, khi: u32, p: u32, xb: u32) -> vec4<f32> {
    let xp = xb + p * (PV / 4u);
    var xs: array<vec4<f32>, PV4>;
    for (var i = 0u; i < PV4; i++) {
        xs[i] = x[xp + i];
    }
    var out = vec4<f32>(0.0);
    for (var k = klo; k < khi; k++) {
        let v = part_values(wb + (k - klo) * stride, p);
        var s = 0.0;
        for (var i = 0u; i < PV4; i++) {
            s += dot(v[i], xs[i]);
        }
        out[k] = s;
    }
    return out;
}

// This lane's share of rows klo..khi (of RT, row_bytes() apart from byte rb on) · (x from
// vec4 index xb0): the row's parts lane, lane + TPR, ...
fn rows_dot(rb: u32, klo: u32, khi: u32, xb0: u32, lane: u32) -> vec4<f32> {
    let per_blk = QK / PD;
    let units = (p.cols / QK) * per_blk;
    let stride = row_bytes();
    var acc = vec4<f32>(0.0);
    for (var u = lane; u < units; u += TPR) {
        let blk = u / per_blk;
        let part = u % per_blk;
        acc += part_dot_rows(rb + blk * BLOCK_BYTES, stride, klo, khi, part, xb0 + blk * (QK / 4u));
    }
    return acc;
}
