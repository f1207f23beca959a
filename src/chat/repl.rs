//! The interactive loop of `kiln chat`: read a line (rustyline on a terminal, plain lines when
//! scripted), run a `/command` or send it, stream the answer, print the turn's numbers.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use super::session::{Session, StopReason, TurnStats};
use crate::backend::Backend;

pub const HELP: &str = "\
Type a message and press Enter; end a line with \\ to continue on the next line.
  /help          this text
  /reset         forget the conversation (the system prompt stays)
  /system TEXT   set the system prompt (/system alone shows it; /system - clears it)
  /save FILE     write the conversation as JSON
  /load FILE     read a conversation written by /save
  /stats         totals of this session
  /exit          leave (as does Ctrl-D)
Ctrl-C stops an answer; at the prompt it clears the line.";

/// Shared with the SIGINT handler, which runs on its own thread.
#[derive(Debug, Default)]
pub struct Signals {
    /// An answer is being generated: SIGINT should stop it rather than the program.
    pub generating: AtomicBool,
    /// Set by SIGINT while generating; the session checks it between tokens.
    pub cancel: AtomicBool,
}

impl Signals {
    pub const fn new() -> Signals {
        Signals {
            generating: AtomicBool::new(false),
            cancel: AtomicBool::new(false),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Help,
    Reset,
    /// `None`: show the system prompt; `Some("")`: clear it.
    System(Option<String>),
    Save(PathBuf),
    Load(PathBuf),
    Stats,
    Exit,
    Unknown(String),
    /// A command that needs an argument was given none.
    Missing(&'static str),
}

impl Command {
    /// `None` if `line` is a message rather than a command.
    pub fn parse(line: &str) -> Option<Command> {
        let line = line.trim();
        let rest = line.strip_prefix('/')?;
        let (name, arg) = match rest.split_once(char::is_whitespace) {
            Some((n, a)) => (n, a.trim()),
            None => (rest, ""),
        };
        let file = |make: fn(PathBuf) -> Command, usage: &'static str| {
            if arg.is_empty() {
                Command::Missing(usage)
            } else {
                make(PathBuf::from(arg))
            }
        };
        Some(match name {
            "help" | "?" => Command::Help,
            "reset" | "clear" => Command::Reset,
            "system" if arg.is_empty() => Command::System(None),
            "system" if arg == "-" => Command::System(Some(String::new())),
            "system" => Command::System(Some(arg.to_string())),
            "save" => file(Command::Save, "/save FILE"),
            "load" => file(Command::Load, "/load FILE"),
            "stats" => Command::Stats,
            "exit" | "quit" => Command::Exit,
            _ => Command::Unknown(name.to_string()),
        })
    }
}

/// Where `kiln chat` keeps its input history: `$XDG_STATE_HOME/kiln/history`, else
/// `~/.kiln_history`.
pub fn default_history_path() -> Option<PathBuf> {
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(state).join("kiln").join("history"));
    }
    std::env::var_os("HOME")
        .filter(|s| !s.is_empty())
        .map(|home| PathBuf::from(home).join(".kiln_history"))
}

