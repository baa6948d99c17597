//! The examples in `--help`, read back out of the help text: the command lines of each
//! `Examples:` block (`Example:` too), which must work as printed against `portcullis dev`,
//! and those of `In a deployment:` blocks, which need real infrastructure. A heading starts
//! at the line's first column; the block is its indented lines, up to the next line that
//! starts at the first column. In a block, `#` lines are comments, a line ending in `\` goes
//! on in the next, and a command that runs until interrupted ends with [`LONG_RUNNING`].
//!
//! Pure text handling with no dependencies: the unit tests (src/cli/tests.rs) and
//! tests/help_examples.rs, which runs every example against a dev instance, share it.

/// The comment that ends an example running until Ctrl-C (`connect echo --listen-port 0`).
pub(crate) const LONG_RUNNING: &str = "# Ctrl-C ends it";

/// Which kind of block a command line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Block {
    /// `Examples:`: works as printed against `portcullis dev`.
    Dev,
    /// `In a deployment:`: needs a real controller, hosts or files.
    Deployment,
}

/// One command line of an examples block, continuation lines joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Example {
    pub block: Block,
    pub line: String,
}

impl Example {
    /// Whether the command runs until interrupted.
    pub(crate) fn long_running(&self) -> bool {
        self.line.trim_end().ends_with(LONG_RUNNING)
    }

    /// Whether the command is `portcullis` itself (not a shell line around it).
    pub(crate) fn is_portcullis(&self) -> bool {
        self.line.starts_with("portcullis ")
    }
}

fn heading(line: &str) -> Option<Option<Block>> {
    if line.is_empty() || line.starts_with(char::is_whitespace) {
        return None;
    }
    let line = line.trim_end();
    Some(match line {
        "Examples:" | "Example:" => Some(Block::Dev),
        // `In a deployment (why):` too.
        _ if line.starts_with("In a deployment") && line.ends_with(':') => Some(Block::Deployment),
        _ => None,
    })
}

/// Every command line of every examples block in `help`, in order.
pub(crate) fn examples(help: &str) -> Vec<Example> {
    let mut found = Vec::new();
    let mut block = None;
    let mut pending: Option<String> = None;
    for line in help.lines() {
        if let Some(next) = heading(line) {
            block = next;
            pending = None;
            continue;
        }
        let Some(kind) = block else { continue };
        let text = line.trim();
        if pending.is_none() && (text.is_empty() || text.starts_with('#')) {
            continue;
        }
        let joined = match pending.take() {
            Some(head) => format!("{head} {text}"),
            None => text.to_owned(),
        };
        match joined.strip_suffix('\\') {
            Some(head) => pending = Some(head.trim_end().to_owned()),
            None => found.push(Example {
                block: kind,
                line: joined,
            }),
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_comments_and_continuations() {
        let help = "\
Do things.

Examples:
  # A comment.
  portcullis targets list
  portcullis connect echo --listen-port 0  # Ctrl-C ends it
  printf 'x' > f.txt

  portcullis a \\
      --b c

In a deployment (a real one):
  portcullis connect web --stdio
Prose after the block,
  portcullis not-an-example
Example:
  portcullis whoami
";
        let found = examples(help);
        let lines: Vec<(&str, Block)> = found.iter().map(|e| (e.line.as_str(), e.block)).collect();
        assert_eq!(
            lines,
            [
                ("portcullis targets list", Block::Dev),
                (
                    "portcullis connect echo --listen-port 0  # Ctrl-C ends it",
                    Block::Dev
                ),
                ("printf 'x' > f.txt", Block::Dev),
                ("portcullis a --b c", Block::Dev),
                ("portcullis connect web --stdio", Block::Deployment),
                ("portcullis whoami", Block::Dev),
            ]
        );
        assert!(found[1].long_running());
        assert!(!found[0].long_running());
        assert!(!found[2].is_portcullis());
    }
}
