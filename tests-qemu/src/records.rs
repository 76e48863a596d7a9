//! Parsing the daemon's console records.
//!
//! A record is a line `KIND key=value key="value with spaces" ...`, where KIND is an upper-case
//! word; a `[LEVEL] ` log prefix before it is skipped. Words without `=` (human remarks such as
//! `(not behind the SMMU)`) are ignored.

/// One structured console line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The upper-case word the line starts with.
    pub kind: String,
    /// `key=value` pairs in order (quotes removed, escapes resolved).
    pub fields: Vec<(String, String)>,
    /// The line as printed.
    pub line: String,
}

impl Record {
    /// The value of `key` (the first, if repeated).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Every record in `text`.
pub fn parse_records(text: &str) -> Vec<Record> {
    text.lines().filter_map(parse_line).collect()
}

fn is_kind(word: &str) -> bool {
    word.len() >= 2
        && word
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && word.starts_with(|c: char| c.is_ascii_uppercase())
}

/// One record, or `None` for a line that is not one.
pub fn parse_line(line: &str) -> Option<Record> {
    let mut rest = line.trim();
    if rest.starts_with('[') {
        rest = rest.split_once("] ")?.1.trim_start();
    }
    let (kind, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
    if !is_kind(kind) {
        return None;
    }
    let mut fields = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            break;
        }
        let word_end = rest.find([' ', '=']).unwrap_or(rest.len());
        if rest[word_end..].starts_with('=') {
            let key = &rest[..word_end];
            let (value, after) = value(&rest[word_end + 1..]);
            fields.push((key.to_string(), value));
            rest = after;
        } else {
            // A word without `=`: skip it (a quoted remark is skipped as a whole).
            rest = if rest.starts_with('"') {
                value(rest).1
            } else {
                &rest[word_end..]
            };
        }
    }
    Some(Record {
        kind: kind.to_string(),
        fields,
        line: line.to_string(),
    })
}

/// A value at the start of `text` (quoted or up to the next space) and what follows it.
fn value(text: &str) -> (String, &str) {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find(' ').unwrap_or(text.len());
        return (text[..end].to_string(), &text[end..]);
    };
    let mut out = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, next)) = chars.next() {
                    out.push(next);
                }
            }
            '"' => return (out, &quoted[i + 1..]),
            _ => out.push(c),
        }
    }
    (out, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines() {
        let r = parse_line("RESULT scenario=boot status=pass st=linear").unwrap();
        assert_eq!(r.kind, "RESULT");
        assert_eq!(r.get("scenario"), Some("boot"));
        assert_eq!(r.get("status"), Some("pass"));
        assert_eq!(r.get("st"), Some("linear"));
        assert_eq!(r.get("nope"), None);
    }

    #[test]
    fn quoted_values_and_remarks() {
        let r =
            parse_line(r#"FATAL reason=bootargs detail="bootargs st=\"3level\": expected linear""#)
                .unwrap();
        assert_eq!(
            r.get("detail"),
            Some(r#"bootargs st="3level": expected linear"#)
        );
        let pci =
            parse_line("PCI bdf=00:02.0 vendor=0x1234 sid=none (not behind the SMMU)").unwrap();
        assert_eq!(pci.get("sid"), Some("none"));
        assert_eq!(pci.fields.len(), 3);
    }

    #[test]
    fn log_prefixes_are_skipped_and_prose_is_not_a_record() {
        let r = parse_line("[INFO ] PCI bdf=00:01.0 sid=0x8").unwrap();
        assert_eq!((r.kind.as_str(), r.get("sid")), ("PCI", Some("0x8")));
        assert_eq!(parse_line("[INFO ] smmuman-daemon 0.1.0 starting"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("A lone capital"), None);
        let many = parse_records("BOOT el=2\nnoise\nRESULT status=fail\n");
        assert_eq!(
            many.iter().map(|r| r.kind.as_str()).collect::<Vec<_>>(),
            ["BOOT", "RESULT"]
        );
    }
}
