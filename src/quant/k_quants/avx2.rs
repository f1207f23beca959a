use super::{BlockQ2K, BlockQ3K, BlockQ4K, BlockQ5K, BlockQ6K, BlockQ8K};
pub(super) unsafe fn dot_q2_k(w: &[BlockQ2K], x: &[BlockQ8K]) -> f32 {
    super::q2_k::dot_portable(w, x)
}
pub(super) unsafe fn dot_q3_k(w: &[BlockQ3K], x: &[BlockQ8K]) -> f32 {
    super::q3_k::dot_portable(w, x)
}
pub(super) unsafe fn dot_q4_k(w: &[BlockQ4K], x: &[BlockQ8K]) -> f32 {
    super::q4_k::dot_portable(w, x)
}
pub(super) unsafe fn dot_q5_k(w: &[BlockQ5K], x: &[BlockQ8K]) -> f32 {
    super::q5_k::dot_portable(w, x)
}
pub(super) unsafe fn dot_q6_k(w: &[BlockQ6K], x: &[BlockQ8K]) -> f32 {
    super::q6_k::dot_portable(w, x)
}
