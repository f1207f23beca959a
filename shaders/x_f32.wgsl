// Decode products whose dot file reads the f32 activations straight from `x` stage nothing.
fn stage_x(li: u32, xb0: u32) {}
fn stage_rows(li: u32, xb0: u32, n: u32) {}
