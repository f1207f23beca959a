// Word access into a weight bound as `w: array<u32>` (block types whose blocks are not all
// 16-byte aligned). `wq` is the 16 bytes at quad index i, four word loads.

fn wd(i: u32) -> u32 {
    return w[i];
}

fn wq(i: u32) -> vec4<u32> {
    let j = 4u * i;
    return vec4<u32>(w[j], w[j + 1u], w[j + 2u], w[j + 3u]);
}
