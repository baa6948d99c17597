//! The processes a driver started (chromium and its helpers), read from /proc, so that none
//! outlives a [`super::Browser`].

/// A process of chromium's, told from a later process with the same id by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Proc {
    pub pid: u32,
    start: u64,
}

impl Proc {
    /// Whether it is still running (a zombie waiting for its reaper counts as gone).
    pub(crate) fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.start && s.state != 'Z')
    }
}

struct Stat {
    state: char,
    ppid: u32,
    start: u64,
}

/// /proc/PID/stat's state, parent and start time (fields 3, 4 and 22; the command name, field
/// 2, is in parentheses and may hold spaces).
fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Every process below `root` (children, their children...), not `root` itself.
pub(super) fn descendants(root: u32) -> Vec<Proc> {
    let mut parents: Vec<(u32, Stat)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        if let Some(s) = stat(pid) {
            parents.push((pid, s));
        }
    }
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, s)| s.ppid == parent)
                .map(|(pid, _)| *pid),
        );
        i += 1;
    }
    found
        .into_iter()
        .skip(1)
        .filter_map(|pid| {
            parents.iter().find(|(p, _)| *p == pid).map(|(_, s)| Proc {
                pid,
                start: s.start,
            })
        })
        .collect()
}
