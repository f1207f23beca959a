// Writing an activation row in 8 bits as x_q8_global.wgsl reads it, 16 values (half a group
// of 32) at a time, from the including file's workgroup array `q8_vals` into its `q8_row`
// binding: the half's values as integers, round(v · 127 / max|v|), 4 to a word, in quad
// 3 (at / 32) + half, and its scale d = max|v| / 127 and d · Σ q in the group's third quad.
// The rounding is x_q8.wgsl's. Writes q8_vals[first..first + 16] as values at..at + 16.
fn store_q8_half(at: u32, first: u32) {
    var v: array<vec4<f32>, 4>;
    for (var i = 0u; i < 4u; i++) {
        let a = first + 4u * i;
        v[i] = vec4<f32>(q8_vals[a], q8_vals[a + 1u], q8_vals[a + 2u], q8_vals[a + 3u]);
    }
    var amax = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        amax = max(amax, abs(v[i]));
    }
    let m = max(max(amax.x, amax.y), max(amax.z, amax.w));
    let id = select(0.0, 127.0 / m, m > 0.0);
    var w: vec4<u32>;
    var sum = 0.0;
    for (var i = 0u; i < 4u; i++) {
        let q = round(v[i] * id);
        w[i] = pack4xI8(vec4<i32>(q));
        sum += q.x + q.y + q.z + q.w;
    }
    let g = at / 32u;
    let h = (at / 16u) % 2u;
    let d = m / 127.0;
    q8_row[3u * g + h] = w;
    q8_row[3u * g + 2u][2u * h] = bitcast<u32>(d);
    q8_row[3u * g + 2u][2u * h + 1u] = bitcast<u32>(d * sum);
}
