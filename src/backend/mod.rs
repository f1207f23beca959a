//! The seam between the model and the hardware (DESIGN.md §2).
//!
//! The model is written once over [`Backend`], a short list of the fused operations Kimi Linear
//! needs; it is not a tensor library. Buffers are opaque: weights stay in their raw GGUF block
//! format wherever the backend keeps them, activations and state are f32 buffers that only the
//! backend touches. Nothing in the per-token loop reads back to the host except [`Backend::read`]
//! (logits) and [`Backend::argmax`]; greedy decoding can even leave the chosen id on the device
//! ([`Backend::argmax_to`], [`Backend::embed_from`]) and read it a step later
//! ([`Backend::read_later`]), so the host records the next token while the device runs this one.
//!
//! Every activation buffer holds `t` rows of a fixed width, row-major; the widths follow from
//! the weights and the dimension structs passed along.

pub mod cpu;
pub mod wgpu;

use crate::quant::{GgmlType, QuantError};

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("tensor {name}: {ty} has no kernels in this backend")]
    UnsupportedType { name: String, ty: GgmlType },
    #[error("tensor {name}: {bytes} bytes do not hold a {ty} tensor of shape {ne:?}")]
    ByteLength {
        name: String,
        ty: GgmlType,
        ne: [usize; 4],
        bytes: usize,
    },
    #[error("tensor {name}: expected {expected}, got shape {ne:?}")]
    Shape {
        name: String,
        expected: String,
        ne: [usize; 4],
    },
    #[error("buffer of {len} values is too small for {needed}")]
    BufferTooSmall { len: usize, needed: usize },
    #[error("token id {id} is outside the embedding table of {rows} rows")]
    TokenOutOfRange { id: u32, rows: usize },
    #[error("MLA cache holds {capacity} positions; {needed} are needed")]
    CacheFull { capacity: usize, needed: usize },
    #[error(transparent)]
    Quant(#[from] QuantError),
    /// The GPU device reported an error (validation, out of memory, no adapter).
    #[error("gpu: {0}")]
    Gpu(String),
}

pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// A tensor as the GGUF file holds it: `ne[0]` is the row length (fastest), unused dims are 1.
#[derive(Clone, Copy, Debug)]
pub struct TensorBytes<'w> {
    pub name: &'w str,
    pub ty: GgmlType,
    pub ne: [usize; 4],
    pub bytes: &'w [u8],
}

impl TensorBytes<'_> {
    pub fn n_elements(&self) -> usize {
        self.ne.iter().product()
    }
}

/// Dimensions of a KDA layer: `heads` heads of `head_dim` key and value channels.
#[derive(Clone, Copy, Debug)]
pub struct KdaDims {
    pub heads: usize,
    pub head_dim: usize,
    /// Short-convolution width (4): the state keeps `conv_kernel - 1` past inputs per channel.
    pub conv_kernel: usize,
    /// eps inside the square root of the q/k L2 norm.
    pub l2_eps: f32,
}

impl KdaDims {
    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }
}

/// The per-token inputs of the delta rule, all `[t, heads * head_dim]` except `beta`
/// (`[t, heads]`), and the gate weights. q and k are raw (normalised inside the op); g and beta
/// are raw too: the op applies the gates, `g ← a[h] · softplus(g + dt_bias)` (the log-space
/// decay; `a` = −exp(A_log) per head) and `beta ← sigmoid(beta)`, as it reads them, so that a
/// GPU backend needs no pass of their own.
pub struct KdaInputs<'a, 'w, B: Backend + ?Sized> {
    pub q: &'a B::Buf,
    pub k: &'a B::Buf,
    pub v: &'a B::Buf,
    pub g: &'a B::Buf,
    pub beta: &'a B::Buf,
    /// `[heads * head_dim]`.
    pub dt_bias: &'a B::Weight<'w>,
    /// `[heads]`.
    pub a: &'a B::Weight<'w>,
}

