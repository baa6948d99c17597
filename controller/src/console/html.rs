//! HTML escaped by construction: a page is built only from the module's own literal markup
//! (`&'static str`, never a runtime string) and text that [`Html::text`] escapes. No HTML
//! crate is needed for a handful of server-rendered pages.

/// An HTML document being built.
#[derive(Debug, Default)]
pub(crate) struct Html(String);

impl Html {
    pub(crate) fn new() -> Html {
        Html(String::with_capacity(4096))
    }

    /// Appends markup written in this crate's source. A `&'static str` cannot carry what a
    /// request or the store holds.
    pub(crate) fn raw(&mut self, markup: &'static str) -> &mut Html {
        self.0.push_str(markup);
        self
    }

    /// Appends `text` escaped for element content and quoted attribute values.
    pub(crate) fn text(&mut self, text: &str) -> &mut Html {
        escape_into(text, &mut self.0);
        self
    }

    /// Appends a number (nothing to escape).
    pub(crate) fn number(&mut self, n: u64) -> &mut Html {
        self.0.push_str(&n.to_string());
        self
    }

    pub(crate) fn into_string(self) -> String {
        self.0
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'`.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Html;

    #[test]
    fn text_is_escaped_and_markup_is_not() {
        let mut html = Html::new();
        html.raw("<p title=\"")
            .text("a\"b'c")
            .raw("\">")
            .text("<script>alert(1)</script> & co")
            .raw("</p>");
        assert_eq!(
            html.into_string(),
            "<p title=\"a&quot;b&#39;c\">&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</p>"
        );
    }
}
