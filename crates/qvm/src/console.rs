//! Guest console bytes assembled into lines: `GUEST [<vm>] <text>`, printable ASCII only
//! (anything else escaped as `\xNN`, a carriage return too: nothing the guest sends is dropped
//! unseen), at most [`LINE_MAX`] characters of text per line.

/// Characters of guest text per console line; a longer line is cut and continued.
pub const LINE_MAX: usize = 160;

/// One VM's partial console line.
#[derive(Debug, Default)]
pub struct LineBuffer {
    text: heapless::String<LINE_MAX>,
}

impl LineBuffer {
    /// An empty line.
    pub const fn new() -> Self {
        Self {
            text: heapless::String::new(),
        }
    }

    /// Adds a byte; calls `emit` with every line it completes (a newline, or a full line).
    pub fn push(&mut self, byte: u8, mut emit: impl FnMut(&str)) {
        match byte {
            b'\n' => {
                emit(&self.text);
                self.text.clear();
            }
            0x20..=0x7e => {
                if self.text.push(char::from(byte)).is_err() {
                    emit(&self.text);
                    self.text.clear();
                    let _ = self.text.push(char::from(byte));
                }
            }
            _ => {
                let hex = |n: u8| char::from_digit(u32::from(n), 16).unwrap_or('?');
                let esc = ['\\', 'x', hex(byte >> 4), hex(byte & 0xf)];
                if self.text.len() + esc.len() > LINE_MAX {
                    emit(&self.text);
                    self.text.clear();
                }
                for c in esc {
                    let _ = self.text.push(c);
                }
            }
        }
    }

    /// Emits what is left (when the guest stops mid-line).
    pub fn flush(&mut self, mut emit: impl FnMut(&str)) {
        if !self.text.is_empty() {
            emit(&self.text);
            self.text.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        let mut b = LineBuffer::new();
        for &c in bytes {
            b.push(c, |l| out.push(l.to_string()));
        }
        b.flush(|l| out.push(l.to_string()));
        out
    }

    #[test]
    fn a_carriage_return_is_shown_escaped_not_dropped() {
        // A guest that overwrites a line with `\r` cannot hide what it wrote first.
        assert_eq!(lines(b"hello\r\n"), ["hello\\x0d"]);
        assert_eq!(lines(b"secret\rpublic\n"), ["secret\\x0dpublic"]);
        // Control: the other control bytes were already escaped the same way.
        assert_eq!(lines(b"a\x0bb\n"), ["a\\x0bb"]);
    }

    #[test]
    fn lines_are_split_escaped_and_capped() {
        assert_eq!(lines(b"hello\nworld"), ["hello", "world"]);
        assert_eq!(lines(b"a\x1b[0m\xff\n"), ["a\\x1b[0m\\xff"]);
        let long = [b'x'; LINE_MAX + 5];
        let got = lines(&long);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), LINE_MAX);
        assert_eq!(got[1].len(), 5);
        // Escapes never split and never exceed the cap.
        let mut mixed = vec![b'y'; LINE_MAX - 2];
        mixed.push(0);
        let got = lines(&mixed);
        assert_eq!(
            got,
            [
                String::from_utf8(vec![b'y'; LINE_MAX - 2]).unwrap(),
                "\\x00".into()
            ]
        );
    }
}
