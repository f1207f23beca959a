//! `kiln bench`: prompt-processing and decode speed, llama-bench style, at one or more context
//! depths, plus the process's peak resident memory.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use clap::Args;

use super::backend::{BackendArgs, with_backend};
use kiln::backend::{Alter, Backend};
use kiln::gguf::Gguf;
use kiln::model::weights::Mixer;
use kiln::model::{Greedy, HybridCache, Logits, MAX_UBATCH, Model};

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// GGUF model file.
    #[arg(short = 'm', long = "model")]
    pub model: PathBuf,
    /// Prompt tokens per prompt-processing test (0 skips it).
    #[arg(short = 'p', long = "n-prompt", default_value_t = 512)]
    pub n_prompt: usize,
    /// Tokens per decode test (0 skips it).
    #[arg(short = 'n', long = "n-gen", default_value_t = 128)]
    pub n_gen: usize,
    /// Context depths (tokens already in the cache), comma-separated.
    #[arg(
        short = 'd',
        long = "depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub depth: Vec<usize>,
    /// Runs per test; the table shows mean ± standard deviation.
    #[arg(short = 'r', long = "repetitions", default_value_t = 1)]
    pub repetitions: usize,
    #[command(flatten)]
    pub backend: BackendArgs,
    /// Time every kernel with GPU timestamp queries and print the top ones (slows the run).
    #[arg(long)]
    pub profile: bool,
    /// After the tests, decode again with every dispatch of each of these kernels left out in
    /// turn (names as --profile prints them, matched as prefixes, comma-separated; `a+b` leaves
    /// out both together) and print the time per token each one saves: what the kernel costs
    /// in the running stream, launch and barrier included, where timestamps around it
    /// overstate small kernels. The outputs of such a decode are meaningless.
    #[arg(long, value_delimiter = ',')]
    pub ablate: Vec<String>,
    /// After the tests, decode again with every dispatch of each of these kernels run twice in
    /// turn (named as for --ablate), the second right after the first, and print the time per
    /// token each repeat adds: what the kernel costs with what it read still in the GPU's
    /// caches. One that costs as much again as it saves in --ablate is held back by latency,
    /// not by memory bandwidth. The outputs of such a decode are meaningless.
    #[arg(long, value_delimiter = ',')]
    pub repeat: Vec<String>,
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    with_backend!(&args.backend, |b| bench(b, args))
}

