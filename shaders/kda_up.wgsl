// A quarter of one row of a KDA up-projection for kda_step.wgsl: blocks quarter, quarter + 4,
// … of W[row] · x over RANK values, decoded by the block type's `part_values` (the step's 4
// adjacent threads of a row add their quarters). kernels.rs makes a renamed copy per weight
// (w0 · x0, the decay's; w1 · x1, the output gate's).
fn up_dot(row: u32, quarter: u32) -> f32 {
    let blocks = RANK / QK;
    let wb0 = row * blocks * BLOCK_BYTES;
    var s = 0.0;
    for (var b = quarter; b < blocks; b += 4u) {
        for (var part = 0u; part < QK / PV; part++) {
            let vals = part_values(wb0 + b * BLOCK_BYTES, part);
            let xb = (b * QK + part * PV) / 4u;
            for (var i = 0u; i < PV4; i++) {
                s += dot(vals[i], x[xb + i]);
            }
        }
    }
    return s;
}
