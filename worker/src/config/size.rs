//! Sizes in the config: a number of bytes, or a string with a binary or decimal unit
//! (`"512 MiB"`, `"2GiB"`, `"100 kB"`, `"4096"`).

use serde::Deserialize;

/// A size as written in the TOML file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(super) enum SizeValue {
    Bytes(u64),
    Text(String),
}

/// Why a size does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a size: write a number of bytes, or a number and a unit (B, KiB, MiB, GiB, TiB, kB, MB, GB, TB), e.g. \"512 MiB\"")]
pub(super) struct BadSize(pub(super) String);

impl SizeValue {
    /// The size in bytes.
    pub(super) fn bytes(&self) -> Result<u64, BadSize> {
        let text = match self {
            SizeValue::Bytes(n) => return Ok(*n),
            SizeValue::Text(text) => text,
        };
        let bad = || BadSize(text.clone());
        let trimmed = text.trim();
        let split = trimmed
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let multiplier: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "kB" | "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return Err(bad()),
        };
        number.checked_mul(multiplier).ok_or_else(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_bytes_and_units() {
        let text = |s: &str| SizeValue::Text(s.to_owned()).bytes();
        assert_eq!(SizeValue::Bytes(4096).bytes(), Ok(4096));
        assert_eq!(text("4096"), Ok(4096));
        assert_eq!(text("512 MiB"), Ok(512 << 20));
        assert_eq!(text("2GiB"), Ok(2 << 30));
        assert_eq!(text("100 kB"), Ok(100_000));
        for bad in ["", "MiB", "1.5 GiB", "12 parsecs", "-1", "99999999999 TiB"] {
            assert!(text(bad).is_err(), "{bad}");
        }
    }
}
