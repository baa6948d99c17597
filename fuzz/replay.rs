// The unit test that replays a fuzz target's seed corpus and past crashes, written once for
// every crate with fuzz targets (they share no test-only crate): each crate's fuzzing tests
// `include!` this file.

/// Runs `target` on every file of `corpus/NAME` and `regressions/NAME` under `fuzz` (the
/// repository's `fuzz` directory) and fails when there is none.
fn replay_corpus(fuzz: &std::path::Path, name: &str, target: fn(&[u8])) {
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(name)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            eprintln!("replaying {}", path.display());
            target(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    assert!(
        count > 0,
        "no seed corpus for {name} under {}",
        fuzz.display()
    );
}
