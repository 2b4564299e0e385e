//! A parser for vscf, the configuration syntax of gdnsd: nested hashes (`key => value`),
//! arrays (`[ a, b ]`), quoted and unquoted scalars and `#` comments.
//!
//! It exists so `steerdns import gdnsd` can read a gdnsd `config` without a C library. Every
//! key and value keeps the line it started on, so the importer can say where an untranslatable
//! setting is. Input is bounded (size and nesting depth) because the file comes from outside.
//! `$include{...}` is not supported and is reported as such. Pure: no I/O.

/// Largest config text accepted (gdnsd configs are a few KiB; nets data goes in files).
pub const MAX_BYTES: usize = 4 * 1024 * 1024;
/// Deepest nesting of hashes and arrays accepted.
pub const MAX_DEPTH: usize = 32;

/// A parse error at a 1-based line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {reason}")]
pub struct VscfError {
    pub line: usize,
    pub reason: String,
}

/// A value with the line it starts on.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(String),
    Array(Vec<Node>),
    /// Keys in file order; duplicates are rejected while parsing.
    Hash(Vec<(String, Node)>),
}

impl Node {
    pub fn as_scalar(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_hash(&self) -> Option<&[(String, Node)]> {
        match &self.value {
            Value::Hash(h) => Some(h),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node]> {
        match &self.value {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The entry `key` of a hash (None if this is not a hash or has no such key).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_hash()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> &'static str {
        match self.value {
            Value::Scalar(_) => "a scalar",
            Value::Array(_) => "an array",
            Value::Hash(_) => "a hash",
        }
    }
}

/// Parse a whole file: its top level is a hash without braces.
pub fn parse(text: &str) -> Result<Node, VscfError> {
    if text.len() > MAX_BYTES {
        return Err(VscfError {
            line: 1,
            reason: format!(
                "file is {} bytes, more than the {MAX_BYTES} accepted",
                text.len()
            ),
        });
    }
    let mut p = Parser {
        bytes: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    let entries = p.hash_body(None, 0)?;
    Ok(Node {
        line: 1,
        value: Value::Hash(entries),
    })
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: usize,
}

/// Bytes that end an unquoted scalar (besides whitespace).
fn is_delimiter(b: u8) -> bool {
    matches!(
        b,
        b',' | b';' | b'=' | b'[' | b']' | b'{' | b'}' | b'#' | b'"'
    )
}

impl Parser<'_> {
    fn err(&self, reason: impl Into<String>) -> VscfError {
        VscfError {
            line: self.line,
            reason: reason.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.pos += 1;
        if b == b'\n' {
            self.line += 1;
        }
        Some(b)
    }

    /// Skip whitespace and comments.
    fn skip_blank(&mut self) {
        while let Some(b) = self.peek() {
            if b.is_ascii_whitespace() {
                self.bump();
            } else if b == b'#' {
                while let Some(c) = self.peek() {
                    if c == b'\n' {
                        break;
                    }
                    self.bump();
                }
            } else {
                break;
            }
        }
    }

    /// Skip blanks and at most one `,` or `;` between entries.
    fn skip_separator(&mut self) {
        self.skip_blank();
        if matches!(self.peek(), Some(b',' | b';')) {
            self.bump();
            self.skip_blank();
        }
    }

    /// Entries until `close` (or end of input at the top level, `close` = None).
    fn hash_body(
        &mut self,
        close: Option<u8>,
        depth: usize,
    ) -> Result<Vec<(String, Node)>, VscfError> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        loop {
            self.skip_blank();
            match (self.peek(), close) {
                (None, None) => return Ok(entries),
                (None, Some(_)) => return Err(self.err("unexpected end of file: a '}' is missing")),
                (Some(b), Some(c)) if b == c => {
                    self.bump();
                    return Ok(entries);
                }
                _ => {}
            }
            if self.peek() == Some(b'$') {
                return Err(self.err("vscf directives such as $include are not supported"));
            }
            let key_line = self.line;
            let key = self.scalar("a key")?;
            self.skip_blank();
            if self.peek() != Some(b'=') {
                return Err(self.err(format!("expected '=>' or '=' after key {key:?}")));
            }
            self.bump();
            if self.peek() == Some(b'>') {
                self.bump();
            }
            self.skip_blank();
            let value = self.value(depth)?;
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(VscfError {
                    line: key_line,
                    reason: format!("duplicate key {key:?}"),
                });
            }
            entries.push((key, value));
            self.skip_separator();
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node, VscfError> {
        let line = self.line;
        let value = match self.peek() {
            Some(b'{') | Some(b'[') if depth + 1 > MAX_DEPTH => {
                return Err(self.err(format!("nested deeper than {MAX_DEPTH} levels")));
            }
            Some(b'{') => {
                self.bump();
                Value::Hash(self.hash_body(Some(b'}'), depth + 1)?)
            }
            Some(b'[') => {
                self.bump();
                let mut items = Vec::new();
                loop {
                    self.skip_blank();
                    match self.peek() {
                        None => return Err(self.err("unexpected end of file: a ']' is missing")),
                        Some(b']') => {
                            self.bump();
                            break;
                        }
                        _ => {}
                    }
                    items.push(self.value(depth + 1)?);
                    self.skip_separator();
                }
                Value::Array(items)
            }
            None => return Err(self.err("unexpected end of file: a value is missing")),
            _ => Value::Scalar(self.scalar("a value")?),
        };
        Ok(Node { line, value })
    }

    /// A quoted or unquoted scalar, with `\X` and `\DDD` escapes.
    fn scalar(&mut self, what: &str) -> Result<String, VscfError> {
        let mut out = Vec::new();
        if self.peek() == Some(b'"') {
            let start = self.line;
            self.bump();
            loop {
                match self.bump() {
                    None => {
                        return Err(VscfError {
                            line: start,
                            reason: "unterminated quoted string".into(),
                        });
                    }
                    Some(b'"') => break,
                    Some(b'\\') => out.push(self.escape()?),
                    Some(b) => out.push(b),
                }
            }
        } else {
            while let Some(b) = self.peek() {
                if b.is_ascii_whitespace() || is_delimiter(b) {
                    break;
                }
                self.bump();
                if b == b'\\' {
                    out.push(self.escape()?);
                } else {
                    out.push(b);
                }
            }
            if out.is_empty() {
                return Err(match self.peek() {
                    Some(b) => self.err(format!("expected {what}, found {:?}", char::from(b))),
                    None => self.err(format!("expected {what}, found end of file")),
                });
            }
        }
        String::from_utf8(out).map_err(|_| self.err("not valid UTF-8"))
    }

    /// After a backslash: `\DDD` (decimal byte) or `\X` (X itself).
    fn escape(&mut self) -> Result<u8, VscfError> {
        let digits: Vec<u8> = self.bytes[self.pos..]
            .iter()
            .take(3)
            .take_while(|b| b.is_ascii_digit())
            .copied()
            .collect();
        if digits.len() == 3 {
            self.pos += 3;
            let n = digits
                .iter()
                .fold(0u32, |n, d| n * 10 + u32::from(d - b'0'));
            return u8::try_from(n).map_err(|_| self.err(format!("escape \\{n} is above 255")));
        }
        self.bump()
            .ok_or_else(|| self.err("unexpected end of file after '\\'"))
    }
}

#[cfg(test)]
#[path = "vscf_tests.rs"]
mod tests;
