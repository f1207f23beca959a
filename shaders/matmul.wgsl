// y = x · Wᵀ for a weight in any GGUF block format (the type file prepended to this one defines
// QK, BLOCK_BYTES, PV, PV4 and part_values). The weight is read straight from its raw blocks.
// Prompts: `matmul` and `matmul_grouped`, tiled products (below); a decoded token's products
// are matvec.wgsl's. Parameters and bindings: matmul_io.wgsl.

// The prompt products, tiled: a workgroup computes TM weight rows × TN tokens. Per step of TK
// values it decodes the TM rows' part into workgroup memory once (each weight byte is read
// once per TN tokens, not once per token) and stages the TN tokens' activations beside it;
// each thread then accumulates 4 rows × 4 tokens from vec4 reads of both tiles.
// `matmul` tiles one matrix over consecutive tokens; `matmul_grouped` (a prompt's MoE) tiles
// each expert over the (token, slot) pairs routed to it, listed by `moe_group`; `matmul_split`
// is `matmul` with the row's values split into slices, one partial product per slice (below).
const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 32u;

// [k][row] and [k][token], so that a thread's 4 rows (4 tokens) are one vec4.
var<workgroup> wtile: array<vec4<f32>, TK * TM / 4u>;
var<workgroup> xtile: array<vec4<f32>, TK * TN / 4u>;

// acc[j][i]: this thread's row 4 tr + i, token 4 tc + j of the tile, summed over values
// kb..ke (kb a multiple of TK). The weight rows are wrow0.. of the part (wrows of them exist);
// ntok tile tokens exist.
fn tile_product(li: u32, wrow0: u32, wrows: u32, ntok: u32, kb: u32, ke: u32) -> array<vec4<f32>, 4> {
    let tr = li % (TM / 4u);
    let tc = li / (TM / 4u);
    var acc: array<vec4<f32>, 4>;
    let parts_per_step = TK / PV;
    let rbytes = row_bytes();
    for (var k0 = kb; k0 < ke; k0 += TK) {
        for (var q = li; q < TM * parts_per_step; q += 256u) {
            let r = q % TM;
            let pp = q / TM;
            let kv = k0 + pp * PV;
            var v: array<vec4<f32>, PV4>;
            if r < wrows && kv < ke {
                v = part_values((wrow0 + r) * rbytes + (kv / QK) * BLOCK_BYTES, (kv % QK) / PV);
            }
            for (var i = 0u; i < PV4; i++) {
                for (var c = 0u; c < 4u; c++) {
                    let kk = pp * PV + 4u * i + c;
                    wtile[(kk * TM + r) / 4u][r % 4u] = v[i][c];
                }
            }
        }
        for (var q = li; q < TN * (TK / 4u); q += 256u) {
            let tok = q % TN;
            let c4 = q / TN;
            var v = vec4<f32>(0.0);
            if tok < ntok && k0 + 4u * c4 < ke {
                v = x[(p.x_off + xrow[tok] * p.x_stride + k0) / 4u + c4];
            }
            for (var c = 0u; c < 4u; c++) {
                let kk = 4u * c4 + c;
                xtile[(kk * TN + tok) / 4u][tok % 4u] = v[c];
            }
        }
        workgroupBarrier();
        // A prompt's expert gets ~16 pairs on average: the threads (whole subgroups, tokens
        // being li / 16) whose tokens all lie past the tile's last skip the multiply-adds.
        if 4u * tc < ntok {
            for (var kk = 0u; kk < TK; kk++) {
                let wv = wtile[kk * (TM / 4u) + tr];
                let xv = xtile[kk * (TN / 4u) + tc];
                acc[0] += wv * xv.x;
                acc[1] += wv * xv.y;
                acc[2] += wv * xv.z;
                acc[3] += wv * xv.w;
            }
        }
        workgroupBarrier();
    }
    return acc;
}

// Writes the tile: row i of the tile to output column col0 + i of row yrow[token], rows
// p.y_stride values apart from y0 on.
fn store_tile(li: u32, acc: array<vec4<f32>, 4>, y0: u32, col0: u32, wrows: u32, ntok: u32) {
    let tr = li % (TM / 4u);
    let tc = li / (TM / 4u);
    for (var j = 0u; j < 4u; j++) {
        let tok = 4u * tc + j;
        for (var i = 0u; i < 4u; i++) {
            let r = 4u * tr + i;
            if tok < ntok && r < wrows {
                y[y0 + yrow[tok] * p.y_stride + col0 + r] = acc[j][i];
            }
        }
    }
}

@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let o = dense_tile(wid.x + wid.y * nwg.x, li);
    if o.y >= p.t {
        return;
    }
    let wrows = min(TM, p.rows - o.x);
    let ntok = min(TN, p.t - o.y);
    let acc = tile_product(li, o.x, wrows, ntok, 0u, p.cols);
    store_tile(li, acc, p.y_off, p.row0 + o.x, wrows, ntok);
}

// `matmul` of a matrix with too few tiles to fill the GPU (the MoE router: 256 rows, so a
// 512-token prompt is 32 tiles for 132 SMs, 8192 threads each summing 16 outputs over all
// 2304 values, latency-bound): workgroup lin computes tile lin % tiles over slice lin / tiles
// of the values, p.per of them (a multiple of TK), and writes that slice's partial product to
// its own copy of the output, p.t · p.y_stride values per slice. `sum_slices`
// (elementwise.wgsl) then adds the copies in slice order.
@compute @workgroup_size(256)
fn matmul_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let lin = wid.x + wid.y * nwg.x;
    let tiles = ((p.rows + TM - 1u) / TM) * ((p.t + TN - 1u) / TN);
    let slice = lin / tiles;
    let kb = slice * p.per;
    if kb >= p.cols {
        return;
    }
    let o = dense_tile(lin % tiles, li);
    let wrows = min(TM, p.rows - o.x);
    let ntok = min(TN, p.t - o.y);
    let acc = tile_product(li, o.x, wrows, ntok, kb, min(kb + p.per, p.cols));
    store_tile(li, acc, p.y_off + slice * p.t * p.y_stride, p.row0 + o.x, wrows, ntok);
}

// ids: the pair indices grouped by expert (p.t of them), each expert's span in starts. Pair q
// reads activation row q / x_div and writes output row q.
@compute @workgroup_size(256)
fn matmul_grouped(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32) {
    let tile = expert_tile(wid.x + wid.y * nwg.x);
    if tile.z == 0u {
        return;
    }
    let r0 = tile.y;
    let wrow0 = tile.x * p.per - p.row0 + r0;
    let wrows = min(TM, p.per - r0);
    let se = expert_span(tile.x);
    for (var c0 = se.x; c0 < se.y; c0 += TN) {
        let ntok = min(TN, se.y - c0);
        stage_pairs(li, c0, ntok);
        let acc = tile_product(li, wrow0, wrows, ntok, 0u, p.cols);
        store_tile(li, acc, p.y_off, r0, wrows, ntok);
        workgroupBarrier();
    }
}
