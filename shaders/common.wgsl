// Byte access into GGUF blocks kept as raw bytes in `w` (declared by each kernel; read through
// `wd` and `wq` of words_u32.wgsl or words_vec4.wgsl).
// Blocks of Q8_0 (34 B), Q4_0 (18 B), Q5_0 (22 B), Q3_K (110 B) and Q6_K (210 B) are not
// 4-byte aligned, so every multi-byte read goes through a stitching helper.

// The 4 bytes at byte offset `off`, little endian, whatever its alignment.
fn u32at(off: u32) -> u32 {
    let i = off >> 2u;
    let sh = (off & 3u) * 8u;
    if sh == 0u {
        return wd(i);
    }
    return (wd(i) >> sh) | (wd(i + 1u) << (32u - sh));
}

fn byte_at(off: u32) -> u32 {
    return (wd(off >> 2u) >> ((off & 3u) * 8u)) & 0xffu;
}

// A 16-bit value at an even offset never straddles two words.
fn u16at(off: u32) -> u32 {
    return (wd(off >> 2u) >> ((off & 2u) * 8u)) & 0xffffu;
}

fn f16at(off: u32) -> f32 {
    return unpack2x16float(u16at(off)).x;
}

// The 4 bytes at `off` as unsigned values.
fn b4(off: u32) -> vec4<u32> {
    let x = u32at(off);
    return vec4<u32>(x & 0xffu, (x >> 8u) & 0xffu, (x >> 16u) & 0xffu, x >> 24u);
}

// The 4 bytes at `off` as signed values.
fn b4i(off: u32) -> vec4<i32> {
    let x = bitcast<i32>(u32at(off));
    return vec4<i32>((x << 24u) >> 24u, (x << 16u) >> 24u, (x << 8u) >> 24u, x >> 24u);
}

// The 16 bytes at byte offset `off`, whatever its alignment: five word loads, where four
// `u32at` would make eight. The fifth word is read only where `off` is not 4-byte aligned; the
// integer dot products use it only where more of the block follows (dot/q6_k_q8.wgsl,
// dot/q3_k_q8.wgsl).
fn bytes16at(off: u32) -> vec4<u32> {
    let i = off >> 2u;
    let a = vec4<u32>(wd(i), wd(i + 1u), wd(i + 2u), wd(i + 3u));
    let sh = (off & 3u) * 8u;
    if sh == 0u {
        return a;
    }
    let b = vec4<u32>(a.y, a.z, a.w, wd(i + 4u));
    return (a >> vec4<u32>(sh)) | (b << vec4<u32>(32u - sh));
}
