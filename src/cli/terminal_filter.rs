//! The terminal filter between a recording and the reviewer's terminal.
//!
//! `sessions play` and `sessions watch` print bytes that the recorded user's programs wrote.
//! A hostile recording could hold escape sequences that act on the reviewer's terminal rather
//! than draw on it: write the clipboard (OSC 52), make the terminal answer a question (device
//! attributes, cursor position, window title, colours, mode state, the answerback of ENQ),
//! whose answer then arrives on the reviewer's input as if typed, or feed a DCS/APC string to
//! whatever the terminal or multiplexer does with one. This module lets through only what
//! draws, and drops everything else.
//!
//! ## How
//!
//! The bytes go through [`vte`], the parser Alacritty uses (a DEC ANSI state machine that keeps
//! its state between calls, so a sequence split across two writes is still one sequence). Each
//! complete item it reports is checked against the allow-list below and, if allowed, written
//! out again in 7-bit form. Nothing from the input reaches the output unparsed, so a sequence
//! the filter does not understand is dropped, not passed on. `vte` was chosen over `avt`
//! (asciinema's virtual terminal) because `avt` renders into a screen buffer: re-emitting a
//! stream from it would mean diffing screens, where `vte` hands over each sequence as it goes.
//! `vte` is used without its `ansi` feature: only the parser, no dependencies beyond
//! `memchr` and `arrayvec`.
//!
//! ## Allow-list
//!
//! Parameters are written back as parsed: `CSI 0 m` and `CSI m`, which mean the same, both come
//! out as `CSI m`, and a parameter above 65535 is capped there.
//!
//! - Text: any printable character (UTF-8; invalid bytes become U+FFFD). DEL is dropped.
//! - C0 controls: BEL, BS, HT, LF, VT, FF, CR, SO, SI. All others are dropped, ENQ (answerback
//!   request) among them. All C1 controls, 8-bit (`0x9b`) or UTF-8 encoded (`U+009B`), are
//!   dropped; the bytes after a lone `0x9b` are then printed as plain text.
//! - ESC sequences: DECSC/DECRC (`ESC 7`/`ESC 8`), keypad modes (`ESC =`/`ESC >`), IND, NEL,
//!   HTS, RI (`ESC D E H M`), RIS (`ESC c`), DECALN (`ESC # 8`) and character-set
//!   designations (`ESC ( ) * + -./` followed by a final byte). DECID (`ESC Z`), which asks for
//!   a report, is dropped, as is every other ESC sequence.
//! - CSI sequences without a private marker: cursor movement and positioning (`A B C D E F G
//!   H I Z a d e f \``), erase and edit (`J K L M P X @ b`), scroll (`S T`), tab clear (`g`),
//!   ANSI modes (`h l`), SGR colours and attributes (`m`, colon sub-parameters included),
//!   scroll region (`r`), save/restore cursor (`s u`), title stack push/pop only
//!   (`22 t`, `23 t`; every other XTWINOPS, which moves, resizes or reports, is dropped).
//!   With an intermediate: cursor style (`SP q`) and soft reset (`! p`).
//! - CSI with the `?` marker: selective erase (`? J`, `? K`) and DEC private modes (`? h`,
//!   `? l`) except the mouse and focus reporting modes (9, 1000 to 1006, 1015, 1016), which
//!   would leave the reviewer's terminal sending reports to their shell after playback.
//! - OSC: only window and icon titles (`OSC 0`, `1`, `2`) whose text is printable. A title
//!   cannot be read back here (title reports, `CSI 21 t`, are dropped), so setting one acts on
//!   nothing but the title bar; replays of shell sessions set it all the time.
//!   Every other OSC is dropped: the clipboard (52), colour queries and changes (4, 10 to 19,
//!   104, 110 to 119), font (50), hyperlinks (8, whose shown text can differ from the target),
//!   notifications (9, 777) and working-directory reports (7).
//! - Dropped whole: DCS (`ESC P`, DECRQSS and XTGETTCAP among them), SOS, PM and APC
//!   (`ESC X`, `ESC ^`, `ESC _`); all report requests (DA `c`, DSR `n`, DECRQM `$ p`,
//!   DECREQTPARM `x`, XTVERSION `> q`, kitty keyboard `? u`); any sequence the parser marks
//!   as overlong.
//!
//! ## Guarantees
//!
//! Streaming: [`TerminalFilter::push`] takes input in any split and gives the output of what is
//! complete; the state carries over, and the output does not depend on where the input was
//! split. An incomplete character at the very end of the stream is not printed. Total: no input panics. Memory: `vte` buffers an OSC string
//! until it ends, so one unterminated OSC holds at most what the recording holds.

