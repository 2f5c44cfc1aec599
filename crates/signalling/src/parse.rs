//! JSON text to model, in two modes.
//!
//! [`ParseMode::Strict`] is RFC 8259 plus a refusal of duplicated keys (the RFC only says names
//! SHOULD be unique; a service that silently keeps one of two `tenantId`s is a trap).
//! [`ParseMode::Tolerant`] accepts what the Graph documentation prints: a trailing comma before
//! `]` or `}`, a duplicated key (the **last** value wins, at the position of the first), and a
//! leading byte-order mark. Both modes bound the input size ([`MAX_INPUT_BYTES`]) and the
//! nesting depth ([`MAX_DEPTH`], serde_json's own default), and report syntax errors with a
//! 1-based line and column (columns count characters).

use std::fmt;

use serde_json::{Map, Number, Value};

use crate::model::{
    Call, CommsNotification, CommsNotifications, CommsOperation, GraphType, ModelError, Participant,
};

/// Largest input accepted, bytes. Calling payloads are a few kilobytes; a roster of a large
/// meeting stays far below this.
pub const MAX_INPUT_BYTES: usize = 4 * 1024 * 1024;

/// Deepest nesting of arrays and objects accepted (serde_json's default recursion limit).
pub const MAX_DEPTH: usize = 128;

/// How forgiving the parser is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ParseMode {
    /// RFC 8259 JSON with no duplicated keys.
    #[default]
    Strict,
    /// Also accepts trailing commas, duplicated keys (last wins) and a leading BOM.
    Tolerant,
}

/// A position in the input text, 1-based; the column counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1, in characters.
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {} column {}", self.line, self.column)
    }
}

/// What is wrong with the JSON text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxError {
    /// The text ends in the middle of a value.
    #[error("unexpected end of input")]
    UnexpectedEnd,
    /// A character that cannot start or continue what is expected here.
    #[error("unexpected character {found:?}, expected {expected}")]
    UnexpectedChar {
        /// The character found.
        found: char,
        /// What the grammar allows here.
        expected: &'static str,
    },
    /// A comma right before `]` or `}` (strict mode).
    #[error("trailing comma (accepted only in tolerant mode)")]
    TrailingComma,
    /// A key repeated within one object (strict mode).
    #[error("duplicate key {key:?} (accepted only in tolerant mode, where the last value wins)")]
    DuplicateKey {
        /// The key.
        key: String,
    },
    /// Arrays and objects nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {limit} levels")]
    TooDeep {
        /// The limit.
        limit: usize,
    },
    /// A bad escape sequence in a string.
    #[error("invalid escape sequence in string")]
    InvalidEscape,
    /// A `\u` escape that is a lone surrogate.
    #[error("invalid unicode code point in \\u escape (lone surrogate)")]
    LoneSurrogate,
    /// A raw control character inside a string.
    #[error("control character U+{code:04X} inside a string must be escaped")]
    ControlCharacter {
        /// The code point.
        code: u32,
    },
    /// A malformed number.
    #[error("invalid number")]
    InvalidNumber,
    /// A number too large for a 64-bit float.
    #[error("number out of range")]
    NumberOutOfRange,
    /// Text after the end of the value.
    #[error("trailing characters after the JSON value")]
    TrailingCharacters,
    /// A byte-order mark at the start (strict mode).
    #[error("byte-order mark before the JSON value (accepted only in tolerant mode)")]
    ByteOrderMark,
}