/// What `kiln bench` does to the dispatches of the kernels it measures in the running stream
/// ([`Backend::alter`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Alter {
    /// Left out (`--ablate`): the time saved is what the kernel costs, launch and barrier
    /// included.
    #[default]
    LeaveOut,
    /// Dispatched twice, the second right after the first (`--repeat`): the time added is what
    /// the kernel costs with what it read still in the GPU's caches (its weights, where they
    /// fit in L2), so a kernel that costs as much again is not bound by memory bandwidth.
    Twice,
}

/// What a KDA layer computes after its projections ([`Backend::kda_tail`]): the delta rule's
/// q, k, v (through their convolutions) and raw β, the low-rank inputs of the decay's and the
/// output gate's up-projections, and the weights of the gates, the norm and the output
/// projection.
pub struct KdaTail<'a, 'w, B: Backend + ?Sized> {
    pub q: &'a B::Buf,
    pub k: &'a B::Buf,
    pub v: &'a B::Buf,
    pub beta: &'a B::Buf,
    /// `[t, rank]` each: `f_b · f_low` is the raw decay g, `g_b · g_low` the output gate.
    pub f_low: &'a B::Buf,
    pub g_low: &'a B::Buf,
    pub f_b: &'a B::Weight<'w>,
    pub g_b: &'a B::Weight<'w>,
    pub dt_bias: &'a B::Weight<'w>,
    pub a: &'a B::Weight<'w>,
    /// `[head_dim]`: the gated RMSNorm's weight, and its eps.
    pub norm: &'a B::Weight<'w>,
    pub eps: f32,
    /// The output projection.
    pub out: &'a B::Weight<'w>,
}

/// Dimensions of an MLA layer.
#[derive(Clone, Copy, Debug)]
pub struct MlaDims {
    pub heads: usize,
    pub kv_lora: usize,
    pub nope: usize,
    pub rope: usize,
    pub v_dim: usize,
    /// eps of the latent RMSNorm.
    pub norm_eps: f32,
}

impl MlaDims {
    /// Width of one cached token: the normalised latent then the shared rope key.
    pub fn cache_width(&self) -> usize {
        self.kv_lora + self.rope
    }
}

/// The weights the absorbed MLA attention reads.
pub struct MlaWeights<W> {
    /// `[kv_lora]` RMSNorm weight of the latent.
    pub kv_norm: W,
    /// ne `[nope, kv_lora, heads]`: per head, `W_UK(h)ᵀ` (kv_lora rows of nope).
    pub k_b: W,
    /// ne `[kv_lora, v_dim, heads]`: per head, `W_UV(h)` (v_dim rows of kv_lora).
    pub v_b: W,
}

/// A SwiGLU feed-forward: `down(silu(gate x) ⊙ up x)`.
pub struct FfnWeights<W> {
    pub gate: W,
    pub up: W,
    pub down: W,
}

/// A mixture-of-experts block with sigmoid routing.
pub struct MoeWeights<W> {
    /// ne `[hidden, n_expert]`.
    pub router: W,
    /// `[n_expert]` correction bias, used only to choose experts.
    pub bias: W,
    /// ne `[hidden, ff, n_expert]`, `[hidden, ff, n_expert]`, `[ff, hidden, n_expert]`.
    pub experts: FfnWeights<W>,
    pub shared: Option<FfnWeights<W>>,
    pub n_used: usize,
    /// routed_scaling_factor: multiplies the renormalised expert weights.
    pub scale: f32,
}

/// The operations the model runs. Ops write into caller-allocated buffers; `t` is the number of
/// token rows in the call.
pub trait Backend: Sync {
    /// A weight tensor in its GGUF block format; may borrow the mapped file for `'w`.
    type Weight<'w>: Sync;
    /// An f32 buffer of activations or state.
    type Buf: Send;
    /// A read queued by [`Backend::read_later`], for [`Backend::fetch`].
    type Pending: Send;

    fn name(&self) -> &'static str;

    /// Starts timing every kernel on the device (`kiln bench --profile`). Backends without a
    /// kernel profiler say so.
    fn start_profile(&self) -> Result<()> {
        Err(BackendError::Gpu(format!(
            "the {} backend has no kernel profiler",
            self.name()
        )))
    }

