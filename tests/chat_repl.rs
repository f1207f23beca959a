//! `kiln chat`: the session over a tiny random model with a real vocabulary (incremental
//! prefill, context limits, save/load, cancel), and the REPL driven in a tmux pseudo-terminal
//! as a person would drive it: typed turns, a continued line, `/reset`, Ctrl-C at the prompt
//! and during an answer, Ctrl-D. tmux is required (CI installs it); without it the test fails.

#[path = "common/tiny_chat_model.rs"]
mod tiny_chat_model;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use kiln::backend::cpu::CpuBackend;
use kiln::chat::SamplerConfig;
use kiln::chat::session::{
    GenerateConfig, Message, Role, Session, SessionError, StopReason, Transcript,
};
use kiln::gguf::Gguf;
use kiln::model::Model;
use kiln::tokenizer::Tokenizer;

fn model_file(dir: &Path) -> PathBuf {
    let path = dir.join("tiny-chat.gguf");
    tiny_chat_model::write(&path);
    path
}

fn sampler() -> SamplerConfig {
    SamplerConfig {
        temperature: 1.0,
        seed: 7,
        ..SamplerConfig::default()
    }
}

fn gen_cfg(max_tokens: usize) -> GenerateConfig {
    GenerateConfig {
        max_tokens,
        stop: Vec::new(),
        ignore_eog: true,
    }
}

#[test]
fn turns_prefill_only_their_own_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let file = Gguf::open(model_file(dir.path())).unwrap();
    let b = CpuBackend::new(false);
    let model = Model::load(&file, &b).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    assert_eq!(tok.n_vocab(), model.config.vocab);
    let mut s = Session::new(&b, &model, &tok, sampler(), gen_cfg(0), 512).unwrap();
    let no = AtomicBool::new(false);

    // An empty answer re-renders exactly as fed, so the next turn must reuse all of it.
    let t1 = s.send("Hello there", &no, |_| {}).unwrap();
    assert_eq!(t1.reused_tokens, 0);
    assert_eq!(t1.generated_tokens, 0);
    assert_eq!(t1.stop, StopReason::MaxTokens);
    let t2 = s.send("And again", &no, |_| {}).unwrap();
    assert_eq!(t2.reused_tokens, t1.prompt_tokens);
    assert!(t2.prompt_tokens > 0);
    assert_eq!(s.context().0, t1.prompt_tokens + t2.prompt_tokens);
    assert_eq!(s.stats().reprefills, 0);

    // A new system prompt changes the start of the rendering: everything is fed again.
    s.set_system(Some("Be terse.".into()));
    let t3 = s.send("Third", &no, |_| {}).unwrap();
    assert_eq!(t3.reused_tokens, 0);
    assert_eq!(s.stats().reprefills, 1);
    assert_eq!(s.context().0, t3.prompt_tokens);

    // An answer of n tokens: the cache holds the prompt and all but the last sampled token.
    s.generate = gen_cfg(5);
    let mut streamed = String::new();
    let t4 = s.send("Fourth", &no, |p| streamed.push_str(p)).unwrap();
    assert_eq!(t4.generated_tokens, 5);
    assert_eq!(t4.stop, StopReason::MaxTokens);
    assert_eq!(s.messages().last().unwrap().content, streamed);
    assert_eq!(s.messages().len(), 8);

    // The same conversation from a file is fed from scratch and lands in the same place.
    let saved = dir.path().join("conv.json");
    s.save(&saved).unwrap();
    let before = s.context().0;
    s.reset();
    assert_eq!(s.messages().len(), 0);
    assert_eq!(s.system(), Some("Be terse."));
    s.load(&saved).unwrap();
    assert_eq!(s.messages().len(), 8);
    s.generate = gen_cfg(0);
    let t5 = s.send("Fifth", &no, |_| {}).unwrap();
    assert_eq!(t5.reused_tokens, 0);
    assert!(t5.prompt_tokens > before - t4.generated_tokens);
}

