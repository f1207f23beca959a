// What the decode products' per-thread walk over a weight's rows (`rows_dot`, in the type's
// dot file) shares. `matvecs` gets one renamed copy of this file per weight binding.

fn row_bytes() -> u32 {
    return (p.cols / QK) * BLOCK_BYTES;
}