fn bench<B: Backend>(b: &B, args: &BenchArgs) -> anyhow::Result<()> {
    let file = Gguf::open(&args.model)?;
    let model =
        Model::load(&file, b).with_context(|| format!("loading {}", args.model.display()))?;
    let size: u64 = file.tensors().iter().map(|t| t.n_bytes()).sum();
    let params: u64 = file.tensors().iter().map(|t| t.n_elements()).sum();
    let name = file
        .get_str("general.name")
        .map(str::to_string)
        .or_else(|| {
            args.model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
        })
        .unwrap_or_default();

    let mut out = String::new();
    out += "| model | size | params | backend | threads | test | t/s |\n";
    out += "| ----- | ---: | -----: | ------- | ------: | ---: | --: |\n";
    super::print_stdout(&out)?;
    let mut ids = TokenStream::new(model.config.vocab);
    // Compiles the kernels of both the prompt and the decode paths, and lets a GPU backend
    // allocate a prompt's temporaries, before anything is timed (as llama-bench's warm-up run).
    // The decode warm-up is as long as a test, so that the first repetition does not pay
    // for what settles over a run (clocks, caches, bind groups of a fresh cache's buffers).
    let warm = args.n_prompt.clamp(2, MAX_UBATCH);
    let warm_gen = args.n_gen.max(1);
    let mut cache = model.new_cache(b, warm + warm_gen)?;
    let l = model.forward(b, &ids.take(warm), &mut cache, Logits::Last)?;
    b.argmax(&l, 1, model.config.vocab)?;
    decode(b, &model, &mut cache, warm_gen, ids.take(1)[0])?;
    drop(cache);
    if args.profile {
        b.start_profile()?;
    }
    let mut decode_speed = None;
    let mut dispatches_per_token = None;
    let mut binds_per_token = None;
    let mut recording_ms = Vec::new();
    let mut busy_ms = Vec::new();
    for &depth in &args.depth {
        let tests = [("pp", args.n_prompt), ("tg", args.n_gen)];
        for (kind, n) in tests.into_iter().filter(|&(_, n)| n > 0) {
            let mut speeds = Vec::new();
            for _ in 0..args.repetitions.max(1) {
                // The profile times the tests, not the prompt that fills the cache.
                b.pause_profile(true);
                let mut cache = cache_at_depth(b, &model, &mut ids, depth, n)?;
                b.pause_profile(false);
                let secs = if kind == "pp" {
                    let prompt = ids.take(n);
                    let t0 = Instant::now();
                    let l = model.forward(b, &prompt, &mut cache, Logits::Last)?;
                    b.argmax(&l, 1, model.config.vocab)?;
                    t0.elapsed().as_secs_f64()
                } else {
                    let before = (b.dispatches(), b.bind_groups_made());
                    let d = decode(b, &model, &mut cache, n, ids.take(1)[0])?;
                    let per_token = |a: Option<u64>, z: Option<u64>| {
                        a.zip(z).map(|(a, z)| (z - a) as f64 / n as f64)
                    };
                    dispatches_per_token = per_token(before.0, b.dispatches());
                    binds_per_token = per_token(before.1, b.bind_groups_made());
                    recording_ms.push(1e3 * d.recording / n as f64);
                    busy_ms.push(1e3 * (d.total - d.waiting) / n as f64);
                    d.total
                };
                speeds.push(n as f64 / secs);
            }
            let (mean, sd) = mean_sd(&speeds);
            if kind == "tg" && depth == args.depth[0] {
                decode_speed = Some(mean);
            }
            let test = if depth > 0 {
                format!("{kind}{n} @ d{depth}")
            } else {
                format!("{kind}{n}")
            };
            let row = format!(
                "| {name} | {} | {} | {} | {} | {test} | {mean:.2} ± {sd:.2} |\n",
                super::human_bytes(size),
                human_count(params),
                b.name(),
                rayon::current_num_threads(),
            );
            super::print_stdout(&row)?;
        }
    }
    let peak = peak_rss_bytes().map_or("unknown".to_string(), super::human_bytes);
    super::print_stdout(&format!(
        "\npeak memory (VmHWM): {peak}; weights mapped: {}\n",
        super::human_bytes(size)
    ))?;
    if let Some(tg) = decode_speed {
        let per_token = weight_bytes_per_token(&file, &model.config);
        let mut line = format!(
            "weights read per decoded token: {:.3} GB",
            per_token as f64 / 1e9
        );
        // The timed copies need two buffers beside the model: a card too full for them still
        // gets its table. The profile leaves them out.
        b.pause_profile(true);
        let bandwidth = b.copy_bandwidth();
        b.pause_profile(false);
        match bandwidth {
            Ok(Some(bw)) => {
                let roofline = bw / per_token as f64;
                line += &format!(
                    "; copy bandwidth {:.0} GB/s; roofline {roofline:.0} t/s; tg at depth {} = {:.1}% of it",
                    bw / 1e9,
                    args.depth[0],
                    100.0 * tg / roofline
                );
            }
            Ok(None) => {}
            Err(e) => line += &format!("; copy bandwidth not measured ({e})"),
        }
        super::print_stdout(&format!("{line}\n"))?;
        let (rec, _) = mean_sd(&recording_ms);
        let (busy, _) = mean_sd(&busy_ms);
        super::print_stdout(&format!(
            "host time per decode step: {rec:.2} ms/token recording (in forward), {busy:.2} \
             busy in all (not waiting for the device)\n"
        ))?;
        if let Some(n) = dispatches_per_token {
            super::print_stdout(&format!("kernel dispatches per decoded token: {n:.0}\n"))?;
        }
        if let Some(n) = binds_per_token {
            super::print_stdout(&format!("bind groups made per decoded token: {n:.1}\n"))?;
        }
    }
    if !args.ablate.is_empty() && args.n_gen > 0 {
        alter_table(b, &model, &mut ids, args, Alter::LeaveOut)?;
    }
    if !args.repeat.is_empty() && args.n_gen > 0 {
        alter_table(b, &model, &mut ids, args, Alter::Twice)?;
    }
    if args.profile {
        super::print_stdout(&format!(
            "\ntop kernels by device time\n{}",
            b.profile_report(20)?
        ))?;
    }
    Ok(())
}

