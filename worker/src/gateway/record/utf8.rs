//! Terminal bytes as text: what a pty sends is not always UTF-8, and a read can end inside
//! a character. [`Utf8Carry`] decodes one stream read by read, carrying an incomplete
//! trailing sequence into the next read and replacing invalid bytes with U+FFFD; it never
//! fails and never panics.

/// Decodes one byte stream into text, read by read.
#[derive(Debug, Default)]
pub(in crate::gateway) struct Utf8Carry {
    /// The start of a character the last read cut (at most 3 bytes).
    carry: Vec<u8>,
}

impl Utf8Carry {
    /// The text of `bytes` after what was carried; an incomplete character at the end is
    /// kept for the next read.
    pub(in crate::gateway) fn decode(&mut self, bytes: &[u8]) -> String {
        let mut input = std::mem::take(&mut self.carry);
        input.extend_from_slice(bytes);
        let mut out = String::with_capacity(input.len());
        let mut rest = input.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    out.push_str(text);
                    return out;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // Valid by construction: borrowed, never replaced.
                    out.push_str(&String::from_utf8_lossy(valid));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = after.get(bad..).unwrap_or_default();
                        }
                        None => {
                            self.carry = after.to_vec();
                            return out;
                        }
                    }
                }
            }
        }
    }

    /// The stream ended: what was carried, replaced (it can never complete).
    pub(in crate::gateway) fn finish(&mut self) -> String {
        let carry = std::mem::take(&mut self.carry);
        String::from_utf8_lossy(&carry).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_between_reads_is_carried_and_invalid_bytes_are_replaced() {
        let text = "é€😀 ok";
        let bytes = text.as_bytes();
        // Every cut of the stream in two reads gives back the same text.
        for cut in 0..=bytes.len() {
            let mut d = Utf8Carry::default();
            let mut out = d.decode(&bytes[..cut]);
            out.push_str(&d.decode(&bytes[cut..]));
            out.push_str(&d.finish());
            assert_eq!(out, text, "cut at {cut}");
        }
        // One byte a read.
        let mut d = Utf8Carry::default();
        let out: String = bytes.iter().map(|b| d.decode(&[*b])).collect();
        assert_eq!(out, text);

        let mut d = Utf8Carry::default();
        assert_eq!(d.decode(b"a\xffb\xc3"), "a\u{fffd}b");
        assert_eq!(
            d.decode(b"("),
            "\u{fffd}(",
            "a cut start that does not go on"
        );
        assert_eq!(d.decode(b"\xe2\x82"), "");
        assert_eq!(
            d.finish(),
            "\u{fffd}",
            "a stream that ends inside a character"
        );
        assert_eq!(
            d.decode(b"\xed\xa0\x80"),
            "\u{fffd}\u{fffd}\u{fffd}",
            "a surrogate"
        );
    }
}
