use super::TerminalFilter;
use proptest::prelude::*;

/// The filter's output for `input` given in one call.
fn filtered(input: &[u8]) -> Vec<u8> {
    TerminalFilter::new().push(input)
}

/// The filter's output for `input` split at every possible point into two calls; asserts that
/// every split gives the same output and returns it.
fn filtered_any_split(input: &[u8]) -> Vec<u8> {
    let whole = filtered(input);
    for at in 0..=input.len() {
        let mut filter = TerminalFilter::new();
        let mut out = filter.push(&input[..at]);
        out.extend(filter.push(&input[at..]));
        assert_eq!(out, whole, "split at {at} of {input:?}");
    }
    whole
}

/// Asserts that `hostile` vanishes without a trace between two pieces of text, whole and in
/// every split.
fn assert_dropped(hostile: &[u8]) {
    let input = [b"before ", hostile, b" after"].concat();
    assert_eq!(
        String::from_utf8_lossy(&filtered_any_split(&input)),
        "before  after",
        "{hostile:?} was not dropped"
    );
}

/// Asserts that `allowed` comes out unchanged, whole and in every split.
fn assert_kept(allowed: &[u8]) {
    assert_eq!(
        filtered_any_split(allowed),
        allowed,
        "{:?} was altered",
        String::from_utf8_lossy(allowed)
    );
}

#[test]
fn osc_52_clipboard_write_is_dropped_with_either_terminator() {
    assert_dropped(b"\x1b]52;c;ZWNobyBwd25lZA==\x07");
    assert_dropped(b"\x1b]52;c;ZWNobyBwd25lZA==\x1b\\");
    assert_dropped(b"\x1b]52;c;?\x07");
}

#[test]
fn osc_queries_and_other_osc_are_dropped() {
    for osc in [
        &b"\x1b]10;?\x07"[..],
        b"\x1b]11;?\x1b\\",
        b"\x1b]4;1;?\x07",
        b"\x1b]50;?\x07",
        b"\x1b]8;;https://evil.example/\x07",
        b"\x1b]7;file://host/tmp\x07",
        b"\x1b]777;notify;title;body\x07",
        b"\x1b]11;#000000\x07",
    ] {
        assert_dropped(osc);
    }
}

#[test]
fn dcs_strings_are_dropped() {
    // DECRQSS (request SGR), XTGETTCAP, and a sixel-like payload.
    assert_dropped(b"\x1bP$qm\x1b\\");
    assert_dropped(b"\x1bP+q544e\x1b\\");
    assert_dropped(b"\x1bPq#0;2;0;0;0#0~~\x1b\\");
}

#[test]
fn sos_pm_and_apc_strings_are_dropped() {
    assert_dropped(b"\x1b_Gf=100;payload\x1b\\");
    assert_dropped(b"\x1b^private\x1b\\");
    assert_dropped(b"\x1bXstring\x1b\\");
}

#[test]
fn report_requests_are_dropped() {
    for request in [
        &b"\x1b[c"[..],  // DA1
        b"\x1b[0c",      // DA1
        b"\x1b[>c",      // DA2
        b"\x1b[=c",      // DA3
        b"\x1b[6n",      // DSR cursor position
        b"\x1b[5n",      // DSR status
        b"\x1b[?6n",     // DECXCPR
        b"\x1b[?2004$p", // DECRQM private
        b"\x1b[4$p",     // DECRQM ANSI
        b"\x1b[14t",     // window size in pixels
        b"\x1b[18t",     // text area size
        b"\x1b[21t",     // title report
        b"\x1b[20t",     // icon label report
        b"\x1b[1x",      // DECREQTPARM
        b"\x1b[>0q",     // XTVERSION
        b"\x1b[?u",      // kitty keyboard flags
        b"\x1bZ",        // DECID
        b"\x05",         // ENQ answerback
    ] {
        assert_dropped(request);
    }
}

#[test]
fn window_manipulation_is_dropped_but_title_stack_kept() {
    assert_dropped(b"\x1b[8;1;1t"); // resize
    assert_dropped(b"\x1b[3;0;0t"); // move
    assert_dropped(b"\x1b[2t"); // iconify
    assert_kept(b"\x1b[22;0t\x1b[23;0t");
}

#[test]
fn mouse_and_focus_reporting_modes_are_dropped() {
    assert_dropped(b"\x1b[?1000h");
    assert_dropped(b"\x1b[?1004h");
    assert_dropped(b"\x1b[?1002;1006h");
    // Mixed with an allowed mode, only the allowed one remains.
    assert_eq!(filtered_any_split(b"\x1b[?1049;1000h"), b"\x1b[?1049h");
}

#[test]
fn text_and_utf8_pass_unchanged() {
    assert_kept("ls -l\r\ntotal 0\r\n héllo wörld ✓ 日本語 🦀\tend\x07\x08".as_bytes());
}

#[test]
fn sgr_colours_pass_unchanged() {
    assert_kept(
        b"\x1b[1;31mred\x1b[m \x1b[38;5;208mx\x1b[m \x1b[38;2;1;2;3mrgb\x1b[4:3mcurly\x1b[m",
    );
}