    /// Leaves the dispatches recorded while `paused` out of the profile (`kiln bench --profile`
    /// fills a cache to its depth untimed); nothing where no profile runs.
    fn pause_profile(&self, _paused: bool) {}

    /// The `top` kernels by device time since [`Backend::start_profile`], as a table.
    fn profile_report(&self, _top: usize) -> Result<String> {
        Ok(String::new())
    }

    /// Kernel dispatches recorded so far, where the backend records them.
    fn dispatches(&self) -> Option<u64> {
        None
    }

    /// Bind groups (a dispatch's set of buffers) made so far, where the backend makes them.
    fn bind_groups_made(&self) -> Option<u64> {
        None
    }

    /// Alters every later dispatch of the kernels whose names start with one of `kernels` as
    /// `how` says (`kiln bench --ablate`, `--repeat`); an empty list ends that. Outputs become
    /// meaningless.
    fn alter(&self, _kernels: &[String], _how: Alter) -> Result<()> {
        Err(BackendError::Gpu(format!(
            "the {} backend records no kernels to leave out or repeat",
            self.name()
        )))
    }

    /// The device's copy bandwidth in bytes per second (bytes read plus bytes written), measured
    /// now, for `kiln bench`'s roofline; `None` where the backend has no device of its own.
    fn copy_bandwidth(&self) -> Result<Option<f64>> {
        Ok(None)
    }

