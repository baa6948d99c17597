use super::*;

/// The subcommand at `path` under `cmd`.
fn at<'c>(cmd: &'c clap::Command, path: &[&str]) -> &'c clap::Command {
    path.iter().fold(cmd, |c, name| {
        c.find_subcommand(name)
            .unwrap_or_else(|| panic!("no subcommand {name}"))
    })
}

fn completes_targets(cmd: &clap::Command, path: &[&str], arg: &str) -> bool {
    at(cmd, path)
        .get_arguments()
        .find(|a| a.get_id() == arg)
        .unwrap_or_else(|| panic!("{path:?} has no argument {arg}"))
        .get::<ArgValueCandidates>()
        .is_some()
}

#[test]
fn target_arguments_complete_target_names_and_others_do_not() {
    let cmd = command();
    assert!(completes_targets(&cmd, &["connect"], "target"));
    assert!(completes_targets(&cmd, &["connect", "ssh"], "target"));
    for leaf in ["show", "update", "delete"] {
        assert!(
            completes_targets(&cmd, &["targets", leaf], "id_or_name"),
            "{leaf}"
        );
    }
    // The same argument name elsewhere names something else.
    assert!(!completes_targets(&cmd, &["workers", "show"], "id_or_name"));
    assert!(!completes_targets(&cmd, &["users", "show"], "name"));
    // `audit list --target` takes an id, not a name.
    assert!(!completes_targets(&cmd, &["audit", "list"], "target"));
}

#[test]
fn the_scripts_call_the_binary_back_through_its_variable() {
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let text = String::from_utf8(script(shell).unwrap()).unwrap();
        assert!(text.contains(VAR), "{shell:?}: {text}");
        assert!(text.contains("portcullis"), "{shell:?}: {text}");
    }
    let bash = String::from_utf8(script(Shell::Bash).unwrap()).unwrap();
    assert!(bash.contains("complete -o nospace"), "{bash}");
    assert!(bash.contains("_clap_complete_portcullis"), "{bash}");
}
