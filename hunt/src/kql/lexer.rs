//! KQL's tokens: names (keywords are names the parser recognizes where it expects them),
//! string, number, timespan, `datetime(...)` and `dynamic(...)` literals, and symbols.

use super::{KqlError, Position};

#[derive(Clone, Debug, PartialEq)]
pub(super) enum TokenKind {
    /// A name or keyword: `where`, `Timestamp`, `has_any`, `project-away`, `!contains`, `in~`,
    /// `$left`.
    Name(String),
    /// A name written `['...']` or `["..."]`: never a keyword.
    QuotedName(String),
    String(String),
    Long(i64),
    Real(f64),
    /// A timespan literal (`1d`, `30m`, `1.5h`, `100ms`), in microseconds.
    Timespan(i64),
    /// The text inside `datetime(...)`, which is no KQL tokens (`2026-12-01T10:00:00Z`).
    DateTime(String),
    /// The text inside `dynamic(...)`: JSON.
    Dynamic(String),
    Symbol(&'static str),
    End,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Token {
    pub kind: TokenKind,
    pub position: Position,
}

impl TokenKind {
    /// How an error message shows the token.
    pub fn describe(&self) -> String {
        match self {
            TokenKind::Name(name) => format!("`{name}`"),
            TokenKind::QuotedName(name) => format!("`['{name}']`"),
            TokenKind::String(text) => format!("string {text:?}"),
            TokenKind::Long(value) => format!("number {value}"),
            TokenKind::Real(value) => format!("number {value}"),
            TokenKind::Timespan(_) => "a timespan".into(),
            TokenKind::DateTime(text) => format!("datetime({text})"),
            TokenKind::Dynamic(text) => format!("dynamic({text})"),
            TokenKind::Symbol(symbol) => format!("`{symbol}`"),
            TokenKind::End => "the end of the query".into(),
        }
    }
}

/// Symbols, longest first so that `==` is not read as `=` `=`.
const SYMBOLS: &[&str] = &[
    "==", "!=", "<>", "<=", ">=", "=~", "!~", "..", "|", "(", ")", "[", "]", "{", "}", ",", ";", ".", "=", "<", ">",
    "+", "-", "*", "/", "%", ":",
];

/// Operator names written with a hyphen: read as one name, not a subtraction.
const HYPHENATED: &[&str] = &[
    "project-away",
    "project-keep",
    "project-rename",
    "project-reorder",
    "mv-expand",
    "mv-apply",
    "make-series",
    "parse-where",
    "parse-kv",
];

/// Timespan units and their length in microseconds.
const TIMESPAN_UNITS: &[(&[&str], f64)] = &[
    (&["d", "day", "days"], 86_400e6),
    (&["h", "hr", "hrs", "hour", "hours"], 3_600e6),
    (&["m", "min", "minute", "minutes"], 60e6),
    (&["s", "sec", "second", "seconds"], 1e6),
    (&["ms", "milli", "millis", "millisecond", "milliseconds"], 1e3),
    (&["microsecond", "microseconds"], 1.0),
    (&["tick", "ticks"], 0.1),
];

pub(super) fn tokenize(source: &str) -> Result<Vec<Token>, KqlError> {
    let mut lexer = Lexer { chars: source.chars().collect(), index: 0, line: 1, column: 1 };
    let mut tokens = Vec::new();
    loop {
        lexer.skip_blanks_and_comments();
        let position = lexer.position();
        let Some(c) = lexer.peek(0) else {
            tokens.push(Token { kind: TokenKind::End, position });
            return Ok(tokens);
        };
        let kind = match c {
            '\'' | '"' => lexer.string(position, false)?,
            '@' | 'h' | 'H' if matches!(lexer.peek(1), Some('\'' | '"')) => {
                let verbatim = c == '@';
                lexer.bump();
                lexer.string(position, verbatim)?
            }
            '[' if matches!(lexer.peek(1), Some('\'' | '"')) => lexer.quoted_name(position)?,
            c if c.is_ascii_digit() => lexer.number(position)?,
            c if c == '_' || c.is_alphabetic() => lexer.name(position)?,
            '$' if lexer.peek(1).is_some_and(char::is_alphabetic) => {
                lexer.bump();
                let TokenKind::Name(name) = lexer.name(position)? else { unreachable!("a name reads a name") };
                TokenKind::Name(format!("${name}"))
            }
            '!' if lexer.peek(1).is_some_and(char::is_alphabetic) => {
                lexer.bump();
                let TokenKind::Name(name) = lexer.name(position)? else { unreachable!("a name reads a name") };
                TokenKind::Name(format!("!{name}"))
            }
            _ => match SYMBOLS.iter().find(|symbol| lexer.looking_at(symbol)) {
                Some(symbol) => {
                    symbol.chars().for_each(|_| {
                        lexer.bump();
                    });
                    TokenKind::Symbol(symbol)
                }
                None => return Err(KqlError::UnexpectedCharacter { position, character: c }),
            },
        };
        tokens.push(Token { kind, position });
    }
}

struct Lexer {
    chars: Vec<char>,
    index: usize,
    line: usize,
    column: usize,
}

impl Lexer {
    fn position(&self) -> Position {
        Position { line: self.line, column: self.column }
    }

    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.index + ahead).copied()
    }