/// A cache with room for `n` more tokens after `depth` prompt tokens, which it holds.
fn cache_at_depth<'w, B: Backend>(
    b: &B,
    model: &Model<'w, B>,
    ids: &mut TokenStream,
    depth: usize,
    n: usize,
) -> anyhow::Result<HybridCache<B>> {
    let mut cache = model.new_cache(b, depth + n)?;
    if depth > 0 {
        let l = model.forward(b, &ids.take(depth), &mut cache, Logits::Last)?;
        // Waits for the depth prefill, which a GPU backend has only queued, so that it is not
        // timed as part of a test.
        b.argmax(&l, 1, model.config.vocab)?;
    }
    Ok(cache)
}

/// `--ablate` and `--repeat`: the decode test at the first depth again, in full and then with
/// each kernel's dispatches left out or run twice in turn (`--repetitions` runs each), as a
/// table of the time per token each saves or adds.
fn alter_table<B: Backend>(
    b: &B,
    model: &Model<'_, B>,
    ids: &mut TokenStream,
    args: &BenchArgs,
    how: Alter,
) -> anyhow::Result<()> {
    let (depth, n) = (args.depth[0], args.n_gen);
    let (kernels, header, sign) = match how {
        Alter::LeaveOut => {
            dispatch_chains(b, model)?;
            let out = format!(
                "\nablation: tg{n} at depth {depth} without each kernel's dispatches\n\
                 | left out | t/s | saves ms/token |\n| -------- | --: | -------------: |\n"
            );
            (&args.ablate, out, 1.0)
        }
        Alter::Twice => {
            let out = format!(
                "\nrepeats: tg{n} at depth {depth} with each kernel's dispatches run twice\n\
                 | repeated | t/s | adds ms/token |\n| -------- | --: | ------------: |\n"
            );
            (&args.repeat, out, -1.0)
        }
    };
    super::print_stdout(&header)?;
    let mut full_ms = None;
    for kernel in std::iter::once(None).chain(kernels.iter().map(Some)) {
        let mut speeds = Vec::new();
        for _ in 0..args.repetitions.max(1) {
            let mut cache = cache_at_depth(b, model, ids, depth, n)?;
            let names: Vec<String> =
                kernel.map_or(Vec::new(), |k| k.split('+').map(str::to_string).collect());
            b.alter(&names, how)?;
            let d = decode(b, model, &mut cache, n, ids.take(1)[0]);
            b.alter(&[], how)?;
            speeds.push(n as f64 / d?.total);
        }
        let (speed, _) = mean_sd(&speeds);
        let ms = 1e3 / speed;
        let full = *full_ms.get_or_insert(ms);
        super::print_stdout(&format!(
            "| {} | {speed:.2} | {:.3} |\n",
            kernel.map_or("(nothing)", String::as_str),
            sign * (full - ms)
        ))?;
    }
    Ok(())
}

/// The time per dispatch of long chains of small ones, for reading `--ablate`'s table: a
/// residual add of one token where each waits for the one before (it writes what the next
/// writes), and one token's output projection of every layer in turn, and of layer 0 only.
fn dispatch_chains<B: Backend>(b: &B, model: &Model<'_, B>) -> anyhow::Result<()> {
    const CHAIN: usize = 400;
    let cfg = &model.config;
    let d = cfg.hidden;
    let x = b.alloc(d)?;
    let mut acc = b.alloc(d)?;
    let time = |op: &mut dyn FnMut(usize) -> kiln::backend::Result<()>| -> anyhow::Result<f64> {
        op(0)?;
        b.read(&x, 1)?;
        let t0 = Instant::now();
        for i in 0..CHAIN {
            op(i)?;
        }
        b.read(&x, 1)?;
        Ok(1e6 * t0.elapsed().as_secs_f64() / CHAIN as f64)
    };
    let mut out = "\ndispatch chains (µs per dispatch)\n".to_string();
    let chained = time(&mut |_| b.add(&mut acc, &x, d))?;
    out += &format!("add of {d} values, each after the one before: {chained:.1}\n");
    let outs: Vec<_> = (model.weights.layers.iter())
        .map(|l| match &l.mixer {
            Mixer::Kda(lw) => (&lw.out, cfg.n_head * cfg.kda_head_dim),
            Mixer::Mla(lw) => (&lw.out, cfg.n_head * cfg.v_head_dim),
        })
        .collect();
    if !outs.is_empty() {
        let inputs = [b.alloc(outs[0].1)?, b.alloc(cfg.n_head * cfg.v_head_dim)?];
        let input = |cols: usize| {
            if cols == outs[0].1 {
                &inputs[0]
            } else {
                &inputs[1]
            }
        };
        let every = time(&mut |i| {
            let (w, cols) = outs[i % outs.len()];
            b.matmul(w, input(cols), 1, &mut acc)
        })?;
        out += &format!("one token's output projection, each layer's in turn: {every:.1}\n");
        let first = time(&mut |_| b.matmul(outs[0].0, &inputs[0], 1, &mut acc))?;
        out += &format!("one token's output projection, layer 0's only: {first:.1}\n");
    }
    super::print_stdout(&out)?;
    Ok(())
}

