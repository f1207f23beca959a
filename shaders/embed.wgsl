// Rows `ids` of a table in any GGUF block format into f32 rows, one workgroup per token.
// The ids are u32 values from the host, or f32 ones that the argmax kernel left on the device.

struct Params {
    cols: u32,
    t: u32,
    row0: u32,
    rows: u32,
    float_ids: u32,
}

@group(0) @binding(0) var<storage, read> w: array<u32>;
@group(0) @binding(1) var<storage, read> ids: array<u32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var<uniform> p: Params;

@compute @workgroup_size(64)
fn embed(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let tok = wid.x + wid.y * nwg.x;
    if tok >= p.t {
        return;
    }
    // A table split over several buffers is embedded by one dispatch per buffer.
    let id = select(ids[tok], u32(bitcast<f32>(ids[tok])), p.float_ids != 0u);
    if id < p.row0 || id >= p.row0 + p.rows {
        return;
    }
    let rb = (id - p.row0) * (p.cols / QK) * BLOCK_BYTES;
    let units = (p.cols / QK) * (QK / PV);
    for (var u = li; u < units; u += 64u) {
        let blk = u / (QK / PV);
        let part = u % (QK / PV);
        let v = part_values(rb + blk * BLOCK_BYTES, part);
        let o = tok * p.cols + blk * QK + part * PV;
        for (var i = 0u; i < PV4; i++) {
            y[o + 4u * i] = v[i].x;
            y[o + 4u * i + 1u] = v[i].y;
            y[o + 4u * i + 2u] = v[i].z;
            y[o + 4u * i + 3u] = v[i].w;
        }
    }
}