use vte::{Params, Parser, Perform};

/// Filters one terminal output stream; keep one per played channel.
pub(crate) struct TerminalFilter {
    parser: Parser,
    emitter: Emitter,
    /// An incomplete UTF-8 character from the end of the last input (at most 3 bytes).
    held: Vec<u8>,
}

impl TerminalFilter {
    pub(crate) fn new() -> Self {
        Self {
            parser: Parser::new(),
            emitter: Emitter::default(),
            held: Vec::new(),
        }
    }

    /// Feeds the next bytes of the stream and returns what may be printed of them. A sequence
    /// still incomplete at the end of `input` is held until a later call completes it.
    pub(crate) fn push(&mut self, input: &[u8]) -> Vec<u8> {
        // vte 0.15 loses the characters after a UTF-8 character split across two calls
        // (alacritty/vte#159), so a character is never split: its start waits for its end.
        let joined;
        let input = if self.held.is_empty() {
            input
        } else {
            self.held.extend_from_slice(input);
            joined = std::mem::take(&mut self.held);
            &joined[..]
        };
        let ready = input.len() - incomplete_utf8_tail(input);
        self.parser.advance(&mut self.emitter, &input[..ready]);
        self.held.extend_from_slice(&input[ready..]);
        std::mem::take(&mut self.emitter.out)
    }
}

/// How many bytes at the end of `bytes` start a UTF-8 character that is not complete yet.
fn incomplete_utf8_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(4) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xc0 == 0x80 {
            continue; // A continuation byte: look further back for the lead byte.
        }
        let length = match byte {
            0xc2..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        };
        return if back < length { back } else { 0 };
    }
    0
}

/// DEC private modes that make the terminal send mouse or focus reports.
const REPORTING_MODES: [u16; 10] = [9, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1015, 1016];

/// The `vte` performer: writes allowed items to `out` in 7-bit form.
#[derive(Default)]
struct Emitter {
    out: Vec<u8>,
}

impl Emitter {
    fn write_params(&mut self, params: &[Vec<u16>]) {
        // `CSI m` and `CSI 0 m` mean the same; vte reports both as a single 0.
        if let [only] = params {
            if only.as_slice() == [0] {
                return;
            }
        }
        for (index, param) in params.iter().enumerate() {
            if index > 0 {
                self.out.push(b';');
            }
            for (sub, value) in param.iter().enumerate() {
                if sub > 0 {
                    self.out.push(b':');
                }
                self.out.extend_from_slice(value.to_string().as_bytes());
            }
        }
    }

    fn write_csi(&mut self, marker: &[u8], params: &[Vec<u16>], intermediates: &[u8], action: u8) {
        self.out.extend_from_slice(b"\x1b[");
        self.out.extend_from_slice(marker);
        self.write_params(params);
        self.out.extend_from_slice(intermediates);
        self.out.push(action);
    }
}

