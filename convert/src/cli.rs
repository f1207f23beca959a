//! The `kiln-convert` command line: the binary parses it and calls [`run`]; tests can run the
//! same commands in-process with [`run_args`].

use crate::convert::{self, TypeChoice};
use crate::recipe::{FileType, Override, Recipe, parse_size, tensor_bytes};
use crate::write::{self, TensorJob};
use crate::{mapping, metadata, requant, synth};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(
    name = "kiln-convert",
    version,
    about = "Kimi Linear checkpoint → llama.cpp-compatible GGUF",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Checkpoint directory (config.json, *.safetensors, model.safetensors.index.json).
    #[arg(required = true)]
    checkpoint: Option<PathBuf>,
    /// Output GGUF file.
    #[arg(short, long, required_unless_present = "plan")]
    output: Option<PathBuf>,
    #[command(flatten)]
    types: TypeArgs,
    /// Print the per-tensor plan and the resulting size; write nothing.
    #[arg(long)]
    plan: bool,
    /// Write only the vocabulary and the metadata (no tensors; reads config.json and the
    /// tokenizer files only).
    #[arg(long, conflicts_with = "plan")]
    vocab_only: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Random weights at the true shapes of a model in models.toml.
    Synth(SynthArgs),
    /// Re-quantize a GGUF with the per-tensor rules of --type (metadata and vocabulary copied).
    Requant(RequantArgs),
}

#[derive(Args)]
struct RequantArgs {
    /// Input GGUF (F32, F16 or BF16 tensors; quantized ones need --allow-requant).
    input: PathBuf,
    /// Output GGUF.
    output: PathBuf,
    #[command(flatten)]
    types: TypeArgs,
    /// Re-quantize tensors that are already quantized (loses more than quantizing once).
    #[arg(long)]
    allow_requant: bool,
    /// Print the per-tensor plan and the resulting size; write nothing.
    #[arg(long)]
    plan: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct SynthArgs {
    /// Model name, a [models.NAME] section of models.toml.
    #[arg(long)]
    model: String,
    /// The model registry (default: ./models.toml, else the one in kiln's source tree).
    #[arg(long)]
    models: Option<PathBuf>,
    /// Output GGUF file.
    #[arg(short, long, required_unless_present = "plan")]
    output: Option<PathBuf>,
    #[command(flatten)]
    types: TypeArgs,
    /// Seed of the random weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the per-tensor plan and the resulting size; write nothing.
    #[arg(long)]
    plan: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct TypeArgs {
    /// f32, f16, bf16, q8_0, q6_k, q5_k_m, q5_k_s, q4_k_m, q4_k_s, q3_k_m, q3_k_s, q2_k, q4_k (pure).
    #[arg(short = 't', long = "type", default_value = "bf16")]
    ty: String,
    /// Per-tensor type override, REGEX=TYPE (first match wins); may be repeated.
    #[arg(long = "tensor-type", value_name = "REGEX=TYPE")]
    tensor_type: Vec<String>,
    /// Pick per-tensor types that fit this size (e.g. 22GiB) with the least expected loss.
    #[arg(long)]
    target_size: Option<String>,
    /// Every quantizable tensor in the base type of --type (llama-quantize --pure).
    #[arg(long)]
    pure: bool,
}

impl TypeArgs {
    fn choice(&self) -> Result<(FileType, TypeChoice)> {
        let Some(ft) = FileType::parse(&self.ty) else {
            bail!(
                "unknown --type {:?} (one of: {})",
                self.ty,
                FileType::all_names().collect::<Vec<_>>().join(", ")
            );
        };
        let mut recipe = Recipe::new(ft);
        recipe.pure = self.pure;
        for spec in &self.tensor_type {
            recipe.overrides.push(Override::parse(spec)?);
        }
        let target_size = self.target_size.as_deref().map(parse_size).transpose()?;
        Ok((
            ft,
            TypeChoice {
                recipe,
                target_size,
            },
        ))
    }
}

fn print_plan(jobs: &[TensorJob]) {
    let mut total = 0u64;
    let mut params = 0u64;
    for j in jobs {
        let b = tensor_bytes(j.ty, &j.ne);
        total += b;
        params += j.ne.iter().product::<usize>() as u64;
        println!(
            "{:<40} {:>24} {:>6} {:>12}",
            j.name,
            format!("{:?}", j.ne),
            j.ty.name(),
            b
        );
    }
    println!(
        "total: {} tensors, {} bytes ({:.2} GiB) of tensor data, {:.3} B params, {:.2} bits per weight",
        jobs.len(),
        total,
        total as f64 / (1u64 << 30) as f64,
        params as f64 / 1e9,
        total as f64 * 8.0 / params.max(1) as f64
    );
}

fn run_convert(cli: &Cli) -> Result<()> {
    let (ft, choice) = cli.types.choice()?;
    let dir = cli
        .checkpoint
        .as_deref()
        .context("a checkpoint directory is required")?;
    let name = convert::model_name(dir);
    if cli.vocab_only {
        let out = cli.output.as_deref().context("--output is required")?;
        check_output(out)?;
        let summary = convert::write_vocab_only(dir, out, &name, ft.llama_ftype())?;
        if !cli.quiet {
            eprintln!(
                "wrote {}: vocabulary and metadata only, {} bytes",
                out.display(),
                summary.file_bytes
            );
        }
        return Ok(());
    }
    let plan = convert::plan(dir, &choice)?;
    if cli.plan {
        print_plan(&plan.jobs);
        return Ok(());
    }
    let out = cli.output.as_deref().context("--output is required")?;
    check_output(out)?;
    let vocab = match convert::load_vocab(dir, &plan.config)? {
        Some(v) => v.metadata(),
        None => {
            eprintln!(
                "warning: {}: no tiktoken.model, so the file gets no tokenizer (it needs an external vocab)",
                dir.display()
            );
            Vec::new()
        }
    };
    let summary = convert::write(&plan, out, &name, ft.llama_ftype(), vocab, !cli.quiet)?;
    eprintln!("wrote {}: {summary}", out.display());
    Ok(())
}

fn run_requant(a: &RequantArgs) -> Result<()> {
    let (ft, choice) = a.types.choice()?;
    let plan = requant::plan(&a.input, &choice, a.allow_requant)?;
    if a.plan {
        print_plan(&plan.jobs);
        return Ok(());
    }
    check_output(&a.output)?;
    if let (Ok(i), Ok(o)) = (a.input.canonicalize(), a.output.canonicalize())
        && i == o
    {
        bail!("{}: output is the input file", a.output.display());
    }
    let summary = requant::write(&plan, &a.output, ft.llama_ftype(), !a.quiet)?;
    eprintln!("wrote {}: {summary}", a.output.display());
    Ok(())
}

/// Refuses an output that would overwrite the input or whose directory does not exist, before
/// any work is done.
fn check_output(out: &Path) -> Result<()> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "{}: output directory {} does not exist",
            out.display(),
            dir.display()
        );
    }
    if out.is_dir() {
        bail!("{}: is a directory", out.display());
    }
    Ok(())
}

