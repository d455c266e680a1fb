//! Printing names safely: every file name, key or path coltecd prints
//! (text log, `status`, `sync`/`restore` reports and plans) goes through
//! [`name`], so a hostile name cannot start a line of its own (`\n`, `\r`),
//! move the cursor or recolour a terminal (ESC and other C0/C1 controls),
//! or reorder what is shown (bidirectional overrides, line separators).
//!
//! Only those characters change, written as Rust escapes (`\n`, `\u{1b}`);
//! every other name prints as it is. [`LineSafe`] applies the same rule to
//! whole log lines, keeping each tracing event on one line whatever its
//! fields hold.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};

/// Whether `c` is escaped when printed: control characters, line and
/// paragraph separators, and bidirectional formatting characters.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every [`is_unsafe`] character escaped (`\n`, `\t`, `\u{1b}`);
/// borrowed when nothing needs escaping.
pub fn name(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) {
            let _ = write!(out, "{}", c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A writer that keeps each write on one line: every [`is_unsafe`]
/// character is escaped except one trailing `\n` (the end of the line), and
/// ESC when `keep_esc` (a terminal that shows the formatter's colours).
/// Each tracing event is one write, so one event stays one line.
pub struct LineSafe<W> {
    inner: W,
    keep_esc: bool,
}

impl<W> LineSafe<W> {
    pub fn new(inner: W, keep_esc: bool) -> LineSafe<W> {
        LineSafe { inner, keep_esc }
    }
}

impl<W: Write> Write for LineSafe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let (body, end) = match buf.split_last() {
            Some((b'\n', body)) => (body, &b"\n"[..]),
            _ => (buf, &b""[..]),
        };
        let text = String::from_utf8_lossy(body);
        let clean = text
            .chars()
            .all(|c| !is_unsafe(c) || (self.keep_esc && c == '\x1b'));
        if clean {
            self.inner.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut out = String::with_capacity(buf.len() + 16);
        for c in text.chars() {
            if is_unsafe(c) && !(self.keep_esc && c == '\x1b') {
                let _ = write!(out, "{}", c.escape_debug());
            } else {
                out.push(c);
            }
        }
        out.push_str(&String::from_utf8_lossy(end));
        self.inner.write_all(out.as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_controls_and_bidi_are_escaped() {
        assert!(matches!(name("notes.txt"), Cow::Borrowed("notes.txt")));
        assert_eq!(name(" spaced é ✓ "), " spaced é ✓ ");
        assert_eq!(name("a\nexport INJECTED=1"), "a\\nexport INJECTED=1");
        assert_eq!(name("x\r\t\u{1b}[2J"), "x\\r\\t\\u{1b}[2J");
        assert_eq!(name("evil\u{202E}txt.exe"), "evil\\u{202e}txt.exe");
        assert!(!name("a\u{2028}b").contains('\u{2028}'));
    }

    #[test]
    fn a_log_line_stays_one_line() {
        let mut out = Vec::new();
        let mut w = LineSafe::new(&mut out, false);
        w.write_all(b"INFO uploaded path=a\nexport INJECTED=1\n")
            .unwrap();
        w.write_all(b"plain line\n").unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "INFO uploaded path=a\\nexport INJECTED=1\nplain line\n"
        );
        let mut out = Vec::new();
        LineSafe::new(&mut out, true)
            .write_all(b"\x1b[32mINFO\x1b[0m a\rb\n")
            .unwrap();
        assert_eq!(out, b"\x1b[32mINFO\x1b[0m a\\rb\n");
    }
}
