//! A CA certificate's SHA-256 fingerprint: shown as `SHA256:BASE64` (as ssh shows keys) and
//! as colon-separated hex (as `openssl x509 -noout -fingerprint -sha256` shows it), read back
//! from either, and compared in constant time.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;

/// The SHA-256 of a certificate's DER encoding.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fingerprint([u8; 32]);

impl Fingerprint {
    pub(crate) fn of_der(der: &[u8]) -> Fingerprint {
        Fingerprint(portcullis_crypto::digest::sha256(der))
    }

    /// `AB:CD:…`, as openssl prints it.
    pub(crate) fn hex_colons(&self) -> String {
        self.0
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Whether both are the same fingerprint, in time independent of where they differ.
    pub(crate) fn matches(&self, other: &Fingerprint) -> bool {
        use subtle::ConstantTimeEq as _;
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b64 = base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.0);
        write!(f, "SHA256:{b64}")
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Fingerprint {
    type Err = String;

    /// `SHA256:BASE64` (padding optional), or 64 hex digits with or without colons (an
    /// optional `sha256:` or openssl's `sha256 Fingerprint=` before them).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        const WHAT: &str = "a CA fingerprint is SHA256:BASE64 or 64 hex digits \
                            (colons allowed), e.g. from `openssl x509 -noout -fingerprint -sha256`";
        let text = text.trim();
        let lower = text.to_ascii_lowercase();
        let rest = ["sha256 fingerprint=", "sha256:", "sha256="]
            .iter()
            .find_map(|p| lower.starts_with(p).then(|| &text[p.len()..]))
            .unwrap_or(text);
        let hex_digits: String = rest.chars().filter(|c| *c != ':').collect();
        let bytes = if hex_digits.len() == 64 && hex_digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            hex::decode(&hex_digits).map_err(|_| WHAT.to_owned())?
        } else if rest.len() != text.len() {
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(rest.trim_end_matches('='))
                .map_err(|_| WHAT.to_owned())?
        } else {
            return Err(WHAT.to_owned());
        };
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| WHAT.to_owned())?;
        Ok(Fingerprint(bytes))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_reads_back_to_the_same_fingerprint() {
        let fp = Fingerprint::of_der(b"a certificate");
        let shown = fp.to_string();
        assert!(
            shown.starts_with("SHA256:") && shown.len() == 7 + 43,
            "{shown}"
        );
        let colons = fp.hex_colons();
        let plain = colons.replace(':', "").to_ascii_lowercase();
        for spelling in [
            shown.clone(),
            format!("{shown}="),
            colons.clone(),
            plain.clone(),
            format!("sha256:{plain}"),
            format!("sha256 Fingerprint={colons}"),
            format!("  {colons}\n"),
        ] {
            let read: Fingerprint = spelling.parse().unwrap();
            assert!(read.matches(&fp), "{spelling}");
        }
    }

    #[test]
    fn wrong_lengths_and_words_are_refused() {
        let fp = Fingerprint::of_der(b"x");
        let short = &fp.hex_colons()[3..];
        for bad in [
            "",
            "yes",
            short,
            "SHA256:abc",
            "SHA256:!!!",
            &"g".repeat(64),
        ] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
        assert!(!Fingerprint::of_der(b"y").matches(&fp));
    }
}
