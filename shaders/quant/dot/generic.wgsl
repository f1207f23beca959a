// The dot products of one part of RT weight rows with the activations, for block types
// without a fused version: load the part's activations once, then decode and multiply each row.
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
