// The activations x_q8.wgsl stages for a decoded token's KDA output projection: the gated
// RMSNorm of the delta rule's output x, per head of p.per values (the head dim),
// w ⊙ x / sqrt(mean(x²) + eps) ⊙ sigmoid(gate), as the `gated_rms_norm` kernel computes it, so
// that the norm needs no dispatch of its own. Each workgroup first computes every head's
// inverse norm (x_prepare). The host passes the head dim in p.per and eps's bits in p.mode
// (fields a plain matvec does not read), and at most GN_MAX_HEADS heads.
@group(0) @binding(6) var<storage, read> gn_gate: array<vec4<f32>>;
@group(0) @binding(7) var<storage, read> gn_w: array<vec4<f32>>;

const GN_MAX_HEADS: u32 = 256u;
var<workgroup> gn_inv: array<f32, GN_MAX_HEADS>;

// Each head's sum of squares is split over the threads a head gets (MV_WG / heads, up to 32):
// one thread per head walking its 128 values made every workgroup wait for 32 loads in turn
// before staging.
var<workgroup> gn_part: array<f32, MV_WG>;

fn x_prepare(li: u32, xb0: u32, n: u32) {
    let d4 = p.per / 4u;
    let heads = n / p.per;
    var tph = 1u;
    while tph * 2u * heads <= MV_WG && tph < 32u {
        tph *= 2u;
    }
    let h = li / tph;
    let part = li % tph;
    var ss = vec4<f32>(0.0);
    if h < heads {
        for (var i = part; i < d4; i += tph) {
            let v = x[xb0 + h * d4 + i];
            ss += v * v;
        }
    }
    gn_part[li] = ss.x + ss.y + ss.z + ss.w;
    workgroupBarrier();
    if h < heads && part == 0u {
        var sum = 0.0;
        for (var k = 0u; k < tph; k++) {
            sum += gn_part[li + k];
        }
        gn_inv[h] = 1.0 / sqrt(sum / f32(p.per) + bitcast<f32>(p.mode));
    }
    workgroupBarrier();
}

fn x_at(i: u32) -> vec4<f32> {
    let r = i - x_base;
    let d4 = p.per / 4u;
    let g = gn_gate[i];
    return gn_w[r % d4] * (x[i] * gn_inv[r / d4]) / (1.0 + exp(-g));
}
