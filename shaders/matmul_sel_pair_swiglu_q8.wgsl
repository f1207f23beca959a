// What `matmul_sel_pair` also writes for a decoded token's `moe_down` on integer dot products:
// silu(gate) ⊙ up of its rows in 8 bits, in x_q8_global.wgsl's layout (value slot · per + row),
// so that `moe_down` reads them instead of staging the SwiGLU in every workgroup. The host
// takes this where a workgroup's rows are whole halves of groups (RPW and per multiples of 16)
// and the outputs are slot-major (y_off 0, y_stride per).
@group(0) @binding(8) var<storage, read_write> yq: array<vec4<u32>>;

var<workgroup> act: array<f32, MV_WG>;

// s[k] holds the gate and up products of row r + k (k < n) in lane 0 of each row group; the
// workgroup's rows start at rb of slot `slot`.
fn store_act(li: u32, lane: u32, slot: u32, rb: u32, r: u32, n: u32, s: array<vec2<f32>, 4>) {
    if lane == 0u {
        for (var k = 0u; k < n; k++) {
            let g = s[k].x;
            act[r - rb + k] = g / (1.0 + exp(-g)) * s[k].y;
        }
    }
    workgroupBarrier();
    if li < min(RPW, p.per - rb) / 16u {
        var v: array<vec4<f32>, 4>;
        var amax = vec4<f32>(0.0);
        for (var i = 0u; i < 4u; i++) {
            let a = 16u * li + 4u * i;
            v[i] = vec4<f32>(act[a], act[a + 1u], act[a + 2u], act[a + 3u]);
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
        let at = slot * p.per + rb + 16u * li;
        let g = at / 32u;
        let h = (at / 16u) % 2u;
        let d = m / 127.0;
        yq[3u * g + h] = w;
        yq[3u * g + 2u][2u * h] = bitcast<u32>(d);
        yq[3u * g + 2u][2u * h + 1u] = bitcast<u32>(d * sum);
    }
}