enum Input {
    Editor {
        editor: Box<DefaultEditor>,
        history: Option<PathBuf>,
    },
    Plain(io::StdinLock<'static>),
}

enum Read {
    Line(String),
    Interrupted,
    Eof,
}

impl Input {
    /// rustyline when stdin is a terminal, plain lines otherwise (so `kiln chat < script`
    /// works); an editor that cannot start falls back to plain lines too.
    fn open(history: Option<PathBuf>) -> Input {
        if io::stdin().is_terminal() {
            match DefaultEditor::new() {
                Ok(mut editor) => {
                    if let Some(path) = &history {
                        // A missing history file is the normal first run; an unreadable
                        // one only costs the history.
                        match editor.load_history(path) {
                            Err(ReadlineError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => eprintln!("kiln: history {}: {e}", path.display()),
                            Ok(()) => {}
                        }
                    }
                    return Input::Editor {
                        editor: Box::new(editor),
                        history,
                    };
                }
                Err(e) => eprintln!("kiln: line editor unavailable ({e}); reading plain lines"),
            }
        }
        Input::Plain(io::stdin().lock())
    }

    fn read(&mut self, prompt: &str) -> io::Result<Read> {
        match self {
            Input::Editor { editor, .. } => match editor.readline(prompt) {
                Ok(line) => Ok(Read::Line(line)),
                Err(ReadlineError::Interrupted) => Ok(Read::Interrupted),
                Err(ReadlineError::Eof) => Ok(Read::Eof),
                Err(ReadlineError::Io(e)) => Err(e),
                Err(e) => Err(io::Error::other(e)),
            },
            Input::Plain(stdin) => {
                let mut line = String::new();
                if stdin.read_line(&mut line)? == 0 {
                    return Ok(Read::Eof);
                }
                let trimmed = line.trim_end_matches(['\n', '\r']).len();
                line.truncate(trimmed);
                Ok(Read::Line(line))
            }
        }
    }

    /// Reads one entry: lines ending in `\` continue on the next line.
    fn read_entry(&mut self) -> io::Result<Read> {
        let mut entry = String::new();
        let mut prompt = "> ";
        loop {
            match self.read(prompt)? {
                Read::Line(line) => match line.strip_suffix('\\') {
                    Some(head) => {
                        entry.push_str(head);
                        entry.push('\n');
                        prompt = ". ";
                    }
                    None => {
                        entry.push_str(&line);
                        break;
                    }
                },
                // Ctrl-C abandons the whole entry, as it would a single line.
                Read::Interrupted => return Ok(Read::Interrupted),
                Read::Eof if entry.is_empty() => return Ok(Read::Eof),
                // End of input in the middle of an entry still sends what was typed.
                Read::Eof => break,
            }
        }
        if let Input::Editor { editor, history } = self
            && !entry.trim().is_empty()
        {
            // The history is a convenience: failing to keep it never stops the chat.
            let _ = editor.add_history_entry(entry.as_str());
            if let Some(path) = history {
                save_history(editor, path);
            }
        }
        Ok(Read::Line(entry))
    }
}

fn save_history(editor: &mut DefaultEditor, path: &Path) {
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    // Warn once per session, not once per line.
    static WARNED: AtomicBool = AtomicBool::new(false);
    if let Err(e) = editor.save_history(path)
        && !WARNED.swap(true, Ordering::Relaxed)
    {
        eprintln!("kiln: cannot write history {}: {e}", path.display());
    }
}

/// Model text can hold any byte, including terminal escape sequences; on a terminal every
/// control character but newline and tab is shown as U+FFFD so an answer cannot move the
/// cursor, retitle the window or worse.
pub fn sanitize_for_terminal(text: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if text.chars().any(bad) {
        text.chars()
            .map(|c| if bad(c) { '\u{fffd}' } else { c })
            .collect::<String>()
            .into()
    } else {
        text.into()
    }
}

/// The line printed after each answer.
pub fn stats_line(s: &TurnStats, context: (usize, usize)) -> String {
    let why = match s.stop {
        StopReason::EndOfGeneration => "",
        StopReason::StopString => ", stop string",
        StopReason::MaxTokens => ", max tokens",
        StopReason::Cancelled => ", cancelled",
    };
    format!(
        "[prompt: {} tokens, {:.2} s, {:.1} tok/s | generated: {} tokens, {:.2} s, {:.1} tok/s | context {}/{}{}]",
        s.prompt_tokens,
        s.prefill_time.as_secs_f64(),
        s.prefill_tok_s(),
        s.generated_tokens,
        s.decode_time.as_secs_f64(),
        s.decode_tok_s(),
        context.0,
        context.1,
        why
    )
}

/// Runs the chat until Ctrl-D, end of input or `/exit`.
pub fn run<B: Backend>(
    session: &mut Session<'_, '_, B>,
    history: Option<PathBuf>,
    signals: &Signals,
) -> io::Result<()> {
    let mut input = Input::open(history);
    let terminal = io::stdout().is_terminal();
    if matches!(input, Input::Editor { .. }) {
        eprintln!("kiln chat: /help for commands, Ctrl-D to leave");
    }
    loop {
        let text = match input.read_entry()? {
            Read::Line(t) => t,
            Read::Interrupted => continue,
            Read::Eof => break,
        };
        if text.trim().is_empty() {
            continue;
        }
        if let Some(cmd) = Command::parse(&text) {
            if !command(session, cmd) {
                break;
            }
            continue;
        }
        answer(session, &text, signals, terminal)?;
    }
    Ok(())
}

/// Runs one command; false means leave.
fn command<B: Backend>(session: &mut Session<'_, '_, B>, cmd: Command) -> bool {
    match cmd {
        Command::Help => eprintln!("{HELP}"),
        Command::Reset => {
            session.reset();
            eprintln!("(conversation cleared)");
        }
        Command::System(None) => match session.system() {
            Some(s) => eprintln!("system: {s}"),
            None => eprintln!("(no system prompt: the template's default applies)"),
        },
        Command::System(Some(s)) => {
            let cleared = s.is_empty();
            session.set_system(Some(s));
            eprintln!(
                "{}",
                if cleared {
                    "(system prompt cleared)"
                } else {
                    "(system prompt set)"
                }
            );
        }
        Command::Save(path) => match session.save(&path) {
            Ok(()) => eprintln!(
                "(saved {} messages to {})",
                session.messages().len(),
                path.display()
            ),
            Err(e) => eprintln!("error: {e}"),
        },
        Command::Load(path) => match session.load(&path) {
            Ok(()) => eprintln!(
                "(loaded {} messages from {})",
                session.messages().len(),
                path.display()
            ),
            Err(e) => eprintln!("error: {e}"),
        },
        Command::Stats => {
            let s = session.stats();
            let (used, cap) = session.context();
            eprintln!(
                "turns: {} | prompt: {} tokens, {:.2} s | generated: {} tokens, {:.2} s | \
                 full re-prefills: {} | context {used}/{cap} | messages: {}",
                s.turns,
                s.prompt_tokens,
                s.prefill_time.as_secs_f64(),
                s.generated_tokens,
                s.decode_time.as_secs_f64(),
                s.reprefills,
                session.messages().len()
            );
        }
        Command::Exit => return false,
        Command::Unknown(name) => eprintln!("unknown command /{name}; /help lists them"),
        Command::Missing(usage) => eprintln!("usage: {usage}"),
    }
    true
}

fn answer<B: Backend>(
    session: &mut Session<'_, '_, B>,
    text: &str,
    signals: &Signals,
    terminal: bool,
) -> io::Result<()> {
    let mut out = io::stdout().lock();
    let mut io_err = None;
    let mut wrote_newline = true;
    signals.cancel.store(false, Ordering::SeqCst);
    signals.generating.store(true, Ordering::SeqCst);
    let result = session.send(text, &signals.cancel, |piece| {
        if io_err.is_some() {
            return;
        }
        let piece = if terminal {
            sanitize_for_terminal(piece)
        } else {
            piece.into()
        };
        wrote_newline = piece.ends_with('\n');
        if let Err(e) = out.write_all(piece.as_bytes()).and_then(|()| out.flush()) {
            // A closed pipe ends the answer the way Ctrl-C would.
            signals.cancel.store(true, Ordering::SeqCst);
            io_err = Some(e);
        }
    });
    signals.generating.store(false, Ordering::SeqCst);
    if let Some(e) = io_err {
        return Err(e);
    }
    // After Ctrl-C the tty has echoed "^C" where the answer stopped: the stats go below it.
    let cancelled = matches!(&result, Ok(s) if s.stop == StopReason::Cancelled);
    if !wrote_newline || (cancelled && terminal) {
        writeln!(out)?;
    }
    out.flush()?;
    drop(out);
    match result {
        Ok(stats) => eprintln!("{}", stats_line(&stats, session.context())),
        Err(e) => eprintln!("error: {e}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse() {
        assert_eq!(Command::parse("hello /reset"), None);
        assert_eq!(Command::parse(" /reset "), Some(Command::Reset));
        assert_eq!(
            Command::parse("/system Be brief.  "),
            Some(Command::System(Some("Be brief.".into())))
        );
        assert_eq!(Command::parse("/system"), Some(Command::System(None)));
        assert_eq!(
            Command::parse("/system -"),
            Some(Command::System(Some(String::new())))
        );
        assert_eq!(
            Command::parse("/save a b.json"),
            Some(Command::Save("a b.json".into()))
        );
        assert_eq!(
            Command::parse("/load"),
            Some(Command::Missing("/load FILE"))
        );
        assert_eq!(
            Command::parse("/frobnicate x"),
            Some(Command::Unknown("frobnicate".into()))
        );
    }

    #[test]
    fn escape_sequences_do_not_reach_the_terminal() {
        assert_eq!(sanitize_for_terminal("a\tb\nc"), "a\tb\nc");
        assert_eq!(
            sanitize_for_terminal("\x1b]0;pwned\x07x\r"),
            "\u{fffd}]0;pwned\u{fffd}x\u{fffd}"
        );
    }
}
