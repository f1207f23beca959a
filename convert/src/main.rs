//! kiln-convert: Hugging Face Kimi Linear checkpoint → GGUF that kiln and llama.cpp load.

use clap::Parser;
use kiln_convert::cli::{self, Cli};

/// A file size limit (`ulimit -f`) makes the kernel send SIGXFSZ, which kills by default;
/// ignored, the write fails with EFBIG and the error path removes the partial file.
fn ignore_file_size_signal() {
    #[cfg(unix)]
    // SAFETY: sets a signal's disposition to SIG_IGN at startup, before any thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

fn main() {
    ignore_file_size_signal();
    let cli = Cli::parse();
    if let Err(e) = cli::run(&cli) {
        // One line: the chain of causes joined, most specific last.
        eprintln!("error: {}", format!("{e:#}").replace('\n', " "));
        std::process::exit(1);
    }
}
