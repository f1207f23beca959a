//! The `kiln` command line: parses arguments and hands each command to its module in `cli/`.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "kiln",
    version,
    about = "Run Kimi Linear models from low-bit GGUF files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what a GGUF file holds: metadata, tensors, sizes per type, bits per weight.
    Inspect(cli::inspect::InspectArgs),
    /// Talk to the model in the terminal.
    Chat(cli::chat::ChatArgs),
    /// Print the token ids of a text under a GGUF's vocabulary.
    Tokenize(cli::tokenize::TokenizeArgs),
    /// Prefill token ids and write the logits of every position to a .npy file.
    Logits(cli::logits::LogitsArgs),
    /// Generate tokens after a prompt.
    Run(cli::run::RunArgs),
    /// Measure prompt and decode speed (llama-bench style) and peak memory.
    Bench(cli::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Inspect(args) => cli::inspect::run(args),
        Command::Chat(args) => cli::chat::run(args),
        Command::Tokenize(args) => cli::tokenize::run(args),
        Command::Logits(args) => cli::logits::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Bench(args) => cli::bench::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and its causes, outermost first.
            eprintln!("kiln: {e:#}");
            ExitCode::FAILURE
        }
    }
}
