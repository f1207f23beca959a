// Word access into a weight bound as `w: array<vec4<u32>>`: for block types whose block size
// is a multiple of 16 bytes (Q4_K, Q5_K), so that a thread reads 16 bytes of a block in one
// load instead of four (the host declares the binding this way for them).

fn wd(i: u32) -> u32 {
    return w[i >> 2u][i & 3u];
}

fn wq(i: u32) -> vec4<u32> {
    return w[i];
}
