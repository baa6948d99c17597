//! `--open`: the URL in the user's browser, through the platform's opener. A missing or
//! failing opener is a warning: the URL is printed anyway.

use std::process::{Command, Stdio};

/// The program and arguments that open `url` on the platform `os` (as
/// `std::env::consts::OS` names it): `xdg-open` on Linux and the BSDs, `open` on macOS,
/// `cmd /C start "" URL` on Windows; `None` elsewhere.
pub(super) fn opener(os: &str, url: &str) -> Option<(&'static str, Vec<String>)> {
    match os {
        "linux" | "freebsd" | "openbsd" | "netbsd" | "dragonfly" | "illumos" | "solaris" => {
            Some(("xdg-open", vec![url.to_owned()]))
        }
        "macos" => Some(("open", vec![url.to_owned()])),
        // `start`'s first quoted argument is a window title: give it an empty one.
        "windows" => Some((
            "cmd",
            vec!["/C".into(), "start".into(), String::new(), url.to_owned()],
        )),
        _ => None,
    }
}

/// Opens `url` in the browser (the URL holds no secret, so it may be an argument).
pub(super) fn open_browser(url: &str) {
    let Some((program, args)) = opener(std::env::consts::OS, url) else {
        eprintln!("warning: no way to open a browser here; open {url} yourself");
        return;
    };
    let spawned = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    match spawned {
        // Reaped in the background: xdg-open returns once the browser has the URL.
        Ok(mut child) => {
            std::thread::spawn(move || child.wait());
        }
        Err(err) => eprintln!("warning: cannot run {program} ({err}); open {url} yourself"),
    }
}

#[cfg(test)]
mod tests {
    use super::opener;

    #[test]
    fn each_platform_has_its_opener() {
        let url = "https://localhost:8443/";
        assert_eq!(
            opener("linux", url),
            Some(("xdg-open", vec![url.to_owned()]))
        );
        assert_eq!(opener("freebsd", url).map(|o| o.0), Some("xdg-open"));
        assert_eq!(opener("macos", url), Some(("open", vec![url.to_owned()])));
        let (program, args) = opener("windows", url).unwrap_or_default();
        assert_eq!(program, "cmd");
        assert_eq!(args, ["/C", "start", "", url]);
        assert_eq!(opener("haiku", url), None);
    }
}
