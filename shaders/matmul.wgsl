// y = x · Wᵀ for a weight in any GGUF block format (the type file prepended to this one defines
// QK, BLOCK_BYTES, PV, PV4 and part_values). The weight is read straight from its raw blocks.
//
// A workgroup owns one weight row: its 64 threads stride over the row's parts (32 values of a
// quantized block, 4 of a float row), so each weight byte is read once per workgroup; the
// per-thread partial sums are reduced in workgroup memory. `matmul` lets a workgroup serve TT
// tokens so that a prefill reads each weight row once per TT tokens; `matmul_sel` serves one
// (token, expert) pair and picks the expert's matrix inside a stacked tensor on the GPU, so that
// the MoE and the per-head MLA products run without a host round trip.

struct Params {
    rows: u32,
    cols: u32,
    t: u32,
    row0: u32,
    x_stride: u32,
    x_off: u32,
    y_stride: u32,
    y_off: u32,
    per: u32,
    x_div: u32,
    mode: u32,
    heads: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;
@group(0) @binding(4) var<storage, read> ids: array<u32>;

const WG: u32 = 64u;
const TT: u32 = 4u;

var<workgroup> red: array<f32, 256>;

fn row_bytes() -> u32 {
    return (p.cols / QK) * BLOCK_BYTES;
}

// Sums red[s * WG..][..WG] into red[s * WG] for every slot s < TT.
fn reduce(li: u32) {
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        workgroupBarrier();
        if li < step {
            for (var s = 0u; s < TT; s++) {
                red[s * WG + li] += red[s * WG + li + step];
            }
        }
    }
    workgroupBarrier();
}

@compute @workgroup_size(64)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    let row = lin % p.rows;
    let tok0 = (lin / p.rows) * TT;
    if tok0 >= p.t {
        return;
    }
    let nt = min(TT, p.t - tok0);
    let rb = row * row_bytes();
    let units = (p.cols / QK) * (QK / PV);
    var acc = array<f32, TT>(0.0, 0.0, 0.0, 0.0);
    for (var u = li; u < units; u += WG) {
        let blk = u / (QK / PV);
        let part = u % (QK / PV);
        let v = part_values(rb + blk * BLOCK_BYTES, part);
        let xo = (blk * QK + part * PV) / 4u;
        for (var s = 0u; s < nt; s++) {
            let xb = (p.x_off + (tok0 + s) * p.x_stride) / 4u + xo;
            var sum = 0.0;
            for (var i = 0u; i < PV4; i++) {
                sum += dot(v[i], x[xb + i]);
            }
            acc[s] += sum;
        }
    }
    for (var s = 0u; s < TT; s++) {
        red[s * WG + li] = acc[s];
    }
    reduce(li);
    if li < nt {
        y[p.y_off + (tok0 + li) * p.y_stride + p.row0 + row] = red[li * WG];
    }
}

@compute @workgroup_size(64)
fn matmul_sel(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    let r = lin % p.per;
    let pair = lin / p.per;
    if pair >= p.t {
        return;
    }
    var e: u32;
    if p.mode == 0u {
        e = ids[pair];
    } else {
        e = pair % p.heads;
    }
    let grow = e * p.per + r;
    if grow < p.row0 || grow >= p.row0 + p.rows {
        return;
    }
    let rb = (grow - p.row0) * row_bytes();
    let units = (p.cols / QK) * (QK / PV);
    let xb0 = (p.x_off + (pair / p.x_div) * p.x_stride) / 4u;
    var acc = 0.0;
    for (var u = li; u < units; u += WG) {
        let blk = u / (QK / PV);
        let part = u % (QK / PV);
        let v = part_values(rb + blk * BLOCK_BYTES, part);
        let xb = xb0 + (blk * QK + part * PV) / 4u;
        for (var i = 0u; i < PV4; i++) {
            acc += dot(v[i], x[xb + i]);
        }
    }
    red[li] = acc;
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        workgroupBarrier();
        if li < step {
            red[li] += red[li + step];
        }
    }
    if li == 0u {
        y[p.y_off + pair * p.y_stride + r] = red[0];
    }
}
