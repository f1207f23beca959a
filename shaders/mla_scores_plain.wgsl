// mla_flash's step scores on the shader cores (mla.wgsl's flash_scores); sg is unused.
fn flash_step_scores(q0: u32, rows: u32, k0: u32, n: u32, j: u32, sg: u32) {
    flash_scores(q0, rows, k0, n, j);
}