    fn looking_at(&self, text: &str) -> bool {
        text.chars().enumerate().all(|(i, c)| self.peek(i) == Some(c))
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek(0)?;
        self.index += 1;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn take_while(&mut self, mut keep: impl FnMut(char) -> bool) -> String {
        let mut taken = String::new();
        while let Some(c) = self.peek(0).filter(|&c| keep(c)) {
            taken.push(c);
            self.bump();
        }
        taken
    }

    fn skip_blanks_and_comments(&mut self) {
        loop {
            self.take_while(char::is_whitespace);
            if !self.looking_at("//") {
                return;
            }
            self.take_while(|c| c != '\n');
        }
    }

    /// A string literal; `verbatim` (`@"..."`) takes backslashes as they are and a doubled quote
    /// for a quote.
    fn string(&mut self, position: Position, verbatim: bool) -> Result<TokenKind, KqlError> {
        let quote = self.bump().expect("a string starts with its quote");
        let unterminated = KqlError::UnterminatedString { position, quote };
        let mut text = String::new();
        loop {
            match self.bump() {
                None | Some('\n') if !verbatim => return Err(unterminated),
                None => return Err(unterminated),
                Some(c) if c == quote => {
                    if verbatim && self.peek(0) == Some(quote) {
                        self.bump();
                        text.push(quote);
                    } else {
                        return Ok(TokenKind::String(text));
                    }
                }
                Some('\\') if !verbatim => {
                    let escape_position = self.position();
                    text.push(match self.bump() {
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        Some('0') => '\0',
                        Some(c @ ('\\' | '\'' | '"')) => c,
                        Some('u') => {
                            let hex: String = (0..4).filter_map(|_| self.bump()).collect();
                            u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32).ok_or_else(|| {
                                KqlError::InvalidLiteral {
                                    position: escape_position,
                                    kind: "string",
                                    text: format!("\\u{hex}"),
                                    reason: "\\u takes four hexadecimal digits".into(),
                                }
                            })?
                        }
                        None => return Err(unterminated),
                        Some(other) => {
                            return Err(KqlError::InvalidLiteral {
                                position: escape_position,
                                kind: "string",
                                text: format!("\\{other}"),
                                reason: "the escapes are \\n \\t \\r \\0 \\\\ \\' \\\" and \\uXXXX; \
                                         @'...' takes backslashes as they are"
                                    .into(),
                            });
                        }
                    });
                }
                Some(c) => text.push(c),
            }
        }
    }

