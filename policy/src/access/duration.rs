//! Durations as the policy file writes them: `90s`, `30m`, `4h`, `1d`, or sums like `1h30m`.

/// Parses a duration into seconds; `None` for anything else (no bare numbers, no spaces).
pub(crate) fn parse_secs(text: &str) -> Option<u64> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for ch in text.chars() {
        if ch.is_ascii_digit() {
            digits.push(ch);
            continue;
        }
        let unit: u64 = match ch {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return None,
        };
        let n: u64 = digits.parse().ok()?;
        total = total.checked_add(n.checked_mul(unit)?)?;
        digits.clear();
        any = true;
    }
    (any && digits.is_empty()).then_some(total)
}

/// Seconds written back the way the file would: `4h`, `1h30m`, `90s` becomes `1m30s`.
pub(crate) fn render_secs(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, name) in [(86_400, 'd'), (3600, 'h'), (60, 'm'), (1, 's')] {
        if rest >= unit {
            out.push_str(&format!("{}{name}", rest / unit));
            rest %= unit;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums_and_refuses_the_rest() {
        assert_eq!(parse_secs("90s"), Some(90));
        assert_eq!(parse_secs("30m"), Some(1800));
        assert_eq!(parse_secs("4h"), Some(14_400));
        assert_eq!(parse_secs("1d"), Some(86_400));
        assert_eq!(parse_secs("1h30m"), Some(5400));
        assert_eq!(parse_secs("0s"), Some(0));
        for bad in [
            "",
            "4",
            "h",
            "4 h",
            "4x",
            "-1h",
            "1h30",
            "99999999999999999999d",
        ] {
            assert_eq!(parse_secs(bad), None, "{bad}");
        }
        assert_eq!(render_secs(5400), "1h30m");
        assert_eq!(render_secs(90), "1m30s");
        assert_eq!(render_secs(14_400), "4h");
    }
}