#[test]
fn full_context_cancel_and_transcripts() {
    let dir = tempfile::tempdir().unwrap();
    let file = Gguf::open(model_file(dir.path())).unwrap();
    let b = CpuBackend::new(false);
    let model = Model::load(&file, &b).unwrap();
    let tok = Tokenizer::from_gguf(&file).unwrap();
    let no = AtomicBool::new(false);

    // A prompt longer than the cache: an error naming /reset, and the message is taken back.
    let mut s = Session::new(&b, &model, &tok, sampler(), gen_cfg(4), 16).unwrap();
    let long = "word ".repeat(40);
    let err = s.send(&long, &no, |_| {}).unwrap_err();
    assert!(matches!(err, SessionError::ContextFull { .. }), "{err}");
    assert!(err.to_string().contains("/reset"), "{err}");
    assert!(s.messages().is_empty());

    // The answer runs into the end of the cache: the partial answer is kept, the error shown.
    let mut s = Session::new(&b, &model, &tok, sampler(), gen_cfg(10_000), 40).unwrap();
    let err = s.send("Hi", &no, |_| {}).unwrap_err();
    assert!(matches!(err, SessionError::ContextFull { .. }), "{err}");
    assert_eq!(s.messages().len(), 2);
    assert_eq!(s.context().0, 40);

    // A raised cancel flag stops before the first token.
    let mut s = Session::new(&b, &model, &tok, sampler(), gen_cfg(10_000), 256).unwrap();
    let yes = AtomicBool::new(true);
    let t = s.send("Hi", &yes, |_| {}).unwrap();
    assert_eq!((t.generated_tokens, t.stop), (0, StopReason::Cancelled));

    // A system message in the file becomes the system prompt.
    let path = dir.path().join("t.json");
    std::fs::write(
        &path,
        r#"{"messages":[{"role":"system","content":"S"},{"role":"user","content":"U"},
            {"role":"assistant","content":"A"}]}"#,
    )
    .unwrap();
    s.load(&path).unwrap();
    assert_eq!(
        s.transcript(),
        Transcript {
            system: Some("S".into()),
            messages: vec![
                Message {
                    role: Role::User,
                    content: "U".into()
                },
                Message {
                    role: Role::Assistant,
                    content: "A".into()
                },
            ],
        }
    );
    std::fs::write(&path, "{\"messages\": 3}").unwrap();
    let err = s.load(&path).unwrap_err();
    assert!(err.to_string().contains("t.json"), "{err}");
    assert_eq!(s.messages().len(), 2, "a bad file leaves the conversation");
}