    /// Makes a weight usable by the kernels, from the raw bytes of the file.
    fn upload<'w>(&self, t: TensorBytes<'w>) -> Result<Self::Weight<'w>>;
    /// A zeroed buffer of `len` f32 values.
    fn alloc(&self, len: usize) -> Result<Self::Buf>;
    /// A buffer of `len` f32 values whose contents are unspecified, for temporaries that an op
    /// writes whole before anything reads them; backends may recycle dropped ones.
    fn scratch(&self, len: usize) -> Result<Self::Buf> {
        self.alloc(len)
    }
    fn write(&self, buf: &mut Self::Buf, data: &[f32]) -> Result<()>;
    fn zero(&self, buf: &mut Self::Buf) -> Result<()>;
    /// Copies `len` values from `src[src_off..]` to `dst[dst_off..]`.
    fn copy(
        &self,
        src: &Self::Buf,
        src_off: usize,
        dst: &mut Self::Buf,
        dst_off: usize,
        len: usize,
    ) -> Result<()>;
    /// Copies the first `len` values back to the host (logits).
    fn read(&self, buf: &Self::Buf, len: usize) -> Result<Vec<f32>>;
    /// Submits the work recorded so far with a copy of the first `len` values of `buf` at its
    /// end, and returns without waiting: the host can record more while the device runs it.
    fn read_later(&self, buf: &Self::Buf, len: usize) -> Result<Self::Pending>;
    /// The values of a [`Backend::read_later`], once the device has got that far.
    fn fetch(&self, pending: Self::Pending) -> Result<Vec<f32>>;
    /// Index of the largest value of each of `t` rows of width `cols`.
    fn argmax(&self, x: &Self::Buf, t: usize, cols: usize) -> Result<Vec<u32>>;
    /// [`Backend::argmax`] into `ids` `[t]`, as f32 values (exact below 2^24), left where the
    /// next pass's [`Backend::embed_from`] reads them: no host round trip between tokens.
    fn argmax_to(&self, x: &Self::Buf, t: usize, cols: usize, ids: &mut Self::Buf) -> Result<()> {
        let v: Vec<f32> = self.argmax(x, t, cols)?.iter().map(|&i| i as f32).collect();
        self.write(ids, &v)
    }

    /// Rows `ids` of the table (ne `[hidden, vocab]`) into `out` `[t, hidden]`, as f32.
    fn embed(&self, table: &Self::Weight<'_>, ids: &[u32], out: &mut Self::Buf) -> Result<()>;
    /// [`Backend::embed`] of the `t` ids that `ids` holds as f32 values ([`Backend::argmax_to`]'s
    /// output). An id outside the table leaves its row unspecified on a GPU backend.
    fn embed_from(
        &self,
        table: &Self::Weight<'_>,
        ids: &Self::Buf,
        t: usize,
        out: &mut Self::Buf,
    ) -> Result<()> {
        let v: Vec<u32> = self.read(ids, t)?.iter().map(|&i| i as u32).collect();
        self.embed(table, &v, out)
    }
    /// `out[t, rows] = x[t, cols] · Wᵀ` for W with ne `[cols, rows]`.
    fn matmul(
        &self,
        w: &Self::Weight<'_>,
        x: &Self::Buf,
        t: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// [`Backend::matmul`] of one input with each job's weight into the job's buffer.
    /// Backends fuse the products where that saves passes (one launch for a decoded token's).
    fn matmuls(
        &self,
        x: &Self::Buf,
        t: usize,
        jobs: &mut [(&Self::Weight<'_>, &mut Self::Buf)],
    ) -> Result<()> {
        for (w, out) in jobs.iter_mut() {
            self.matmul(w, x, t, out)?;
        }
        Ok(())
    }
    /// Each job's own input times its weight, `out = x · Wᵀ` as [`Backend::matmul`]. Backends
    /// fuse the products where that saves passes (a decoded token's KDA f_b and g_b: one
    /// dispatch).
    fn matmuls_of(
        &self,
        t: usize,
        jobs: &mut [(&Self::Weight<'_>, &Self::Buf, &mut Self::Buf)],
    ) -> Result<()> {
        for (w, x, out) in jobs.iter_mut() {
            self.matmul(w, x, t, out)?;
        }
        Ok(())
    }
    /// `out = w ⊙ x / sqrt(mean(x²) + eps)` per row of width `w`'s length.
    fn rms_norm(
        &self,
        x: &Self::Buf,
        w: &Self::Weight<'_>,
        eps: f32,
        t: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// The residual add and the next norm: `acc ← acc + x` over `t` rows of `width`, then
    /// `out = rms_norm(acc)`. Backends fuse it where that saves a pass over the rows.
    #[allow(clippy::too_many_arguments)]
    fn add_rms_norm(
        &self,
        acc: &mut Self::Buf,
        x: &Self::Buf,
        w: &Self::Weight<'_>,
        eps: f32,
        t: usize,
        width: usize,
        out: &mut Self::Buf,
    ) -> Result<()> {
        self.add(acc, x, t * width)?;
        self.rms_norm(acc, w, eps, t, out)
    }
    /// `gate ← silu(gate) ⊙ up` over `t` rows of width `n`.
    fn swiglu(&self, gate: &mut Self::Buf, up: &Self::Buf, t: usize, n: usize) -> Result<()>;
    /// `acc ← acc + x` over the first `len` values.
    fn add(&self, acc: &mut Self::Buf, x: &Self::Buf, len: usize) -> Result<()>;

    /// Causal depthwise convolution then SiLU of the q, k and v streams: stream `s` over `t`
    /// rows of `x[s]` `[t, channels]` with taps `w[s]` into `out[s]`. Each state
    /// `[conv_kernel - 1, channels]` holds its stream's inputs before the first row, oldest
    /// first, and is advanced past the last row.
    fn short_conv(
        &self,
        x: [&Self::Buf; 3],
        w: [&Self::Weight<'_>; 3],
        state: &mut [Self::Buf; 3],
        t: usize,
        dims: KdaDims,
        out: &mut [Self::Buf; 3],
    ) -> Result<()>;
    /// A KDA layer's q, k and v projections of `x` through their short convolutions into `out`
    /// ([`Backend::matmuls`] of `proj`, then [`Backend::short_conv`] with `conv` and `state`),
    /// and the layer's other products of `x` (`jobs`). Backends fuse the convolutions into the
    /// products where that saves passes (a decoded token's: one dispatch).
    #[allow(clippy::too_many_arguments)]
    fn kda_projections<'w>(
        &self,
        x: &Self::Buf,
        t: usize,
        proj: [&Self::Weight<'w>; 3],
        conv: [&Self::Weight<'w>; 3],
        state: &mut [Self::Buf; 3],
        dims: KdaDims,
        out: &mut [Self::Buf; 3],
        jobs: &mut [(&Self::Weight<'w>, &mut Self::Buf)],
    ) -> Result<()> {
        kda_projections_unfused(self, x, t, proj, conv, state, dims, out, jobs)
    }
    /// The delta rule one token at a time; `state` is `[heads, head_dim (key), head_dim (value)]`.
    fn kda_recurrent(
        &self,
        x: KdaInputs<'_, '_, Self>,
        state: &mut Self::Buf,
        t: usize,
        dims: KdaDims,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// The same result as [`Backend::kda_recurrent`], computed chunk by chunk (prefill).
    fn kda_chunked(
        &self,
        x: KdaInputs<'_, '_, Self>,
        state: &mut Self::Buf,
        t: usize,
        dims: KdaDims,
        out: &mut Self::Buf,
    ) -> Result<()>;
    /// In place per head: `o ← w ⊙ o / sqrt(mean(o²) + eps) ⊙ sigmoid(gate)`.
    fn gated_rms_norm(
        &self,
        o: &mut Self::Buf,
        gate: &Self::Buf,
        w: &Self::Weight<'_>,
        eps: f32,
        t: usize,
        dims: KdaDims,
    ) -> Result<()>;

    /// [`Backend::gated_rms_norm`] of `o` then its product with `w` into `out`, leaving `o`
    /// unspecified (a KDA layer's output projection). Backends fuse the norm into the product
    /// where that saves a pass (a decoded token's: one dispatch).
    #[allow(clippy::too_many_arguments)]
    fn gated_rms_norm_matmul(
        &self,
        o: &mut Self::Buf,
        gate: &Self::Buf,
        norm: &Self::Weight<'_>,
        eps: f32,
        t: usize,
        dims: KdaDims,
        w: &Self::Weight<'_>,
        out: &mut Self::Buf,
    ) -> Result<()> {
        self.gated_rms_norm(o, gate, norm, eps, t, dims)?;
        self.matmul(w, o, t, out)
    }

    /// The rest of a KDA layer after its projections, into `out` `[t, hidden]`: the decay's and
    /// the output gate's up-projections, the delta rule (token by token for one token, chunked
    /// for more), the gated RMSNorm of its output and the output projection; `state` as
    /// [`Backend::kda_recurrent`]'s. Backends fuse the parts where that saves passes (a
    /// decoded token's up-projections, delta rule and norm: one dispatch).
    fn kda_tail(
        &self,
        x: KdaTail<'_, '_, Self>,
        state: &mut Self::Buf,
        t: usize,
        dims: KdaDims,
        out: &mut Self::Buf,
    ) -> Result<()> {
        kda_tail_unfused(self, x, state, t, dims, out)
    }

    /// [`Backend::kda_tail`], then `next` of its output: a backend may fold the residual add
    /// and the norm into the output projection's kernel (`out` is then left as it was).
    fn kda_tail_add_norm(
        &self,
        x: KdaTail<'_, '_, Self>,
        state: &mut Self::Buf,
        t: usize,
        dims: KdaDims,
        out: &mut Self::Buf,
        next: AddNorm<'_, '_, Self>,
    ) -> Result<()> {
        self.kda_tail(x, state, t, dims, out)?;
        next.apply(self, out, t)
    }

    /// [`Backend::matmul`], then `next` of its output: a backend may fold the residual add and
    /// the norm into the product's kernel (`out` is then left as it was).
    fn matmul_add_norm(
        &self,
        w: &Self::Weight<'_>,
        x: &Self::Buf,
        t: usize,
        out: &mut Self::Buf,
        next: AddNorm<'_, '_, Self>,
    ) -> Result<()> {
        self.matmul(w, x, t, out)?;
        next.apply(self, out, t)
    }

    /// Absorbed MLA over the latent cache. `q` is `[t, heads, nope + rope]`, `kv` the raw
    /// `[t, kv_lora + rope]` down-projection of the new tokens: the op normalises their latents,
    /// appends them at positions `pos..pos + t` of `cache` (`[capacity, kv_lora + rope]`), and
    /// writes causal attention over positions `0..=pos + i` into `out` `[t, heads, v_dim]`.
    #[allow(clippy::too_many_arguments)]
    fn mla_attention(
        &self,
        q: &Self::Buf,
        kv: &Self::Buf,
        w: &MlaWeights<Self::Weight<'_>>,
        cache: &mut Self::Buf,
        pos: usize,
        t: usize,
        dims: MlaDims,
        out: &mut Self::Buf,
    ) -> Result<()>;

    /// Mixture of experts over `x` `[t, hidden]` into `out` `[t, hidden]`: sigmoid router,
    /// top-`n_used` by score + bias, unbiased scores renormalised and scaled, only the chosen
    /// experts' rows read, shared expert added.
    fn moe(
        &self,
        x: &Self::Buf,
        w: &MoeWeights<Self::Weight<'_>>,
        t: usize,
        out: &mut Self::Buf,
    ) -> Result<()>;
}

/// The residual add and norm that follow an op's output `y` ([`Backend::matmul_add_norm`]):
/// `acc ← acc + y`, then `out = rms_norm(acc) ⊙ w`, over rows of `width`.
pub struct AddNorm<'a, 'w, B: Backend + ?Sized> {
    pub acc: &'a mut B::Buf,
    pub w: &'a B::Weight<'w>,
    pub eps: f32,
    pub width: usize,
    pub out: &'a mut B::Buf,
}

impl<B: Backend + ?Sized> AddNorm<'_, '_, B> {
    /// The add and norm as their own op ([`Backend::add_rms_norm`]) of `t` rows of `y`.
    pub fn apply(self, b: &B, y: &B::Buf, t: usize) -> Result<()> {
        b.add_rms_norm(self.acc, y, self.w, self.eps, t, self.width, self.out)
    }
}

/// [`Backend::kda_projections`] as its parts: the products into scratch buffers, then the
/// convolutions.
#[allow(clippy::too_many_arguments)]
pub fn kda_projections_unfused<'w, B: Backend + ?Sized>(
    b: &B,
    x: &B::Buf,
    t: usize,
    proj: [&B::Weight<'w>; 3],
    conv: [&B::Weight<'w>; 3],
    state: &mut [B::Buf; 3],
    dims: KdaDims,
    out: &mut [B::Buf; 3],
    jobs: &mut [(&B::Weight<'w>, &mut B::Buf)],
) -> Result<()> {
    let c = t * dims.width();
    let mut z = [b.scratch(c)?, b.scratch(c)?, b.scratch(c)?];
    {
        let [zq, zk, zv] = &mut z;
        let mut all: Vec<(&B::Weight<'w>, &mut B::Buf)> =
            vec![(proj[0], zq), (proj[1], zk), (proj[2], zv)];
        all.extend(jobs.iter_mut().map(|(w, y)| (*w, &mut **y)));
        b.matmuls(x, t, &mut all)?;
    }
    b.short_conv(z.each_ref(), conv, state, t, dims, out)
}

/// [`Backend::kda_tail`] as its parts: the up-projections as one [`Backend::matmuls_of`], the
/// delta rule, then the gated norm with the output projection.
pub fn kda_tail_unfused<B: Backend + ?Sized>(
    b: &B,
    x: KdaTail<'_, '_, B>,
    state: &mut B::Buf,
    t: usize,
    dims: KdaDims,
    out: &mut B::Buf,
) -> Result<()> {
    let c = t * dims.width();
    let (mut g, mut gate) = (b.scratch(c)?, b.scratch(c)?);
    b.matmuls_of(
        t,
        &mut [(x.f_b, x.f_low, &mut g), (x.g_b, x.g_low, &mut gate)],
    )?;
    let mut o = b.scratch(c)?;
    let inputs = KdaInputs {
        q: x.q,
        k: x.k,
        v: x.v,
        g: &g,
        beta: x.beta,
        dt_bias: x.dt_bias,
        a: x.a,
    };
    if t == 1 {
        b.kda_recurrent(inputs, state, t, dims, &mut o)?;
    } else {
        b.kda_chunked(inputs, state, t, dims, &mut o)?;
    }
    b.gated_rms_norm_matmul(&mut o, &gate, x.norm, x.eps, t, dims, x.out, out)
}
