//! `--backend`, `--gpu` and `--exact`, shared by every command that runs the model, and the
//! choice of backend they make.

use clap::{Args, ValueEnum};
use kiln::backend::wgpu::list_adapters;

/// The backends a command can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// CUDA when built and present, else wgpu on a hardware adapter, else the CPU.
    Auto,
    Cpu,
    Wgpu,
}

#[derive(Args, Debug, Clone)]
pub struct BackendArgs {
    #[arg(long, value_enum, default_value_t = BackendKind::Auto)]
    pub backend: BackendKind,
    /// Which GPU adapter to use, as `kiln inspect --devices` numbers them.
    #[arg(long)]
    pub gpu: Option<usize>,
    /// CPU backend: take every dot product in f32 against dequantized weights (reference path).
    #[arg(long)]
    pub exact: bool,
}

impl BackendArgs {
    /// The backend `auto` stands for on this machine. A software Vulkan device (lavapipe) is
    /// slower than the CPU backend, so `auto` only takes a hardware adapter; `--backend wgpu`
    /// still runs on one.
    pub fn resolve(&self) -> BackendKind {
        match self.backend {
            BackendKind::Auto => {
                let hardware = list_adapters()
                    .into_iter()
                    .any(|a| self.gpu.is_none_or(|g| g == a.index) && a.device_type != "Cpu");
                if hardware {
                    BackendKind::Wgpu
                } else {
                    BackendKind::Cpu
                }
            }
            other => other,
        }
    }
}

/// Runs `$body` with `$b` bound to the backend `$args` (a [`BackendArgs`]) selects, so each
/// command is written once, generic over [`kiln::backend::Backend`].
macro_rules! with_backend {
    ($args:expr, |$b:ident| $body:expr) => {{
        let args: &$crate::cli::backend::BackendArgs = $args;
        match args.resolve() {
            $crate::cli::backend::BackendKind::Wgpu => {
                let $b = &kiln::backend::wgpu::WgpuBackend::new(args.gpu)?;
                $body
            }
            _ => {
                let $b = &kiln::backend::cpu::CpuBackend::new(args.exact);
                $body
            }
        }
    }};
}
pub(crate) use with_backend;
