//! Text that came from outside the process, made safe to show: in a log line, in a terminal
//! table, or kept out of a stored label altogether.
//!
//! A value a peer chose (a serde error that quotes an unknown field, a user or group name
//! from the identity provider, a target label) may hold control characters: a newline forges
//! a second log line, `ESC ]` starts an OSC sequence a terminal obeys, and bidirectional
//! overrides make text read differently from what it is. [`escaped`] shows every such
//! character as a visible escape (`\n`, `\u{1b}`, `\u{202e}`); [`first_unsafe`] finds the
//! first one, for inputs that must refuse them. The controller, the worker and the CLI all
//! use this one module, so a value reads the same in every log and table.

use std::fmt::{self, Write as _};

/// Whether `c` must not reach a log line or a terminal as it is: C0 and C1 control
/// characters (tab, newline, escape, DEL...), bidirectional formatting characters
/// (U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069), zero-width and invisible
/// formatting characters (U+200B–U+200D, U+2060–U+2064, U+FEFF), the line and paragraph
/// separators U+2028 and U+2029, and the interlinear annotation marks U+FFF9–U+FFFB.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
                | '\u{FFF9}'..='\u{FFFB}'
        )
}

/// The first character of `text` that [`is_unsafe`], if any.
pub fn first_unsafe(text: &str) -> Option<char> {
    text.chars().find(|&c| is_unsafe(c))
}

/// `value` as it is displayed, with every [`is_unsafe`] character written as an escape:
/// `\n`, `\r`, `\t`, and `\u{HEX}` for the others. Everything else is unchanged.
pub fn escaped<T: fmt::Display>(value: T) -> Escaped<T> {
    Escaped(value)
}

/// [`escaped`] into a new string.
pub fn escape(value: &str) -> String {
    if first_unsafe(value).is_none() {
        return value.to_owned();
    }
    escaped(value).to_string()
}

/// A value displayed with its unsafe characters escaped; see [`escaped`].
#[derive(Debug, Clone, Copy)]
pub struct Escaped<T>(T);

impl<T: fmt::Display> fmt::Display for Escaped<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(EscapingWriter(f), "{}", self.0)
    }
}

/// Passes text on, escaping unsafe characters as they stream through.
struct EscapingWriter<'a, 'b>(&'a mut fmt::Formatter<'b>);

impl fmt::Write for EscapingWriter<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some((at, c)) = rest.char_indices().find(|&(_, c)| is_unsafe(c)) {
            self.0.write_str(&rest[..at])?;
            match c {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                other => write!(self.0, "\\u{{{:x}}}", u32::from(other))?,
            }
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_become_visible_escapes() {
        let hostile = "a\u{1b}]0;pwned\u{7}\nINFO forged\r\t\u{202e}txt.exe\u{9b}\u{2066}z";
        let shown = escape(hostile);
        assert_eq!(
            shown,
            "a\\u{1b}]0;pwned\\u{7}\\nINFO forged\\r\\t\\u{202e}txt.exe\\u{9b}\\u{2066}z"
        );
        assert!(first_unsafe(&shown).is_none(), "{shown}");
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for text in ["web-01", "Zoë Müller", "日本語", "ops/admins", "a b\\n"] {
            assert_eq!(escape(text), text);
            assert_eq!(escaped(text).to_string(), text);
            assert_eq!(first_unsafe(text), None);
        }
    }

    #[test]
    fn escaping_streams_through_any_display() {
        let err = std::io::Error::other("unknown field `\u{1b}[2J`\n");
        assert_eq!(escaped(&err).to_string(), "unknown field `\\u{1b}[2J`\\n");
    }

    #[test]
    fn the_unsafe_ranges_are_the_documented_ones() {
        for c in [
            '\0', '\u{7f}', '\u{85}', '\u{9f}', '\u{61c}', '\u{200b}', '\u{200e}', '\u{2028}',
            '\u{2029}', '\u{202a}', '\u{202e}', '\u{2060}', '\u{2066}', '\u{2069}', '\u{feff}',
        ] {
            assert!(is_unsafe(c), "{:x}", u32::from(c));
        }
        for c in [' ', '~', '\u{a0}', 'é', '\u{2010}', '\u{2070}', '\u{fffd}'] {
            assert!(!is_unsafe(c), "{:x}", u32::from(c));
        }
    }
}