/// Whether a CSI sequence with this private marker, intermediates and final byte may pass;
/// DEC private modes are further filtered by [`Perform::csi_dispatch`].
fn csi_allowed(marker: &[u8], intermediates: &[u8], action: u8, first: Option<u16>) -> bool {
    match (marker, intermediates) {
        (b"", b"") => match action {
            b'A' | b'B' | b'C' | b'D' | b'E' | b'F' | b'G' | b'H' | b'I' | b'Z' | b'a' | b'd'
            | b'e' | b'f' | b'`' => true,
            b'J' | b'K' | b'L' | b'M' | b'P' | b'X' | b'@' | b'b' | b'S' | b'T' | b'g' => true,
            b'h' | b'l' | b'm' | b'r' | b's' | b'u' => true,
            b't' => matches!(first, Some(22 | 23)),
            _ => false,
        },
        (b"", b" ") => action == b'q',
        (b"", b"!") => action == b'p',
        (b"?", b"") => matches!(action, b'J' | b'K' | b'h' | b'l'),
        _ => false,
    }
}

fn title_allowed(params: &[&[u8]]) -> bool {
    let [kind, text @ ..] = params else {
        return false;
    };
    if !matches!(*kind, b"0" | b"1" | b"2") {
        return false;
    }
    // vte splits the title at `;`; every part must be printable UTF-8.
    text.iter().all(|part| {
        std::str::from_utf8(part).is_ok_and(|part| part.chars().all(|c| !c.is_control()))
    })
}

impl Perform for Emitter {
    fn print(&mut self, c: char) {
        if c.is_control() {
            // vte sends C0 and C1 to `execute`; DEL arrives here.
            return;
        }
        let mut buf = [0; 4];
        self.out
            .extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }

    fn execute(&mut self, byte: u8) {
        // BEL, BS, HT, LF, VT, FF, CR, SO, SI.
        if matches!(byte, 0x07..=0x0f) {
            self.out.push(byte);
        }
    }

    fn csi_dispatch(&mut self, params: &Params, intermediates: &[u8], ignore: bool, action: char) {
        if ignore {
            return;
        }
        let Ok(action) = u8::try_from(action) else {
            return;
        };
        let (marker, intermediates) = match intermediates.first() {
            Some(first @ b'<'..=b'?') => (std::slice::from_ref(first), &intermediates[1..]),
            _ => (&[][..], intermediates),
        };
        let mut params: Vec<Vec<u16>> = params.iter().map(<[u16]>::to_vec).collect();
        let first = params.first().and_then(|param| param.first()).copied();
        if !csi_allowed(marker, intermediates, action, first) {
            return;
        }
        if marker == b"?" && matches!(action, b'h' | b'l') {
            params.retain(|param| !param.first().is_some_and(|m| REPORTING_MODES.contains(m)));
            if params.is_empty() {
                return;
            }
        }
        self.write_csi(marker, &params, intermediates, action);
    }

    fn esc_dispatch(&mut self, intermediates: &[u8], ignore: bool, byte: u8) {
        let allowed = !ignore
            && match intermediates {
                b"" => matches!(
                    byte,
                    b'7' | b'8' | b'=' | b'>' | b'D' | b'E' | b'H' | b'M' | b'c'
                ),
                b"#" => byte == b'8',
                [b'(' | b')' | b'*' | b'+' | b'-' | b'.' | b'/'] => true,
                _ => false,
            };
        if allowed {
            self.out.push(0x1b);
            self.out.extend_from_slice(intermediates);
            self.out.push(byte);
        }
    }

    fn osc_dispatch(&mut self, params: &[&[u8]], bell_terminated: bool) {
        if !title_allowed(params) {
            return;
        }
        self.out.extend_from_slice(b"\x1b]");
        for (index, part) in params.iter().enumerate() {
            if index > 0 {
                self.out.push(b';');
            }
            self.out.extend_from_slice(part);
        }
        self.out
            .extend_from_slice(if bell_terminated { b"\x07" } else { b"\x1b\\" });
    }

    // DCS (`hook`, `put`, `unhook`) keeps the trait's empty defaults: every DCS string is
    // dropped. SOS, PM and APC never reach the performer.
}

#[cfg(test)]
mod tests;
