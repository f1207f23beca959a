// What `matmul_sel_pair` also writes for a decoded token's `moe_down` on integer dot products:
// silu(gate) ⊙ up of its rows in 8 bits (q8_half.wgsl; value slot · per + row), so that
// `moe_down` reads them instead of staging the SwiGLU in every workgroup. The host
// takes this where a workgroup's rows are whole halves of groups (RPW and per multiples of 16)
// and the outputs are slot-major (y_off 0, y_stride per).
@group(0) @binding(8) var<storage, read_write> q8_row: array<vec4<u32>>;

// The SwiGLU of the workgroup's rows (q8_half.wgsl).
var<workgroup> q8_vals: array<f32, MV_WG>;

// s[k] holds the gate and up products of row r + k (k < n) in lane 0 of each row group; the
// workgroup's rows start at rb of slot `slot`.
fn store_act(li: u32, lane: u32, slot: u32, rb: u32, r: u32, n: u32, s: array<vec2<f32>, 4>) {
    if lane == 0u {
        for (var k = 0u; k < n; k++) {
            let g = s[k].x;
            q8_vals[r - rb + k] = g / (1.0 + exp(-g)) * s[k].y;
        }
    }
    workgroupBarrier();
    if li < min(RPW, p.per - rb) / 16u {
        store_q8_half(slot * p.per + rb + 16u * li, 16u * li);
    }
}
