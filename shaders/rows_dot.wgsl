// The decode products' per-thread walk over a weight's rows (`w`, through the type's
// part_dot_rows). `matvecs` gets one renamed copy of this file per weight binding.

fn row_bytes() -> u32 {
    return (p.cols / QK) * BLOCK_BYTES;
}

// This lane's share of rows klo..khi (of RT, row_bytes() apart from byte rb on) · (x from
// vec4 index xb0).
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
