// What the f16 weight parts of quant/half/ share: small integers made f16 without a conversion
// instruction each (those run at a quarter of the SMs' rate on NVIDIA, and a weight took two:
// integer to f32, f32 to f16).

// The four bytes of v as the f16 values 1024 + byte, exactly: a byte in the low mantissa bits
// of 1024.0 (f16 0x6400). Bytes 0 and 2, then 1 and 3, go into the two halves of a word.
// (naga 30 types bitcast<vec2<f16>>(u32) as f32, so unpack2x16float stands in for it; the
// driver makes the pair a no-op.)
fn bytes_at_1024(v: u32) -> vec4<f16> {
    let e = vec2<f16>(unpack2x16float((v & 0x00ff00ffu) | 0x64006400u));
    let o = vec2<f16>(unpack2x16float(((v >> 8u) & 0x00ff00ffu) | 0x64006400u));
    return vec4<f16>(e.x, o.x, e.y, o.y);
}
