// The cooperative-matrix kernels' f16 operands (matmul_coop.wgsl, mla_flash_coop.wgsl): f32
// values clamped to f16's range, so that a value past it stages as the largest f16 rather
// than infinity. The host puts this after the `enable` directives.

// Largest f16.
const F16_MAX: f32 = 65504.0;

fn to_f16(v: vec4<f32>) -> vec4<f16> {
    return vec4<f16>(clamp(v, vec4<f32>(-F16_MAX), vec4<f32>(F16_MAX)));
}
