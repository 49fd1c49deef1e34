//! Text a traced process chose (its comm, argv, paths, cgroup names, the
//! values it wrote to sysctls, and every reason or timeline step that quotes
//! them), made safe for a terminal. A crashing process can name itself
//! `"\x1b[2J\n━━ crash #1: ... verdict stored"`; printed raw, that clears the
//! screen or forges a line of our output. Every such field goes through
//! [`Escaped`] (or [`Quoted`]) in the render layer, so the sinks and
//! `report` never see a raw control character from a process. The JSON forms
//! need nothing: serde_json writes every control character as `\uXXXX`.

use std::fmt::{self, Display, Formatter, Write as _};

/// `s` with every control character, and every character that reorders or
/// hides text, written as a C-style escape: `\n`, `\t`, `\r`, `\x1b`,
/// `\u{202e}`. Printable text, other scripts and emoji are left as they are.
/// Invalid UTF-8 has already become U+FFFD where the bytes were decoded.
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a str);

/// Like [`Escaped`], in double quotes with `"` and `\` escaped too: the form
/// for values whose exact text matters (core_pattern, sysctl values), as
/// `{:?}` printed them before, and with the same escapes as [`Escaped`].
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(pub &'a str);

impl Display for Escaped<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write_escaped(f, self.0, false)
    }
}

impl Display for Quoted<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        write_escaped(f, self.0, true)?;
        f.write_char('"')
    }
}

/// Anything displayable (a `Proc`, whose comm is the process's), escaped.
pub fn esc(value: impl Display) -> String {
    let text = value.to_string();
    if !text.chars().any(needs_escape) {
        return text;
    }
    Escaped(&text).to_string()
}

/// Each line of `text` escaped, the line breaks kept: for multi-line text
/// built from untrusted fields with no styling of its own (a stack trace,
/// whose symbol and module names come from the crashed process's files).
pub fn escape_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let _ = write!(out, "{}{newline}", Escaped(body));
    }
    out
}

/// Whether `c` must not reach a terminal as it is.
fn needs_escape(c: char) -> bool {
    // is_control: C0 (ESC, newline, ...), DEL and C1 (0x9b is CSI to
    // many terminals). The others are Unicode's bidirectional controls:
    // embeddings and overrides (U+202A..U+202E), isolates (U+2066..U+2069)
    // and marks (U+200E, U+200F, U+061C), which make a terminal show text
    // in another order than it was written ("Trojan Source").
    c.is_control()
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

fn write_escaped(f: &mut impl fmt::Write, s: &str, quoted: bool) -> fmt::Result {
    // Runs of text that need nothing are written whole: character by
    // character, this was a hot spot of `report` (millions of lines).
    let mut clean = 0;
    for (i, c) in s.char_indices() {
        let special = match c {
            '"' | '\\' => quoted,
            ' '..='~' => false,
            c => needs_escape(c),
        };
        if !special {
            continue;
        }
        f.write_str(&s[clean..i])?;
        clean = i + c.len_utf8();
        match c {
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            '"' | '\\' if quoted => {
                f.write_char('\\')?;
                f.write_char(c)?;
            }
            c if needs_escape(c) && (c as u32) < 0x80 => write!(f, "\\x{:02x}", c as u32)?,
            c if needs_escape(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
            c => f.write_char(c)?,
        }
    }
    f.write_str(&s[clean..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_c_escapes() {
        assert_eq!(Escaped("\x1b[31mred\x1b[0m").to_string(), "\\x1b[31mred\\x1b[0m");
        assert_eq!(Escaped("a\nb\tc\rd\0e\x7f").to_string(), "a\\nb\\tc\\rd\\x00e\\x7f");
        // C1: 0x9b is a one-byte CSI to terminals that honour 8-bit controls.
        assert_eq!(Escaped("x\u{9b}31m").to_string(), "x\\u{9b}31m");
    }

    #[test]
    fn bidirectional_controls_are_escaped() {
        assert_eq!(Escaped("evil\u{202e}txt.exe").to_string(), "evil\\u{202e}txt.exe");
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200f}'] {
            let out = Escaped(&c.to_string()).to_string();
            assert_eq!(out, format!("\\u{{{:x}}}", c as u32));
        }
    }

    #[test]
    fn ordinary_text_is_unchanged() {
        for s in ["bash", "/usr/lib/systemd/systemd-coredump", "système.slice/getty@tty1.service", "crash-日本語 🦀", "", "\\x2d"] {
            assert_eq!(Escaped(s).to_string(), s);
            assert_eq!(esc(s), s);
        }
        // U+FFFD, what invalid UTF-8 became, is printable.
        assert_eq!(Escaped("a\u{fffd}b").to_string(), "a\u{fffd}b");
    }

    #[test]
    fn quoted_escapes_quotes_and_backslashes_as_debug_did() {
        assert_eq!(Quoted("|/usr/bin/x %P \"q\" \\").to_string(), "\"|/usr/bin/x %P \\\"q\\\" \\\\\"");
        assert_eq!(Quoted("core\n\x1b").to_string(), "\"core\\n\\x1b\"");
        // The same as {:?} for text without bidi controls.
        let s = "|/usr/lib/systemd/systemd-coredump %P %u %g %s %t %c %h";
        assert_eq!(Quoted(s).to_string(), format!("{s:?}"));
    }

    #[test]
    fn escape_lines_keeps_line_breaks_and_escapes_within_lines() {
        assert_eq!(escape_lines("a\x1bb\nc\td\n"), "a\\x1bb\nc\\td\n");
        assert_eq!(escape_lines("no newline"), "no newline");
    }
}