fn run_synth(a: &SynthArgs) -> Result<()> {
    let registry = match &a.models {
        Some(p) => p.clone(),
        None if Path::new("models.toml").is_file() => PathBuf::from("models.toml"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../models.toml"),
    };
    let cfg = synth::config_from_registry(&registry, &a.model)?;
    let (ft, choice) = a.types.choice()?;
    let tensors = mapping::layout(&cfg);
    let types = choice.assign(&convert::model_info(&cfg), &tensors)?;
    let jobs: Vec<TensorJob> = tensors
        .iter()
        .zip(types)
        .map(|(t, ty)| TensorJob {
            name: t.name.clone(),
            ne: t.ne.clone(),
            ty,
        })
        .collect();
    if a.plan {
        print_plan(&jobs);
        return Ok(());
    }
    let out = a.output.as_deref().context("--output is required")?;
    check_output(out)?;
    let mut meta = metadata::general(&a.model, ft.llama_ftype());
    meta.extend(metadata::hparams(&cfg));
    let rows = synth::SynthRows {
        names: jobs.iter().map(|j| j.name.clone()).collect(),
        n_per_row: jobs.iter().map(|j| j.ne[0]).collect(),
        seed: a.seed,
    };
    let summary = write::write_gguf(out, &meta, &jobs, &rows, !a.quiet)?;
    eprintln!("wrote {}: {summary}", out.display());
    Ok(())
}

/// Runs a parsed command line.
pub fn run(cli: &Cli) -> Result<()> {
    match &cli.cmd {
        Some(Cmd::Synth(a)) => run_synth(a),
        Some(Cmd::Requant(a)) => run_requant(a),
        None => run_convert(cli),
    }
}

/// Parses `args` (the first is the program name) and runs them, as the binary would.
pub fn run_args<I, T>(args: I) -> Result<()>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    run(&Cli::try_parse_from(args)?)
}