/// Why a text could not be parsed into a model type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The input is larger than [`MAX_INPUT_BYTES`].
    #[error("input of {len} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// Input length, bytes.
        len: usize,
        /// The limit, bytes.
        limit: usize,
    },
    /// The input is not valid UTF-8.
    #[error("input is not valid UTF-8 (first invalid byte at offset {offset})")]
    NotUtf8 {
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// The text is not (acceptable) JSON.
    #[error("{error} at {at}")]
    Syntax {
        /// What is wrong.
        error: SyntaxError,
        /// Where.
        at: Position,
    },
    /// The JSON does not fit the model.
    #[error(transparent)]
    Model(#[from] ModelError),
}

impl ParseError {
    /// The position of a syntax error.
    pub fn position(&self) -> Option<Position> {
        match self {
            ParseError::Syntax { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// The JSON path of the property a model error is about.
    pub fn path(&self) -> Option<&str> {
        match self {
            ParseError::Model(e) => Some(e.path()),
            _ => None,
        }
    }
}

/// Parses JSON text into a `serde_json::Value`.
pub fn parse_value(text: &str, mode: ParseMode) -> Result<Value, ParseError> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(ParseError::TooLarge {
            len: text.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let mut parser = Parser {
        text,
        bytes: text.as_bytes(),
        pos: 0,
        mode,
        depth: 0,
    };
    parser
        .document()
        .map_err(|(error, offset)| ParseError::Syntax {
            error,
            at: position_of(text, offset),
        })
}

/// Parses bytes (UTF-8) into a `serde_json::Value`.
pub fn parse_value_bytes(bytes: &[u8], mode: ParseMode) -> Result<Value, ParseError> {
    if bytes.len() > MAX_INPUT_BYTES {
        return Err(ParseError::TooLarge {
            len: bytes.len(),
            limit: MAX_INPUT_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    parse_value(text, mode)
}

/// Parses JSON text into any model type.
pub fn parse<T: GraphType>(text: &str, mode: ParseMode) -> Result<T, ParseError> {
    let value = parse_value(text, mode)?;
    Ok(T::from_json_value(value)?)
}

/// Parses a `call` (a create-call request body, a response, a GET result).
pub fn parse_call(text: &str, mode: ParseMode) -> Result<Call, ParseError> {
    parse(text, mode)
}

/// Parses a callback body: `commsNotifications`.
pub fn parse_notifications(text: &str, mode: ParseMode) -> Result<CommsNotifications, ParseError> {
    parse(text, mode)
}

/// Parses one `commsNotification`.
pub fn parse_notification(text: &str, mode: ParseMode) -> Result<CommsNotification, ParseError> {
    parse(text, mode)
}

/// Parses one `participant`.
pub fn parse_participant(text: &str, mode: ParseMode) -> Result<Participant, ParseError> {
    parse(text, mode)
}

/// A Graph calling document of a kind found by looking at it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Document {
    /// A `call` (a create-call request, a response, a GET result).
    Call(Box<Call>),
    /// A callback body.
    Notifications(CommsNotifications),
    /// One notification.
    Notification(Box<CommsNotification>),
    /// One participant.
    Participant(Box<Participant>),
    /// An operation (`playPromptOperation`, ...).
    Operation(Box<CommsOperation>),
}

impl Document {
    /// The Graph type name of the document (`call`, `commsNotifications`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Document::Call(_) => "call",
            Document::Notifications(_) => "commsNotifications",
            Document::Notification(_) => "commsNotification",
            Document::Participant(_) => "participant",
            Document::Operation(_) => "commsOperation",
        }
    }

    /// The document's JSON form.
    pub fn to_json_value(&self) -> Value {
        match self {
            Document::Call(c) => c.to_json_value(),
            Document::Notifications(n) => n.to_json_value(),
            Document::Notification(n) => n.to_json_value(),
            Document::Participant(p) => p.to_json_value(),
            Document::Operation(o) => o.to_json_value(),
        }
    }
}

/// Parses a document and finds what it is from its top-level `@odata.type`
/// (`#microsoft.graph.call`, `...commsNotifications`, `...commsNotification`,
/// `...participant`, an operation type). With no `@odata.type`, an object with a `value` array
/// is a callback body; anything else is read as a `call` (request bodies often omit the type).
pub fn parse_document(text: &str, mode: ParseMode) -> Result<Document, ParseError> {
    use crate::model::core::odata_type_is;
    let value = parse_value(text, mode)?;
    let odata_type = value
        .get("@odata.type")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let is = |name: &str| {
        odata_type
            .as_deref()
            .is_some_and(|t| odata_type_is(t, name))
    };
    let document = if is("microsoft.graph.commsNotifications")
        || (odata_type.is_none() && value.get("value").is_some_and(Value::is_array))
    {
        Document::Notifications(CommsNotifications::from_json_value(value)?)
    } else if is("microsoft.graph.commsNotification") {
        Document::Notification(Box::new(CommsNotification::from_json_value(value)?))
    } else if is("microsoft.graph.participant") {
        Document::Participant(Box::new(Participant::from_json_value(value)?))
    } else if odata_type
        .as_deref()
        .is_some_and(CommsOperation::is_operation_type)
    {
        Document::Operation(Box::new(CommsOperation::from_json_value(value)?))
    } else {
        Document::Call(Box::new(Call::from_json_value(value)?))
    };
    Ok(document)
}

/// The model value as pretty-printed JSON (two-space indent).
pub fn to_json_pretty<T: GraphType>(value: &T) -> String {
    let json = value.to_json_value();
    // Writing a `Value` into a `String` cannot fail: every key is a string and every number
    // finite; the fallback keeps this function total regardless.
    serde_json::to_string_pretty(&json).unwrap_or_else(|_| json.to_string())
}

fn position_of(text: &str, offset: usize) -> Position {
    let offset = offset.min(text.len());
    // The offset always sits on a char boundary: the parser only stops at ASCII bytes or at
    // the start of the char it rejects.
    let before = text.get(..offset).unwrap_or(text);
    let line = before.bytes().filter(|&b| b == b'\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    Position { line, column }
}

type Fail = (SyntaxError, usize);

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    mode: ParseMode,
    depth: usize,
}

impl Parser<'_> {
    fn document(&mut self) -> Result<Value, Fail> {
        if self.text.starts_with('\u{feff}') {
            if self.mode == ParseMode::Strict {
                return Err((SyntaxError::ByteOrderMark, 0));
            }
            self.pos = '\u{feff}'.len_utf8();
        }
        self.skip_ws();
        let value = self.value()?;
        self.skip_ws();
        if self.pos < self.bytes.len() {
            return Err((SyntaxError::TrailingCharacters, self.pos));
        }
        Ok(value)
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn unexpected(&self, expected: &'static str) -> Fail {
        match self
            .text
            .get(self.pos..)
            .and_then(|rest| rest.chars().next())
        {
            Some(found) => (SyntaxError::UnexpectedChar { found, expected }, self.pos),
            None => (SyntaxError::UnexpectedEnd, self.pos),
        }
    }

    fn value(&mut self) -> Result<Value, Fail> {
        match self.bytes.get(self.pos) {
            None => Err((SyntaxError::UnexpectedEnd, self.pos)),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(Value::String),
            Some(b'-' | b'0'..=b'9') => self.number().map(Value::Number),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(_) => Err(self.unexpected("a JSON value")),
        }
    }

    fn literal(&mut self, word: &'static str, value: Value) -> Result<Value, Fail> {
        for expected in word.bytes() {
            match self.bytes.get(self.pos) {
                Some(&b) if b == expected => self.pos += 1,
                _ => return Err(self.unexpected("a JSON value")),
            }
        }
        Ok(value)
    }

    fn enter(&mut self) -> Result<(), Fail> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err((SyntaxError::TooDeep { limit: MAX_DEPTH }, self.pos));
        }
        Ok(())
    }

    fn array(&mut self) -> Result<Value, Fail> {
        self.enter()?;
        self.pos += 1; // '['
        let mut items = Vec::new();
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b']') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Array(items));
        }
        loop {
            self.skip_ws();
            items.push(self.value()?);
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => {
                    let comma = self.pos;
                    self.pos += 1;
                    self.skip_ws();
                    if self.bytes.get(self.pos) == Some(&b']') {
                        if self.mode == ParseMode::Strict {
                            return Err((SyntaxError::TrailingComma, comma));
                        }
                        self.pos += 1;
                        break;
                    }
                }
                Some(b']') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.unexpected("',' or ']'")),
            }
        }
        self.depth -= 1;
        Ok(Value::Array(items))
    }

    fn object(&mut self) -> Result<Value, Fail> {
        self.enter()?;
        self.pos += 1; // '{'
        let mut map = Map::new();
        self.skip_ws();
        if self.bytes.get(self.pos) == Some(&b'}') {
            self.pos += 1;
            self.depth -= 1;
            return Ok(Value::Object(map));
        }
        loop {
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b'"') {
                return Err(self.unexpected("a string key"));
            }
            let key_at = self.pos;
            let key = self.string()?;
            self.skip_ws();
            if self.bytes.get(self.pos) != Some(&b':') {
                return Err(self.unexpected("':'"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value()?;
            if map.contains_key(&key) && self.mode == ParseMode::Strict {
                return Err((SyntaxError::DuplicateKey { key }, key_at));
            }
            // Tolerant: last value wins (serde_json's Map keeps the first key's position).
            map.insert(key, value);
            self.skip_ws();
            match self.bytes.get(self.pos) {
                Some(b',') => {
                    let comma = self.pos;
                    self.pos += 1;
                    self.skip_ws();
                    if self.bytes.get(self.pos) == Some(&b'}') {
                        if self.mode == ParseMode::Strict {
                            return Err((SyntaxError::TrailingComma, comma));
                        }
                        self.pos += 1;
                        break;
                    }
                }
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(self.unexpected("',' or '}'")),
            }
        }
        self.depth -= 1;
        Ok(Value::Object(map))
    }

    fn string(&mut self) -> Result<String, Fail> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let start = self.pos;
            // Copy the run of plain characters in one go.
            while let Some(&b) = self.bytes.get(self.pos) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[start..self.pos]);
            match self.bytes.get(self.pos) {
                None => return Err((SyntaxError::UnexpectedEnd, self.pos)),
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    let escape_at = self.pos;
                    self.pos += 1;
                    let Some(&e) = self.bytes.get(self.pos) else {
                        return Err((SyntaxError::UnexpectedEnd, self.pos));
                    };
                    self.pos += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape(escape_at)?),
                        _ => return Err((SyntaxError::InvalidEscape, escape_at)),
                    }
                }
                Some(&b) => {
                    return Err((
                        SyntaxError::ControlCharacter { code: u32::from(b) },
                        self.pos,
                    ));
                }
            }
        }
    }

    fn hex4(&mut self, escape_at: usize) -> Result<u32, Fail> {
        let Some(digits) = self.bytes.get(self.pos..self.pos + 4) else {
            return Err((SyntaxError::UnexpectedEnd, self.bytes.len()));
        };
        let mut code = 0u32;
        for &d in digits {
            let v = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => return Err((SyntaxError::InvalidEscape, escape_at)),
            };
            code = code * 16 + u32::from(v);
        }
        self.pos += 4;
        Ok(code)
    }

    fn unicode_escape(&mut self, escape_at: usize) -> Result<char, Fail> {
        let first = self.hex4(escape_at)?;
        let code = match first {
            0xD800..=0xDBFF => {
                if self.bytes.get(self.pos..self.pos + 2) != Some(b"\\u") {
                    return Err((SyntaxError::LoneSurrogate, escape_at));
                }
                self.pos += 2;
                let second = self.hex4(escape_at)?;
                if !(0xDC00..=0xDFFF).contains(&second) {
                    return Err((SyntaxError::LoneSurrogate, escape_at));
                }
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
            }
            0xDC00..=0xDFFF => return Err((SyntaxError::LoneSurrogate, escape_at)),
            other => other,
        };
        char::from_u32(code).ok_or((SyntaxError::LoneSurrogate, escape_at))
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<Number, Fail> {
        let start = self.pos;
        let negative = self.bytes.get(self.pos) == Some(&b'-');
        if negative {
            self.pos += 1;
        }
        match self.bytes.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err((SyntaxError::InvalidNumber, start)),
        }
        let mut integer = true;
        if self.bytes.get(self.pos) == Some(&b'.') {
            integer = false;
            self.pos += 1;
            if self.digits() == 0 {
                return Err((SyntaxError::InvalidNumber, start));
            }
        }
        if let Some(b'e' | b'E') = self.bytes.get(self.pos) {
            integer = false;
            self.pos += 1;
            if let Some(b'+' | b'-') = self.bytes.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err((SyntaxError::InvalidNumber, start));
            }
        }
        let lexeme = &self.text[start..self.pos];
        if integer {
            if negative {
                // `-0` is negative zero, a float, as serde_json reads it.
                if let Ok(v) = lexeme.parse::<i64>()
                    && v != 0
                {
                    return Ok(Number::from(v));
                }
            } else if let Ok(v) = lexeme.parse::<u64>() {
                return Ok(Number::from(v));
            }
        }
        // Like serde_json: integers beyond 64 bits and all fractions become f64.
        lexeme
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .ok_or((SyntaxError::NumberOutOfRange, start))
    }
}
