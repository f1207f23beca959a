// `matmul_sel_pair` writing its products only.
fn store_act(li: u32, lane: u32, slot: u32, rb: u32, r: u32, n: u32, s: array<vec2<f32>, 4>) {}