/// One tmux server of our own (its own socket), killed when the test ends.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `argv` directly (no shell, so Ctrl-C reaches only kiln) in a 200×50 pane that
    /// stays after the program exits, so its exit status can be read.
    fn start(name: &str, argv: &[String]) -> Tmux {
        let t = Tmux {
            socket: format!("kiln-chat-test-{}-{name}", std::process::id()),
        };
        let status = Command::new("tmux")
            .args(["-L", &t.socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", "200", "-y", "50", "-s", "chat"])
            .args(argv)
            .status()
            .expect(
                "tmux must be installed to test `kiln chat` in a terminal (apt-get install tmux)",
            );
        assert!(status.success(), "tmux new-session failed");
        t.tmux(&["set-option", "-t", "chat", "remain-on-exit", "on"]);
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Presses Ctrl-D at the prompt and returns the exit status once kiln has ended.
    ///
    /// The caller waits for the prompt first: rustyline asks the terminal for the cursor
    /// position before it draws the prompt and takes the first byte that comes back as the
    /// answer, and before that the tty is in cooked mode, where Ctrl-D is the line
    /// discipline's, so a key sent earlier is lost (a person only types at a visible prompt).
    ///
    /// tmux 3.3a as Debian builds it (with libutempter) can miss the SIGCHLD of a pane's
    /// program: closing the pty runs utempter, whose own SIGCHLD handler is in place for a
    /// moment, and the program exits in that moment. The pane is then dead with no exit
    /// status and the program a zombie that tmux never reaps (tmux issues #311, #4841): about one
    /// run in four here. So a dead pane without a status gets the SIGCHLD it missed, which makes
    /// tmux reap it.
    fn leave_with_ctrl_d(&self) -> String {
        self.keys(&["C-d"]);
        let start = Instant::now();
        let mut nudged: Option<Instant> = None;
        loop {
            let s = self.tmux(&[
                "display-message",
                "-p",
                "-t",
                "chat",
                "#{pane_dead} #{pid} #{pane_dead_status}",
            ]);
            let mut f = s.split_whitespace();
            let (dead, server, status) = (f.next(), f.next(), f.next());
            match (dead, status) {
                (Some("1"), Some(status)) => return status.to_string(),
                // Again now and then: a SIGCHLD sent before the exit is complete reaps nothing.
                (Some("1"), None)
                    if nudged.is_none_or(|t| t.elapsed() > Duration::from_millis(500)) =>
                {
                    nudged = Some(Instant::now());
                    eprintln!("tmux has not reaped kiln: sending it the SIGCHLD it missed");
                    let server = server.expect("tmux server pid");
                    // The shell's built-in kill: /bin/kill comes with procps, not everywhere.
                    let kill = format!("kill -s CHLD {server}");
                    let _ = Command::new("sh").args(["-c", &kill]).status();
                }
                _ => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "kiln did not exit on Ctrl-D ({}); screen:\n{}",
                s.trim(),
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn keys(&self, keys: &[&str]) {
        let ok = Command::new("tmux")
            .args(["-L", &self.socket, "send-keys", "-t", "chat"])
            .args(keys)
            .status()
            .unwrap()
            .success();
        assert!(ok, "tmux send-keys {keys:?}");
    }

    /// Types `text` literally, then Enter.
    fn line(&self, text: &str) {
        self.keys(&["-l", text]);
        self.keys(&["Enter"]);
    }

    /// The whole pane, scrollback included, wrapped lines joined.
    fn screen(&self) -> String {
        let out = Command::new("tmux")
            .args(["-L", &self.socket, "capture-pane", "-p", "-J", "-S", "-"])
            .args(["-t", "chat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Polls the screen until `done` holds; fails with the screen after a minute.
    fn wait(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if done(&s) {
                return s;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .status();
    }
}

/// The banner is out and the last line is the empty prompt (tmux trims its trailing space).
fn at_prompt(screen: &str) -> bool {
    screen.contains("kiln chat:") && screen.trim_end().lines().last() == Some(">")
}

/// The stats lines after each answer. After Ctrl-C the tty's echo "^C" may stand before one.
fn stats_lines(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .map(|l| l.strip_prefix("^C").unwrap_or(l))
        .filter(|l| l.starts_with("[prompt: "))
        .collect()
}

/// The numbers after `key` in a stats line: "prompt: 12 tokens" → 12.
fn field(line: &str, key: &str) -> usize {
    let rest = &line[line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

fn chat_command(model: &Path, history: &Path, extra: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = vec![env!("CARGO_BIN_EXE_kiln").into(), "chat".into()];
    argv.extend(["-m".into(), model.display().to_string()]);
    argv.extend(["--history".into(), history.display().to_string()]);
    for a in [
        "--backend",
        "cpu",
        "--temp",
        "1",
        "--seed",
        "3",
        "--ignore-eos",
    ]
    .iter()
    .chain(extra)
    {
        argv.push(a.to_string());
    }
    argv
}

#[test]
fn terminal_turns_reset_and_exit() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_file(dir.path());
    let history = dir.path().join("state/history");
    let t = Tmux::start(
        "turns",
        &chat_command(&model, &history, &["-n", "8", "--ctx", "2048"]),
    );
    t.wait("the prompt", at_prompt);

    t.line("Hello there");
    // Keys go in only at a drawn prompt, as a person's would (see `leave_with_ctrl_d`).
    let s = t.wait("the first answer", |s| {
        stats_lines(s).len() == 1 && at_prompt(s)
    });
    let first = stats_lines(&s)[0].to_string();
    assert_eq!(field(&first, "generated:"), 8, "{first}");
    assert!(field(&first, "prompt:") > 0, "{first}");
    assert!(first.contains("tok/s"), "{first}");
    // Streamed text sits between the typed line and the stats line.
    let lines: Vec<&str> = s.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("[prompt: "))
        .unwrap();
    let asked = lines
        .iter()
        .position(|l| l.contains("> Hello there"))
        .unwrap();
    assert!(
        lines[asked + 1..at].iter().any(|l| !l.trim().is_empty()),
        "no answer text on screen:\n{s}"
    );

    // A line ending in a backslash continues on the next one.
    t.line("Second \\");
    t.wait("the continuation prompt", |s| {
        s.lines()
            .skip_while(|l| !l.starts_with("> Second \\"))
            .nth(1)
            .is_some_and(|l| l.starts_with('.'))
    });
    t.line("turn");
    let s = t.wait("the second answer", |s| {
        stats_lines(s).len() == 2 && at_prompt(s)
    });
    let second = stats_lines(&s)[1].to_string();
    assert_eq!(field(&second, "generated:"), 8, "{second}");
    assert!(
        field(&second, "context") > field(&first, "context"),
        "{first}\n{second}"
    );

    // Ctrl-C at the prompt drops the typed line and keeps the program.
    t.keys(&["-l", "never sent"]);
    t.wait("the typed line", |s| s.trim_end().ends_with("> never sent"));
    t.keys(&["C-c"]);
    t.wait("a fresh prompt", at_prompt);
    t.line("/reset");
    t.wait("the reset", |s| {
        s.contains("(conversation cleared)") && at_prompt(s)
    });

    // After /reset the same first message is the same prompt and the same context.
    t.line("Hello there");
    let s = t.wait("the answer after reset", |s| {
        stats_lines(s).len() == 3 && at_prompt(s)
    });
    let third = stats_lines(&s)[2].to_string();
    assert_eq!(
        field(&third, "prompt:"),
        field(&first, "prompt:"),
        "{first}\n{third}"
    );
    assert_eq!(
        field(&third, "context"),
        field(&first, "context"),
        "{first}\n{third}"
    );

    t.line("/stats");
    t.wait("the totals and the prompt", |s| {
        s.contains("turns: 3 |") && at_prompt(s)
    });
    assert_eq!(t.leave_with_ctrl_d(), "0");
    let h = std::fs::read_to_string(&history).unwrap();
    assert!(h.contains("Hello there") && h.contains("/reset"), "{h}");
    assert!(!h.contains("never sent"), "{h}");
}

#[test]
fn terminal_ctrl_c_stops_only_the_answer() {
    let dir = tempfile::tempdir().unwrap();
    let model = model_file(dir.path());
    let history = dir.path().join("history");
    let t = Tmux::start(
        "cancel",
        &chat_command(&model, &history, &["-n", "100000", "--ctx", "100001"]),
    );
    t.wait("the prompt", at_prompt);
    t.line("Tell me everything");
    // The answer is streaming: the screen keeps changing and no stats line has come yet.
    let a = t.wait("streamed text", |s| {
        s.lines()
            .skip_while(|l| !l.contains("> Tell me everything"))
            .skip(1)
            .map(str::len)
            .sum::<usize>()
            > 400
    });
    let b = t.wait("more streamed text", |s| s != a);
    assert!(stats_lines(&b).is_empty(), "{b}");
    t.keys(&["C-c"]);
    let s = t.wait("the cancelled answer", |s| {
        stats_lines(s).len() == 1 && at_prompt(s)
    });
    let line = stats_lines(&s)[0];
    assert!(line.ends_with(", cancelled]"), "{line}");
    assert!(field(line, "generated:") < 100_000, "{line}");
    let alive = t.tmux(&["display-message", "-p", "-t", "chat", "#{pane_dead}"]);
    assert_eq!(alive.trim(), "0", "Ctrl-C ended the program:\n{s}");
    // Still running: a command answers, then Ctrl-D leaves cleanly.
    t.line("/stats");
    t.wait("the totals and the prompt", |s| {
        s.contains("turns: 1 |") && at_prompt(s)
    });
    assert_eq!(t.leave_with_ctrl_d(), "0");
}
