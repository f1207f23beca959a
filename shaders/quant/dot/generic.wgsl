// The dot product of one decoded part with the activations, for block types without a fused
// version: decode the part's PV values, then multiply.
const PD: u32 = PV;

// wb: the block's first byte; xb: the vec4 index of the block's first activation.
fn part_dot(wb: u32, p: u32, xb: u32) -> f32 {
    let v = part_values(wb, p);
    let xp = xb + p * (PV / 4u);
    var s = 0.0;
    for (var i = 0u; i < PV4; i++) {
        s += dot(v[i], x[xp + i]);
    }
    return s;
}
