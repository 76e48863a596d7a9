//! A small XML well-formedness check for the picture (no XML crate in the workspace): the
//! prolog, elements with quoted attributes, matching end tags, character data with the five
//! predefined entities or character references only. Returns every element's name and the
//! text inside `<text>` and `<title>` elements.

#![allow(dead_code)]

/// What a well-formed document holds.
#[derive(Debug, Default)]
pub struct Parsed {
    /// Element names, in document order.
    pub elements: Vec<String>,
    /// Text of `<text>` and `<title>` elements, entities decoded.
    pub texts: Vec<String>,
}

fn name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.')
}

fn decode(s: &str, at: usize) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find(';')
            .ok_or(format!("byte {at}: unterminated entity"))?;
        let ent = &rest[i + 1..i + end];
        out.push(match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            e if e.starts_with("#x") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32)
                .ok_or(format!("byte {at}: bad reference &{e};"))?,
            e if e.starts_with('#') => e[1..]
                .parse()
                .ok()
                .and_then(char::from_u32)
                .ok_or(format!("byte {at}: bad reference &{e};"))?,
            e => return Err(format!("byte {at}: unknown entity &{e};")),
        });
        rest = &rest[i + end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Checks `doc`; the error names the byte offset and what is wrong.
pub fn parse(doc: &str) -> Result<Parsed, String> {
    let mut p = Parsed::default();
    let mut stack: Vec<String> = Vec::new();
    let mut i = 0;
    let b = doc.as_bytes();
    let mut root_seen = false;
    if doc.starts_with("<?xml") {
        i = doc.find("?>").ok_or("unterminated prolog")? + 2;
    }
    while i < b.len() {
        if b[i] == b'<' {
            let end = doc[i..]
                .find('>')
                .ok_or(format!("byte {i}: unterminated tag"))?
                + i;
            let tag = &doc[i + 1..end];
            if tag.contains('<') {
                return Err(format!("byte {i}: '<' inside a tag"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack
                    .pop()
                    .ok_or(format!("byte {i}: end tag </{name}> with nothing open"))?;
                if open != name.trim() {
                    return Err(format!("byte {i}: </{name}> closes <{open}>"));
                }
            } else {
                let self_closing = tag.ends_with('/');
                let tag = tag.trim_end_matches('/');
                let name: String = tag.chars().take_while(|c| name_char(*c)).collect();
                if name.is_empty() {
                    return Err(format!("byte {i}: element without a name"));
                }
                if stack.is_empty() && root_seen {
                    return Err(format!("byte {i}: a second root element <{name}>"));
                }
                root_seen = true;
                // Attributes: name="value" or name='value', separated by white space.
                let mut rest = tag[name.len()..].trim_start();
                let mut seen: Vec<&str> = Vec::new();
                while !rest.is_empty() {
                    let an: &str =
                        &rest[..rest.find(|c: char| !name_char(c)).unwrap_or(rest.len())];
                    if an.is_empty() || seen.contains(&an) {
                        return Err(format!("byte {i}: bad or repeated attribute in <{name}>"));
                    }
                    seen.push(an);
                    let r = rest[an.len()..].trim_start();
                    let r = r
                        .strip_prefix('=')
                        .ok_or(format!("byte {i}: attribute {an} without '='"))?
                        .trim_start();
                    let q = r
                        .chars()
                        .next()
                        .ok_or(format!("byte {i}: attribute {an} without a value"))?;
                    if q != '"' && q != '\'' {
                        return Err(format!("byte {i}: attribute {an} not quoted"));
                    }
                    let close = r[1..]
                        .find(q)
                        .ok_or(format!("byte {i}: attribute {an} unterminated"))?
                        + 1;
                    decode(&r[1..close], i)?;
                    let after = &r[close + 1..];
                    if !after.is_empty() && !after.starts_with(char::is_whitespace) {
                        return Err(format!("byte {i}: no space after attribute {an}"));
                    }
                    rest = after.trim_start();
                }
                p.elements.push(name.clone());
                if !self_closing {
                    stack.push(name);
                }
            }
            i = end + 1;
        } else {
            let end = doc[i..].find('<').map_or(b.len(), |e| e + i);
            let text = decode(&doc[i..end], i)?;
            if stack.is_empty() && !text.trim().is_empty() {
                return Err(format!("byte {i}: text outside the root element"));
            }
            if matches!(stack.last().map(String::as_str), Some("text" | "title")) {
                p.texts.push(text);
            }
            i = end;
        }
    }
    if let Some(open) = stack.pop() {
        return Err(format!("<{open}> is never closed"));
    }
    if !root_seen {
        return Err("no root element".to_string());
    }
    Ok(p)
}