/// Bytes of weights one decoded token reads: every tensor, except one row of the embedding
/// table and, of the routed experts, the chosen ones only.
fn weight_bytes_per_token(file: &Gguf, cfg: &kiln::model::Config) -> u64 {
    file.tensors()
        .iter()
        .map(|t| {
            let n = t.n_bytes();
            if t.name() == "token_embd.weight" {
                n / cfg.vocab.max(1) as u64
            } else if t.name().contains("_exps.") {
                n * cfg.n_expert_used as u64 / cfg.n_expert.max(1) as u64
            } else {
                n
            }
        })
        .sum()
}

/// Seconds of a decode test, the part the host spent recording the forward passes (a GPU
/// backend only queues work there), and the part it waited for the device's tokens.
struct DecodeTime {
    total: f64,
    recording: f64,
    /// Seconds the host waited for the device's tokens.
    waiting: f64,
}

/// `n` greedy decode steps from `first`, each recorded while the device runs the one before
/// (llama-bench's tg feeds tokens without a host decision between them); timed until the last
/// token is back on the host.
fn decode<B: Backend>(
    b: &B,
    model: &Model<'_, B>,
    cache: &mut HybridCache<B>,
    n: usize,
    first: u32,
) -> anyhow::Result<DecodeTime> {
    let t0 = Instant::now();
    let mut greedy = Greedy::from_id(b, first)?;
    for _ in 0..n {
        greedy.step(model, b, cache)?;
    }
    let recording = greedy.recording().as_secs_f64();
    greedy.latest(b)?;
    Ok(DecodeTime {
        total: t0.elapsed().as_secs_f64(),
        recording,
        waiting: greedy.waiting().as_secs_f64(),
    })
}

/// Deterministic pseudo-random token ids.
struct TokenStream {
    vocab: u64,
    state: u64,
}

impl TokenStream {
    fn new(vocab: usize) -> Self {
        TokenStream {
            vocab: vocab as u64,
            state: 0x2545_F491_4F6C_DD1D,
        }
    }

    fn take(&mut self, n: usize) -> Vec<u32> {
        (0..n)
            .map(|_| {
                self.state ^= self.state << 13;
                self.state ^= self.state >> 7;
                self.state ^= self.state << 17;
                (self.state % self.vocab) as u32
            })
            .collect()
    }
}

fn mean_sd(x: &[f64]) -> (f64, f64) {
    let mean = x.iter().sum::<f64>() / x.len() as f64;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / x.len() as f64;
    (mean, var.sqrt())
}

fn human_count(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2} B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        n if n >= 1_000 => format!("{:.2} K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

/// The process's peak resident set size (VmHWM in /proc/self/status), where Linux reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peak_rss_is_reported_on_linux() {
        if cfg!(target_os = "linux") {
            let peak = peak_rss_bytes().expect("VmHWM");
            assert!(peak > 1 << 20, "{peak}");
        }
    }

    #[test]
    fn counts_and_stats() {
        assert_eq!(human_count(1_500_000), "1.50 M");
        assert_eq!(human_count(12), "12");
        let (m, s) = mean_sd(&[1.0, 3.0]);
        assert_eq!((m, s), (2.0, 1.0));
    }
}