#[test]
fn cursor_movement_erase_and_screen_modes_pass_unchanged() {
    assert_kept(
        b"\x1b[H\x1b[2J\x1b[10;20H\x1b[3A\x1b[B\x1b[5C\x1b[D\x1b[K\x1b[1K\x1b[?25l\x1b[?25h\
          \x1b[?1049h\x1b[1;24r\x1b[?1049l\x1b7\x1b8\x1b(B\x1b(0\x1b)0\x1bM\x1b[4h\x1b[2 q\
          \x1b[!p\x1b[?2004h\x1b[5@\x1b[2P\x1b[3X\x1b[S\x1b[T\x1b[12d\x1b[7G\x1b=\x1b>",
    );
}

#[test]
fn window_title_passes_when_printable() {
    assert_kept(b"\x1b]0;user@host: ~\x07");
    assert_kept(b"\x1b]2;vim a;b.txt\x1b\\");
    // A title carrying a C1 control (U+009B) is dropped.
    assert_dropped("\x1b]2;x\u{9b}6n\x07".as_bytes());
}

#[test]
fn sequence_split_across_calls_is_still_dropped() {
    let mut filter = TerminalFilter::new();
    let mut out = filter.push(b"a\x1b]5");
    out.extend(filter.push(b"2;c;aGk="));
    out.extend(filter.push(b"\x1b"));
    out.extend(filter.push(b"\\b\x1b["));
    out.extend(filter.push(b"6"));
    out.extend(filter.push(b"nc\x1bP$"));
    out.extend(filter.push(b"qm\x1b\\d"));
    assert_eq!(out, b"abcd");
}

#[test]
fn reset_with_explicit_zero_comes_out_as_its_short_form() {
    assert_eq!(
        filtered_any_split(b"\x1b[0mx\x1b[0;1m"),
        b"\x1b[mx\x1b[0;1m"
    );
}

#[test]
fn text_after_a_split_character_is_kept() {
    // vte 0.15 alone prints "B\u{301}\u{2500}" when split inside U+0301 (alacritty/vte#159).
    assert_kept("B\u{301}C\u{2500}".as_bytes());
    assert_eq!(
        filtered_any_split(b"\xc3\xa9\\\xc2\x9b\\x\xffy"),
        "\u{e9}\\\\x\u{fffd}y".as_bytes()
    );
}

#[test]
fn split_utf8_character_is_reassembled() {
    let mut filter = TerminalFilter::new();
    let crab = "🦀".as_bytes();
    let mut out = filter.push(&crab[..1]);
    out.extend(filter.push(&crab[1..3]));
    out.extend(filter.push(&crab[3..]));
    assert_eq!(out, crab);
}

#[test]
fn c1_csi_is_never_passed_on() {
    // An 8-bit CSI, raw and UTF-8 encoded: the control is dropped, the rest is plain text.
    assert_eq!(filtered_any_split(b"a\x9b6nb"), b"a6nb");
    assert_eq!(filtered_any_split("a\u{9b}6nb".as_bytes()), b"a6nb");
    // 8-bit OSC, DCS and APC likewise.
    assert_eq!(filtered_any_split(b"\x9d52;c;aGk=\x07"), b"52;c;aGk=\x07");
    assert_eq!(filtered_any_split(b"\x90$qm\x9c"), b"$qm");
    assert_eq!(filtered_any_split(b"\x9fx\x9c"), b"x");
}

#[test]
fn invalid_utf8_becomes_replacement_character() {
    assert_eq!(filtered_any_split(b"a\xffb"), "a\u{fffd}b".as_bytes());
}

/// Whether `out` holds a sequence the filter must never emit: a DCS, SOS, PM or APC
/// introducer, an 8-bit C1 control, or an OSC other than a title.
fn holds_forbidden(out: &[u8]) -> bool {
    let text = String::from_utf8_lossy(out);
    out.windows(2)
        .any(|pair| matches!(pair, [0x1b, b'P' | b'X' | b'^' | b'_']))
        || out
            .windows(3)
            .any(|w| w[0] == 0x1b && w[1] == b']' && !matches!(w[2], b'0'..=b'2'))
        || out.windows(4).any(|w| w == b"\x1b]52")
        || text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c))
        || out
            .iter()
            .any(|&b| matches!(b, 0x00..=0x06 | 0x10..=0x1a | 0x1c..=0x1f))
}

/// Bytes likely to build escape sequences, so that random input reaches the parser's states.
fn terminal_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(b"\x1b\x07\x9b\x9d\x90\x9c\\[]P_^X;?:$>c0125n6tq".to_vec()),
        1 => any::<u8>(),
    ]
}

proptest! {
    #[test]
    fn output_never_holds_forbidden_sequences(
        input in prop::collection::vec(terminal_byte(), 0..200),
        at in any::<prop::sample::Index>(),
    ) {
        let at = at.index(input.len() + 1);
        let mut filter = TerminalFilter::new();
        let mut out = filter.push(&input[..at]);
        out.extend(filter.push(&input[at..]));
        prop_assert!(!holds_forbidden(&out), "input {:?} gave {:?}", input, out);
        prop_assert_eq!(&out, &filtered(&input));
        // What comes out is already clean: filtering it again changes nothing.
        prop_assert_eq!(filtered(&out), out);
    }
}
