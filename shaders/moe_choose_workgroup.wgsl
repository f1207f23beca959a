// The routing choice through workgroup memory (see `moe_route`), for devices without subgroup
// operations: every expert's rank in the stable descending order of score + bias is the number
// of experts that beat it; the n_used of rank below n_used are the chosen ones.

var<workgroup> keys: array<u32, MAX_EXPERTS>;
var<workgroup> scores: array<f32, MAX_EXPERTS>;

fn choose(tok: u32, th: Thread) {
    let lb = tok * p.n_expert;
    for (var e = th.li; e < p.n_expert; e += ROUTE_WG) {
        let s = sigmoid(logits[lb + e]);
        scores[e] = s;
        keys[e] = order_key(s + bias[e]);
    }
    workgroupBarrier();
    for (var e = th.li; e < p.n_expert; e += ROUTE_WG) {
        let k = keys[e];
        var rank = 0u;
        for (var j = 0u; j < p.n_expert; j++) {
            if beats(keys[j], j, k, e) {
                rank++;
            }
        }
        if rank < p.n_used {
            chosen_e[rank] = e;
            chosen_s[rank] = scores[e];
        }
    }
    workgroupBarrier();
}