    /// `['name']` or `["name"]`.
    fn quoted_name(&mut self, position: Position) -> Result<TokenKind, KqlError> {
        self.bump();
        let TokenKind::String(name) = self.string(position, false)? else { unreachable!("a string reads a string") };
        if self.bump() != Some(']') {
            return Err(KqlError::UnexpectedToken {
                position: self.position(),
                expected: "`]` closing a quoted name".into(),
                found: self.peek(0).map_or("the end of the query".into(), |c| format!("`{c}`")),
            });
        }
        Ok(TokenKind::QuotedName(name))
    }

    /// A number, or a timespan when a unit follows it.
    fn number(&mut self, position: Position) -> Result<TokenKind, KqlError> {
        let mut text = self.take_while(|c| c.is_ascii_digit());
        // `1..5` is a range, not the number `1.`.
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            text.push(self.bump().expect("peeked"));
            text += &self.take_while(|c| c.is_ascii_digit());
        }
        if matches!(self.peek(0), Some('e' | 'E'))
            && (self.peek(1).is_some_and(|c| c.is_ascii_digit())
                || (matches!(self.peek(1), Some('+' | '-')) && self.peek(2).is_some_and(|c| c.is_ascii_digit())))
        {
            text.push(self.bump().expect("peeked"));
            text.push(self.bump().expect("peeked"));
            text += &self.take_while(|c| c.is_ascii_digit());
        }
        let suffix = self.take_while(|c| c.is_alphanumeric() || c == '_');
        let invalid = |kind: &'static str, reason: &str| KqlError::InvalidLiteral {
            position,
            kind,
            text: format!("{text}{suffix}"),
            reason: reason.into(),
        };
        if !suffix.is_empty() {
            let unit = TIMESPAN_UNITS.iter().find(|(names, _)| names.contains(&suffix.as_str()));
            let Some((_, microseconds)) = unit else {
                return Err(invalid("timespan", "the units are d, h, m, s, ms, microsecond and tick"));
            };
            let value: f64 = text.parse().map_err(|_| invalid("timespan", "not a number"))?;
            return Ok(TokenKind::Timespan((value * microseconds).round() as i64));
        }
        if text.contains(['.', 'e', 'E']) {
            text.parse().map(TokenKind::Real).map_err(|_| invalid("real", "not a number"))
        } else {
            text.parse().map(TokenKind::Long).map_err(|_| invalid("long", "out of the 64-bit range"))
        }
    }

    fn name(&mut self, position: Position) -> Result<TokenKind, KqlError> {
        let mut name = self.take_while(|c| c == '_' || c.is_alphanumeric());
        if self.peek(0) == Some('-')
            && let Some(hyphenated) = HYPHENATED.iter().find(|h| {
                h.strip_prefix(name.as_str()).is_some_and(|rest| {
                    rest.starts_with('-')
                        && self.looking_at(rest)
                        && !self.peek(rest.chars().count()).is_some_and(|c| c == '_' || c.is_alphanumeric())
                })
            })
        {
            (name.len()..hyphenated.len()).for_each(|_| {
                self.bump();
            });
            name = (*hyphenated).to_owned();
        }
        // `in~` and `!in~` are single operators.
        if name == "in" && self.peek(0) == Some('~') {
            self.bump();
            name.push('~');
        }
        let literal = match name.as_str() {
            "datetime" => Some(TokenKind::DateTime as fn(String) -> TokenKind),
            "dynamic" => Some(TokenKind::Dynamic as fn(String) -> TokenKind),
            _ => None,
        };
        match literal {
            Some(literal) => {
                self.take_while(char::is_whitespace);
                if self.peek(0) != Some('(') {
                    return Ok(TokenKind::Name(name));
                }
                self.bump();
                Ok(literal(self.parenthesized(position, &name)?))
            }
            None => Ok(TokenKind::Name(name)),
        }
    }

    /// The raw text up to the `)` that closes an already-read `(`, skipping parentheses inside
    /// nested parentheses and strings.
    fn parenthesized(&mut self, position: Position, literal: &str) -> Result<String, KqlError> {
        let mut text = String::new();
        let mut depth = 0;
        let mut quote = None;
        loop {
            let Some(c) = self.bump() else {
                return Err(KqlError::InvalidLiteral {
                    position,
                    kind: if literal == "datetime" { "datetime" } else { "dynamic" },
                    text: format!("{literal}({text}"),
                    reason: "`(` is not closed".into(),
                });
            };
            match (quote, c) {
                (Some(open), c) if c == open => quote = None,
                (Some(_), '\\') => {
                    text.push(c);
                    if let Some(escaped) = self.bump() {
                        text.push(escaped);
                    }
                    continue;
                }
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '(') => depth += 1,
                (None, ')') if depth == 0 => return Ok(text.trim().to_owned()),
                (None, ')') => depth -= 1,
                (None, _) => {}
            }
            text.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<TokenKind> {
        tokenize(source).unwrap().into_iter().map(|t| t.kind).collect()
    }

    fn name(text: &str) -> TokenKind {
        TokenKind::Name(text.into())
    }

    #[test]
    fn reads_operators_names_and_literals() {
        assert_eq!(
            kinds("T | project-away A // gone\n| where B !has 'x' and C in~ (\"y\") and D !in~ (@'c:\\d')"),
            vec![
                name("T"),
                TokenKind::Symbol("|"),
                name("project-away"),
                name("A"),
                TokenKind::Symbol("|"),
                name("where"),
                name("B"),
                name("!has"),
                TokenKind::String("x".into()),
                name("and"),
                name("C"),
                name("in~"),
                TokenKind::Symbol("("),
                TokenKind::String("y".into()),
                TokenKind::Symbol(")"),
                name("and"),
                name("D"),
                name("!in~"),
                TokenKind::Symbol("("),
                TokenKind::String("c:\\d".into()),
                TokenKind::Symbol(")"),
                TokenKind::End,
            ]
        );
        assert_eq!(
            kinds("1d 2h 30m 10s 100ms 1.5h 7 2.5 1e3 1..5"),
            vec![
                TokenKind::Timespan(86_400_000_000),
                TokenKind::Timespan(7_200_000_000),
                TokenKind::Timespan(1_800_000_000),
                TokenKind::Timespan(10_000_000),
                TokenKind::Timespan(100_000),
                TokenKind::Timespan(5_400_000_000),
                TokenKind::Long(7),
                TokenKind::Real(2.5),
                TokenKind::Real(1000.0),
                TokenKind::Long(1),
                TokenKind::Symbol(".."),
                TokenKind::Long(5),
                TokenKind::End,
            ]
        );
        assert_eq!(
            kinds(r#"datetime(2026-12-01T10:00:00Z) dynamic(["a(", {"b": 1}]) ['odd name'] $left.A mv - x"#),
            vec![
                TokenKind::DateTime("2026-12-01T10:00:00Z".into()),
                TokenKind::Dynamic(r#"["a(", {"b": 1}]"#.into()),
                TokenKind::QuotedName("odd name".into()),
                name("$left"),
                TokenKind::Symbol("."),
                name("A"),
                name("mv"),
                TokenKind::Symbol("-"),
                name("x"),
                TokenKind::End,
            ]
        );
        assert_eq!(
            kinds(r#"'it\'s\n' @"say ""hi""" "\u0041" h'hidden'"#)[..4],
            ["it's\n", "say \"hi\"", "A", "hidden"].map(|text| TokenKind::String(text.into()))
        );
    }

    #[test]
    fn names_the_position_of_what_it_cannot_read() {
        let error = tokenize("T\n| where A == 'open").unwrap_err();
        assert_eq!(error, KqlError::UnterminatedString { position: Position { line: 2, column: 14 }, quote: '\'' });
        assert_eq!(error.to_string(), "2:14: unterminated string literal: close it with '");
        let error = tokenize("T | where A ? 1").unwrap_err();
        assert_eq!(error.to_string(), "1:13: unexpected character '?'");
        let error = tokenize("T | where A > 3x").unwrap_err();
        assert!(error.to_string().starts_with("1:15: invalid timespan literal `3x`"), "{error}");
    }
}
