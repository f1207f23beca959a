// Q4_K dot over 32 values: part p (0..8) is the 16 bytes qs[32 (p / 2) + 16 (p % 2)..], whose
// low nibbles are 16 values of sub-block 2 (p / 2) and high nibbles the same 16 of the next
// sub-block, so each byte is loaded once and neighbouring threads read neighbouring 16 bytes.
// The scales and mins apply once per sub-block: Σ (d·sc·q − dmin·m)·x = d·sc·Σ q·x − dmin·m·Σ x.
// The activations (and their sums) are loaded once for all RT rows.
const PD: u32 = 32u;

// wb: the first byte of row klo's block (rows `stride` bytes apart); xb: the vec4 index of the
// block's first activation. Rows outside klo..khi give 0.
fn part_dot_rows(wb: u32, stride: u32, klo: u32, khi: u32, p: u32, xb: u32) -> vec4<f32> {
    let pair = p / 2u;
    // The part's low nibbles are values 64 pair + 16 (p % 2).., its high nibbles the next
    // sub-block's, 32 values (8 vec4s) on.
    let xp = xb + 16u * pair + 4u * (p % 2u);
    var a: array<vec4<f32>, 4>;
    var b: array<vec4<f32>, 4>;
    var xlo = 0.0;
    var xhi = 0.0;
    for (var i = 0u; i < 4u; i++) {
        a[i] = x[xp + i];
        b[i] = x[xp + 8u + i];
        xlo += a[i].x + a[i].y + a[i].z + a[i].w;
        xhi += b[i].x + b[i].y + b[i].z + b[i].w;
    }
    var out = vec4<f32>(0.0);
    for (var k = klo; k < khi; k++) {
        let rb = wb + (k - klo) * stride;
        let dm = unpack2x16float(w[rb >> 2u]);
        let s0 = k4_scale_min(rb + 4u, 2u * pair);
        let s1 = k4_scale_min(rb + 4u, 2u * pair + 1u);
        let q0 = (rb + 16u + 16u * p) >> 2u;
        var lo = 0.0;
        var hi = 0.0;
        for (var i = 0u; i < 4u; i++) {
            let q = vec4<u32>(w[q0 + i]) >> vec4<u32>(0u, 8u, 16u, 24u);
            lo += dot(vec4<f32>(q & vec4<u32>(15u)), a[i]);
            hi += dot(vec4<f32>((q >> vec4<u32>(4u)) & vec4<u32>(15u)), b[i]);
        }
        out[k] = dm.x * (s0.x * lo + s1.x * hi) - dm.y * (s0.y * xlo + s1.y * xhi);
    }
    return out;
}
