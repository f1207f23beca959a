// `matvec`'s store of its rows' sums (add_norm_rows.wgsl's instead where the product also does
// the residual add and the next norm), which loads nothing ahead.
fn store_ahead(li: u32, row: u32) -> vec2<f32> {
    return vec2<f32>(0.0);
}

fn store_rows(li: u32, lane: u32, tok: u32, row: u32, n: u32, s: vec4<f32>, ahead: vec2<f32>) {
    if lane == 0u {
        for (var k = 0u; k < n; k++) {
            y[p.y_off + tok * p.y_stride + p.row0 + row + k] = s[k];
        }
    }
}
