#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt as _, BufReader};

use super::*;

fn env_of(pairs: &[(&str, &str)]) -> impl Iterator<Item = (OsString, OsString)> {
    pairs
        .iter()
        .map(|(n, v)| (OsString::from(n), OsString::from(v)))
        .collect::<Vec<_>>()
        .into_iter()
}

#[test]
fn the_token_and_other_portcullis_secrets_are_removed() {
    let env = environment(
        env_of(&[
            ("HOME", "/home/ci"),
            ("PORTCULLIS_TOKEN", "pc_secret"),
            ("PORTCULLIS_MASTER_KEY", "mk"),
            ("PORTCULLIS_ADDR", "https://c:9200"),
            ("PORTCULLIS_RUN_SOCKET", "/outer/run.sock"),
        ]),
        Path::new("/run/user/1/portcullis-run-x/run.sock"),
    );
    let get = |name: &str| {
        env.iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.to_str().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("HOME"), ["/home/ci"]);
    assert_eq!(get("PORTCULLIS_ADDR"), ["https://c:9200"]);
    assert!(get("PORTCULLIS_TOKEN").is_empty());
    assert!(get("PORTCULLIS_MASTER_KEY").is_empty());
    // Exactly one socket: this run's.
    assert_eq!(
        get("PORTCULLIS_RUN_SOCKET"),
        ["/run/user/1/portcullis-run-x/run.sock"]
    );
}

#[tokio::test]
async fn the_command_sees_the_socket_and_no_token() {
    let env = environment(
        env_of(&[("PATH", "/usr/bin:/bin"), ("PORTCULLIS_TOKEN", "pc_secret")]),
        Path::new("/tmp/x/run.sock"),
    );
    let argv = [
        "sh".to_owned(),
        "-c".to_owned(),
        "echo \"[$PORTCULLIS_TOKEN][$PORTCULLIS_RUN_SOCKET]\"; env | grep -c PORTCULLIS_TOKEN"
            .to_owned(),
    ];
    let output = command(&argv, env)
        .unwrap()
        .stdout(Stdio::piped())
        .output()
        .await
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text, "[][/tmp/x/run.sock]\n0\n");
    assert!(command(&[], Vec::new()).is_err(), "a command is required");
}

#[tokio::test]
async fn exit_status_and_signals_pass_through() {
    let run = |script: &str| {
        let argv = ["sh".to_owned(), "-c".to_owned(), script.to_owned()];
        command(&argv, env_of(&[("PATH", "/usr/bin:/bin")]).collect())
            .unwrap()
            .status()
    };
    let status = run("exit 7").await.unwrap();
    assert_eq!(exit_code(status), 7);
    assert_eq!(finish(status).exit_status, Some(7));
    assert_eq!(finish(status).signal, None);
    let status = run("kill -TERM $$").await.unwrap();
    assert_eq!(exit_code(status), 143);
    assert_eq!(finish(status).exit_status, None);
    assert_eq!(finish(status).signal, Some(15));
}

#[tokio::test]
async fn a_caught_sigterm_is_forwarded_to_the_command() {
    let argv = [
        "sh".to_owned(),
        "-c".to_owned(),
        "trap 'exit 42' TERM; echo ready; while :; do sleep 0.05; done".to_owned(),
    ];
    let mut child = command(&argv, env_of(&[("PATH", "/usr/bin:/bin")]).collect())
        .unwrap()
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next_line().await.unwrap().as_deref(), Some("ready"));
    signal(&child, forwarded(Caught::Terminate, false).unwrap());
    let status = child.wait().await.unwrap();
    assert_eq!(exit_code(status), 42, "the command's trap ran");
}

#[test]
fn a_terminal_ctrl_c_is_not_sent_twice() {
    assert_eq!(forwarded(Caught::Interrupt, true), None);
    assert_eq!(forwarded(Caught::Interrupt, false), Some(Signal::INT));
    assert_eq!(forwarded(Caught::Terminate, true), Some(Signal::TERM));
    assert_eq!(forwarded(Caught::Hangup, false), Some(Signal::HUP));
}
