// The prompt products of matmul.wgsl (`matmul`, `matmul_grouped`) on cooperative matrices
// (tensor cores): per step of TK values the workgroup decodes its TM weight rows to f16 in
// workgroup memory and stages its TN tokens' activations as f16 beside them; its 8 subgroups
// then multiply 16×16×16 blocks into f32 accumulators. Only on adapters with f16 16×16
// cooperative matrices, subgroups of 32 and 48 KiB of workgroup memory (the host checks); its
// own module because the `enable` directives must open it. The host prepends the tile, TM × TN,
// and f16_operands.wgsl (to_f16). Every workgroup variable in the module is a whole number of
// 16 bytes, or NVIDIA's driver may start the cooperative loads' arrays off 16 bytes (wrong
// outputs; the kernels test `cooperative_matrix_workgroup_variables_are_whole_16_bytes`).

// Parameters and bindings: matmul_io.wgsl.

const TK: u32 = 128u;
// Row stride of the tiles: 16 bytes of padding spread the threads' stores over the banks.
const TKP: u32 = TK + 8u;
const WG: u32 = 256u;
// Row blocks of 16 in a tile; each subgroup owns one, and NB token blocks of 16 of it.
const RB: u32 = TM / 16u;
const NB: u32 = TN / 16u / (8u / RB);
// Weight parts (PV = 32 values for every block type) and activation vec4s per thread and step.
const WPARTS: u32 = TM * (TK / PV) / WG;
const XVECS: u32 = TN * (TK / 4u) / WG;

// [row][k] and [token][k] as f16 vec4s: A loads row-major, B (k × token) column-major, both
// stride TKP values. A vec4 is one 8-byte store where four f16 stores were four instructions
// (the cooperative loads take their offset and stride in the array's elements, vec4s here).
const TKP4: u32 = TKP / 4u;
var<workgroup> wt: array<vec4<f16>, TM * TKP4>;
var<workgroup> xt: array<vec4<f16>, TN * TKP4>;
// Each subgroup's finished 16×16 block, column-major, on its way to the output rows.
var<workgroup> stage: array<f32, 2048>;

fn row_bytes() -> u32 {
    return (p.cols / QK) * BLOCK_BYTES;
}

// Decodes rows wrow0.. (wrows exist; their blocks' `part_values_f16`, quant/half/) and stages
// the tile tokens (ntok exist), values k0..k0+TK. Every global read is issued before the first
// workgroup store, so that a thread has them all in flight at once (a load-store loop waits
// out each one).
fn load_tiles(li: u32, k0: u32, wrow0: u32, wrows: u32, ntok: u32) {
    let per_row = TK / PV;
    let rbytes = row_bytes();
    var wv: array<array<vec4<f16>, PV4>, WPARTS>;
    for (var j = 0u; j < WPARTS; j++) {
        let q = li + j * WG;
        let r = q / per_row;
        let kv = k0 + (q % per_row) * PV;
        if r < wrows && kv < p.cols {
            wv[j] = part_values_f16((wrow0 + r) * rbytes + (kv / QK) * BLOCK_BYTES, (kv % QK) / PV);
        }
    }
    var xv: array<vec4<f32>, XVECS>;
    for (var j = 0u; j < XVECS; j++) {
        let q = li + j * WG;
        let tok = q / (TK / 4u);
        let c4 = q % (TK / 4u);
        if tok < ntok && k0 + 4u * c4 < p.cols {
            xv[j] = x[(p.x_off + xrow[tok] * p.x_stride + k0) / 4u + c4];
        }
    }
    // Rows and tokens past the tile's keep what they held: they meet only outputs that are
    // not written. Values past the row's end are zero in both.
    for (var j = 0u; j < WPARTS; j++) {
        let q = li + j * WG;
        if q / per_row < wrows {
            let row_at = (q / per_row) * TKP4 + (q % per_row) * PV4;
            for (var i = 0u; i < PV4; i++) {
                wt[row_at + i] = wv[j][i];
            }
        }
    }
    for (var j = 0u; j < XVECS; j++) {
        let q = li + j * WG;
        if q / (TK / 4u) < ntok {
            xt[(q / (TK / 4u)) * TKP4 + q % (TK / 4u)] = to_f16(xv[j]);
        }
    }
}

// Writes every subgroup's staged block j: row block s % RB, token block (s / RB) NB + j, to
// output column col0 + row of row yrow[token]. Any thread may write any subgroup's block.
fn write_blocks(li: u32, j: u32, col0: u32, wrows: u32, ntok: u32) {
    for (var e = li; e < 2048u; e += WG) {
        let s = e / 256u;
        let row = (s % RB) * 16u + e % 16u;
        let tok = ((s / RB) * NB + j) * 16u + (e / 16u) % 16u;
        if row < wrows && tok < ntok {
            y[p.y_off + yrow[tok] * p.y_stride + col0 + row] = stage[e];
        }
    }
}

// The tile of rows wrow0.. of the part × the tokens in xrow, into output columns col0...
fn coop_tile(li: u32, sg: u32, wrow0: u32, wrows: u32, ntok: u32, col0: u32) {
    let a_at = (sg % RB) * 16u * TKP4;
    let b_at = (sg / RB) * NB * 16u * TKP4;
    var acc0 = coop_mat16x16<f32, C>();
    var acc1 = coop_mat16x16<f32, C>();
    for (var k0 = 0u; k0 < p.cols; k0 += TK) {
        load_tiles(li, k0, wrow0, wrows, ntok);
        workgroupBarrier();
        for (var ks = 0u; ks < TK / 4u; ks += 4u) {
            let a = coopLoadT<coop_mat16x16<f16, A>>(&wt[a_at + ks], TKP4);
            let b0 = coopLoad<coop_mat16x16<f16, B>>(&xt[b_at + ks], TKP4);
            acc0 = coopMultiplyAdd(a, b0, acc0);
            if NB > 1u {
                let b1 = coopLoad<coop_mat16x16<f16, B>>(&xt[b_at + 16u * TKP4 + ks], TKP4);
                acc1 = coopMultiplyAdd(a, b1, acc1);
            }
        }
        workgroupBarrier();
    }
    coopStore(acc0, &stage[sg * 256u], 16u);
    workgroupBarrier();
    write_blocks(li, 0u, col0, wrows, ntok);
    if NB > 1u {
        workgroupBarrier();
        coopStore(acc1, &stage[sg * 256u], 16u);
        workgroupBarrier();
        write_blocks(li, 1u, col0, wrows, ntok);
    }
}

@compute @workgroup_size(256)
fn matmul_coop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sg: u32) {
    let o = dense_tile(wid.x + wid.y * nwg.x, li);
    if o.y >= p.t {
        return;
    }
    coop_tile(li, sg, o.x, min(TM, p.rows - o.x), min(TN, p.t - o.y), p.row0 + o.x);
}

// As matmul_grouped: the pairs of expert e (its span in starts) in tiles of TN, against the
// expert's TM-row tile.
@compute @workgroup_size(256)
fn matmul_grouped_coop(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) li: u32, @builtin(subgroup_id) sg: u32) {
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
        coop_tile(li, sg, wrow0, wrows, ntok, r0);
        workgroupBarrier();
    }
}
