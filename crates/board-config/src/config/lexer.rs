//! Lines and whitespace-separated tokens, with their columns. `#` starts a comment that runs
//! to the end of the line.

/// Where something is in the file.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column in characters, from 1.
    pub column: u32,
}

/// A token and where it starts.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Token<'a> {
    /// Its text.
    pub text: &'a str,
    /// Its first character.
    pub pos: Pos,
}

impl<'a> Token<'a> {
    /// The position `bytes` bytes into the token (for a part such as the `0x7` of `0x0-0x7`).
    pub fn pos_at(&self, bytes: usize) -> Pos {
        let chars = self.text.get(..bytes).map_or(0, |s| s.chars().count());
        Pos {
            line: self.pos.line,
            column: self.pos.column + chars as u32,
        }
    }
}

/// The tokens of one line.
pub struct Line<'a> {
    number: u32,
    /// The line without its comment.
    content: &'a str,
    /// Byte offset of the next unread character of `content`.
    at: usize,
    /// Byte offset where this line's tokens end (the whole content, or a part such as the
    /// inside of a section header's brackets).
    limit: usize,
}

impl<'a> Line<'a> {
    /// Line `number` (from 1) with text `text` (no line terminator).
    pub fn new(number: u32, text: &'a str) -> Self {
        let text = text.strip_suffix('\r').unwrap_or(text);
        let content = text.split('#').next().unwrap_or("");
        Self {
            number,
            content,
            at: 0,
            limit: content.len(),
        }
    }

    /// The line without its comment.
    pub fn content(&self) -> &'a str {
        self.content
    }

    /// The tokens of bytes `start..end` of the content, with the same line and columns.
    pub fn part(&self, start: usize, end: usize) -> Self {
        Self {
            number: self.number,
            content: self.content,
            at: start.min(self.content.len()),
            limit: end.min(self.content.len()),
        }
    }

    /// The position just after the last token (for "found end of line").
    pub fn end(&self) -> Pos {
        let trimmed = self.content[..self.limit].trim_end();
        self.pos_of(trimmed.len())
    }

    /// The position of byte `byte` of the content.
    pub fn pos_of(&self, byte: usize) -> Pos {
        let chars = self.content.get(..byte).map_or(0, |s| s.chars().count());
        Pos {
            line: self.number,
            column: chars as u32 + 1,
        }
    }

    /// Whether the line has no tokens at all.
    pub fn is_blank(&self) -> bool {
        self.content.trim().is_empty()
    }

    /// The next token.
    pub fn next_token(&mut self) -> Option<Token<'a>> {
        let rest = &self.content[self.at..self.limit];
        let start = self.at + (rest.len() - rest.trim_start().len());
        let after = &self.content[start..self.limit];
        if after.is_empty() {
            self.at = self.limit;
            return None;
        }
        let len = after.find(char::is_whitespace).unwrap_or(after.len());
        self.at = start + len;
        Some(Token {
            text: &after[..len],
            pos: self.pos_of(start),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_their_columns_and_comments_are_dropped() {
        let mut l = Line::new(3, "  sid   0x8  # the edu\r");
        let t = l.next_token().unwrap();
        assert_eq!((t.text, t.pos.line, t.pos.column), ("sid", 3, 3));
        let t = l.next_token().unwrap();
        assert_eq!((t.text, t.pos.column), ("0x8", 9));
        assert_eq!(l.next_token(), None);
        assert_eq!(l.end().column, 12);
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        let mut l = Line::new(1, "é x");
        l.next_token();
        assert_eq!(l.next_token().unwrap().pos.column, 3);
    }

    #[test]
    fn blank_and_comment_lines() {
        assert!(Line::new(1, "   # only a comment").is_blank());
        assert!(Line::new(1, "").is_blank());
        assert!(!Line::new(1, "mode merge").is_blank());
    }

    #[test]
    fn a_part_keeps_the_columns_of_the_line() {
        let l = Line::new(1, "[smmu smmu0]");
        let mut inner = l.part(1, 11);
        assert_eq!(inner.next_token().unwrap().text, "smmu");
        let name = inner.next_token().unwrap();
        assert_eq!((name.text, name.pos.column), ("smmu0", 7));
        assert_eq!(inner.next_token(), None);
    }

    #[test]
    fn part_positions_inside_a_token() {
        let mut l = Line::new(1, "reserve-sid 0x0-0x7");
        l.next_token();
        let t = l.next_token().unwrap();
        assert_eq!(t.pos_at(4).column, 17);
    }
}
