//! Long offline commands (`svault inspect`, `report`, `replay`) draw a progress bar (records,
//! records per second, time left) on a terminal and print nothing of it when piped: scripts and
//! files get the result alone. The terminal is a real pseudo-terminal (`script`, util-linux),
//! so the test also proves the bar is drawn there — the piped check is not vacuous.

use runtime::{Durability, Engine, EngineConfig, Scope, Tuning};
use std::path::Path;
use std::process::{Command, Stdio};
use svault_core::command::{CardId, Channel, Command as Cmd, Request};
use svault_core::money::Amount;
use svault_core::program::Program;
use svault_tests::svault_bin;

/// A small data directory: the demo program, a few cards, a few hundred top-ups.
fn data_dir(dir: &Path) {
    let engine = Engine::open_with(
        EngineConfig {
            data_dir: dir.into(),
            shards: Some(2),
            durability: Durability::Group,
        },
        Tuning::default(),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let send = |key: String, command: Cmd| {
        rt.block_on(engine.submit(
            Request {
                idempotency_key: Some(key),
                command,
            },
            &Scope::All,
        ))
        .unwrap();
    };
    send("p".into(), Cmd::UpsertProgram(Program::demo()));
    for c in 1..=4u64 {
        send(
            format!("open-{c}"),
            Cmd::OpenCard {
                card_id: CardId(c),
                program: "demo".into(),
                registered: true,
                birthday: None,
            },
        );
        for i in 0..100 {
            send(
                format!("t-{c}-{i}"),
                Cmd::TopUp {
                    card_id: CardId(c),
                    amount: Amount(100),
                    channel: Channel::Wechat,
                },
            );
        }
    }
    engine.shutdown();
}

/// What a progress bar leaves in a stream: carriage returns, terminal escapes, its words
/// (`report` ends its table with a `records/s` line of its own, on stdout).
fn bar_bytes(out: &[u8], words: bool) -> bool {
    let s = String::from_utf8_lossy(out);
    out.contains(&b'\r')
        || s.contains('\u{1b}')
        || s.contains(" left)")
        || (words && s.contains("records/s"))
}

fn piped(args: &[&str]) -> (Vec<u8>, Vec<u8>) {
    let out = Command::new(svault_bin!())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "svault {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.stdout, out.stderr)
}

/// Everything the command wrote to a pseudo-terminal (stdout and stderr both).
fn on_a_terminal(args: &[&str]) -> String {
    let mut line = String::from(svault_bin!());
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .output()
        .expect("`script` (util-linux) runs the command on a pseudo-terminal");
    assert!(
        out.status.success(),
        "svault {args:?} on a terminal: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn inspect_report_and_replay_draw_a_bar_on_a_terminal_and_nothing_of_it_when_piped() {
    let dir = tempfile::tempdir().unwrap();
    data_dir(dir.path());
    let data = dir.path().to_str().unwrap();
    for command in ["inspect", "report", "replay"] {
        let args = [command, "--data", data];
        let (stdout, stderr) = piped(&args);
        let text = String::from_utf8_lossy(&stdout);
        assert!(
            text.contains(match command {
                "inspect" => "shard 0",
                "report" => "== program demo ==",
                _ => "svault replay of",
            }),
            "{text}"
        );
        assert!(
            !bar_bytes(&stdout, false),
            "svault {command} | ...: {text:?}"
        );
        assert!(
            !bar_bytes(&stderr, true),
            "svault {command} 2>file: {:?}",
            String::from_utf8_lossy(&stderr)
        );

        let tty = on_a_terminal(&args);
        assert!(
            tty.contains('\u{1b}')
                && tty.contains(&format!("{command}: "))
                && tty.contains(" records, "),
            "svault {command} on a terminal drew no bar: {tty:?}"
        );
    }
}
