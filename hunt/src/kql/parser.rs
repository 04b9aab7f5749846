//! A recursive-descent parser from tokens to the [`ast`](super::ast).
//!
//! Expression precedence, loosest first: `or`; `and`; one comparison or string operator
//! (`==`, `has`, `in`, `between`, ...); `+ -`; `* / %`; unary `-`; member access, indexing and
//! calls.

use super::ast::*;
use super::lexer::{Token, TokenKind, tokenize};
use super::{KqlError, Position, SUPPORTED_OPERATORS, time};

pub(super) fn parse(source: &str) -> Result<Query, KqlError> {
    let mut parser = Parser { tokens: tokenize(source)?, index: 0 };
    let query = parser.query()?;
    parser.expect_end()?;
    Ok(query)
}

struct Parser {
    tokens: Vec<Token>,
    index: usize,
}

/// The word operators of the comparison level, and what each parses to.
fn text_operator(word: &str) -> Option<TextOp> {
    let negated = word.starts_with('!');
    let word = word.trim_start_matches('!');
    let (word, case_sensitive) = match word.strip_suffix("_cs") {
        Some(word) => (word, true),
        None => (word, false),
    };
    let kind = match word {
        "has" => TextOpKind::Has,
        "contains" => TextOpKind::Contains,
        "startswith" => TextOpKind::StartsWith,
        "endswith" => TextOpKind::EndsWith,
        _ => return None,
    };
    Some(TextOp { kind, case_sensitive, negated })
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.index]
    }

    fn peek_kind(&self, ahead: usize) -> &TokenKind {
        &self.tokens[(self.index + ahead).min(self.tokens.len() - 1)].kind
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.index].clone();
        if self.index + 1 < self.tokens.len() {
            self.index += 1;
        }
        token
    }

    fn at_symbol(&self, symbol: &str) -> bool {
        matches!(self.peek_kind(0), TokenKind::Symbol(s) if *s == symbol)
    }

    fn at_word(&self, word: &str) -> bool {
        matches!(self.peek_kind(0), TokenKind::Name(name) if name == word)
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let at = self.at_symbol(symbol);
        if at {
            self.next();
        }
        at
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let at = self.at_word(word);
        if at {
            self.next();
        }
        at
    }

    fn unexpected(&self, expected: &str) -> KqlError {
        let token = self.peek();
        KqlError::UnexpectedToken {
            position: token.position,
            expected: expected.to_owned(),
            found: token.kind.describe(),
        }
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<Position, KqlError> {
        let position = self.peek().position;
        match self.eat_symbol(symbol) {
            true => Ok(position),
            false => Err(self.unexpected(&format!("`{symbol}`"))),
        }
    }

    fn expect_word(&mut self, word: &str) -> Result<(), KqlError> {
        match self.eat_word(word) {
            true => Ok(()),
            false => Err(self.unexpected(&format!("`{word}`"))),
        }
    }

    fn expect_end(&mut self) -> Result<(), KqlError> {
        while self.eat_symbol(";") {}
        match self.peek_kind(0) {
            TokenKind::End => Ok(()),
            _ => Err(self.unexpected("`|` and an operator, or the end of the query")),
        }
    }

    fn name(&mut self, what: &str) -> Result<Name, KqlError> {
        match self.peek_kind(0).clone() {
            TokenKind::Name(text) | TokenKind::QuotedName(text) => {
                let position = self.next().position;
                Ok(Name { text, position })
            }
            _ => Err(self.unexpected(what)),
        }
    }

    fn query(&mut self) -> Result<Query, KqlError> {
        let mut lets = Vec::new();
        while self.eat_word("let") {
            let name = self.name("a name for `let`")?;
            self.expect_symbol("=")?;
            let value = match (self.peek_kind(0), self.peek_kind(1)) {
                (TokenKind::Name(_) | TokenKind::QuotedName(_), TokenKind::Symbol("|")) => {
                    LetValue::Tabular(self.pipeline()?)
                }
                _ => LetValue::Scalar(self.expr()?),
            };
            self.expect_symbol(";")?;
            lets.push(Let { name, value });
        }
        Ok(Query { lets, body: self.pipeline()? })
    }

    fn pipeline(&mut self) -> Result<Pipeline, KqlError> {
        let source = self.name("a table name")?;
        let mut operators = Vec::new();
        while self.eat_symbol("|") {
            operators.push(self.operator()?);
        }
        Ok(Pipeline { source, operators })
    }

    fn operator(&mut self) -> Result<Operator, KqlError> {
        let position = self.peek().position;
        let TokenKind::Name(word) = self.peek_kind(0).clone() else {
            return Err(self.unexpected("a tabular operator"));
        };
        self.next();
        let kind = match word.as_str() {
            "where" | "filter" => OperatorKind::Where(self.expr()?),
            "project" => OperatorKind::Project(self.assignments()?),
            "extend" => OperatorKind::Extend(self.assignments()?),
            "project-away" => OperatorKind::ProjectAway(self.comma_separated(Self::column_pattern)?),
            "project-rename" => OperatorKind::ProjectRename(self.comma_separated(|parser| {
                let new = parser.name("a new column name")?;
                parser.expect_symbol("=")?;
                Ok((new, parser.name("the column to rename")?))
            })?),
            "summarize" => {
                let aggregates = match self.at_word("by") {
                    true => Vec::new(),
                    false => self.assignments()?,
                };
                let by = match self.eat_word("by") {
                    true => self.assignments()?,
                    false => Vec::new(),
                };
                OperatorKind::Summarize { aggregates, by }
            }
            "order" | "sort" => {
                self.expect_word("by")?;
                OperatorKind::Sort(self.comma_separated(Self::sort_key)?)
            }
            "top" => {
                let count = self.count("top")?;
                self.expect_word("by")?;
                OperatorKind::Top { count, key: self.sort_key()? }
            }
            "take" | "limit" => OperatorKind::Take(self.count(&word)?),
            "distinct" => match self.eat_symbol("*") {
                true => OperatorKind::Distinct(Vec::new()),
                false => OperatorKind::Distinct(self.comma_separated(|parser| parser.name("a column"))?),
            },
            "count" => OperatorKind::Count,
            "join" => self.join()?,
            "mv-expand" => {
                let name = match self.peek_kind(1) {
                    TokenKind::Symbol("=") => {
                        let name = self.name("a column name")?;
                        self.next();
                        Some(name)
                    }
                    _ => None,
                };
                OperatorKind::MvExpand { name, expr: self.expr()? }
            }
            _ => return Err(KqlError::UnknownOperator { position, name: word, supported: SUPPORTED_OPERATORS }),
        };
        Ok(Operator { kind, position })
    }

    fn count(&mut self, operator: &str) -> Result<u64, KqlError> {
        match self.peek_kind(0) {
            TokenKind::Long(count) if *count >= 0 => {
                let count = *count as u64;
                self.next();
                Ok(count)
            }
            _ => Err(self.unexpected(&format!("a row count after `{operator}`"))),
        }
    }

    /// `Name`, `Prefix*`, `*Suffix`: a `project-away` pattern.
    fn column_pattern(&mut self) -> Result<Name, KqlError> {
        let position = self.peek().position;
        let mut text = String::new();
        loop {
            match self.peek_kind(0).clone() {
                TokenKind::Name(part) | TokenKind::QuotedName(part) => text += &part,
                TokenKind::Symbol("*") => text.push('*'),
                _ if text.is_empty() => return Err(self.unexpected("a column name or pattern")),
                _ => return Ok(Name { text, position }),
            }
            self.next();
        }
    }

    fn comma_separated<T>(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<T, KqlError>,
    ) -> Result<Vec<T>, KqlError> {
        let mut items = vec![item(self)?];
        while self.eat_symbol(",") {
            items.push(item(self)?);
        }
        Ok(items)
    }

    fn assignments(&mut self) -> Result<Vec<Assignment>, KqlError> {
        self.comma_separated(|parser| {
            let name = match (parser.peek_kind(0), parser.peek_kind(1)) {
                (TokenKind::Name(_) | TokenKind::QuotedName(_), TokenKind::Symbol("=")) => {
                    let name = parser.name("a column name")?;
                    parser.next();
                    Some(name)
                }
                _ => None,
            };
            Ok(Assignment { name, expr: parser.expr()? })
        })
    }

    fn sort_key(&mut self) -> Result<SortKey, KqlError> {
        let expr = self.expr()?;
        // KQL sorts descending unless told otherwise, with nulls where the direction puts the
        // smallest values.
        let descending = if self.eat_word("asc") {
            false
        } else {
            self.eat_word("desc");
            true
        };
        let nulls_first = match self.eat_word("nulls") {
            true if self.eat_word("first") => true,
            true if self.eat_word("last") => false,
            true => return Err(self.unexpected("`first` or `last`")),
            false => !descending,
        };
        Ok(SortKey { expr, descending, nulls_first })
    }

    fn join(&mut self) -> Result<OperatorKind, KqlError> {
        let mut kind = JoinKind::InnerUnique;
        if self.at_word("kind") && matches!(self.peek_kind(1), TokenKind::Symbol("=")) {
            self.next();
            self.next();
            let name = self.name("a join kind")?;
            kind = match name.text.as_str() {
                "innerunique" => JoinKind::InnerUnique,
                "inner" => JoinKind::Inner,
                "leftouter" => JoinKind::LeftOuter,
                "rightouter" => JoinKind::RightOuter,
                "fullouter" => JoinKind::FullOuter,
                "leftsemi" => JoinKind::LeftSemi,
                "leftanti" | "anti" | "leftantisemi" => JoinKind::LeftAnti,
                "rightsemi" => JoinKind::RightSemi,
                "rightanti" | "rightantisemi" => JoinKind::RightAnti,
                _ => {
                    return Err(KqlError::UnexpectedToken {
                        position: name.position,
                        expected: "a join kind: innerunique, inner, leftouter, rightouter, fullouter, leftsemi, \
                                   leftanti, rightsemi, rightanti"
                            .into(),
                        found: format!("`{}`", name.text),
                    });
                }
            };
        }
        let right = match self.eat_symbol("(") {
            true => {
                let right = self.pipeline()?;
                self.expect_symbol(")")?;
                right
            }
            false => {
                Pipeline { source: self.name("`(` and the right side's query, or a table name")?, operators: vec![] }
            }
        };
        self.expect_word("on")?;
        let on = self.comma_separated(|parser| {
            let left = parser.name("a join key: a column, or `$left.A == $right.B`")?;
            if left.text != "$left" {
                return Ok(JoinKey { right: left.clone(), left });
            }
            parser.expect_symbol(".")?;
            let left = parser.name("the left side's column")?;
            parser.expect_symbol("==")?;
            if !parser.eat_word("$right") {
                return Err(parser.unexpected("`$right`"));
            }
            parser.expect_symbol(".")?;
            Ok(JoinKey { left, right: parser.name("the right side's column")? })
        })?;
        Ok(OperatorKind::Join { kind, right, on })
    }

    fn expr(&mut self) -> Result<Expr, KqlError> {
        let mut left = self.and()?;
        while self.at_word("or") {
            let position = self.next().position;
            left = binary(BinaryOp::Or, left, self.and()?, position);
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, KqlError> {
        let mut left = self.comparison()?;
        while self.at_word("and") {
            let position = self.next().position;
            left = binary(BinaryOp::And, left, self.comparison()?, position);
        }
        Ok(left)
    }

    fn comparison(&mut self) -> Result<Expr, KqlError> {
        let left = self.additive()?;
        let position = self.peek().position;
        let op = match self.peek_kind(0).clone() {
            TokenKind::Symbol(symbol) => match symbol {
                "==" => BinaryOp::Equal,
                "!=" | "<>" => BinaryOp::NotEqual,
                "<" => BinaryOp::Less,
                "<=" => BinaryOp::LessOrEqual,
                ">" => BinaryOp::Greater,
                ">=" => BinaryOp::GreaterOrEqual,
                "=~" => BinaryOp::EqualIgnoringCase,
                "!~" => BinaryOp::NotEqualIgnoringCase,
                _ => return Ok(left),
            },
            TokenKind::Name(word) => {
                let list = match word.as_str() {
                    "in" => Some(ListOp::In { negated: false, case_sensitive: true }),
                    "!in" => Some(ListOp::In { negated: true, case_sensitive: true }),
                    "in~" => Some(ListOp::In { negated: false, case_sensitive: false }),
                    "!in~" => Some(ListOp::In { negated: true, case_sensitive: false }),
                    "has_any" => Some(ListOp::HasAny),
                    "has_all" => Some(ListOp::HasAll),
                    _ => None,
                };
                if let Some(op) = list {
                    self.next();
                    self.expect_symbol("(")?;
                    let items = self.comma_separated(Self::expr)?;
                    self.expect_symbol(")")?;
                    return Ok(Expr { kind: ExprKind::List { op, expr: Box::new(left), items }, position });
                }
                if word == "between" || word == "!between" {
                    self.next();
                    self.expect_symbol("(")?;
                    let low = self.additive()?;
                    self.expect_symbol("..")?;
                    let high = self.additive()?;
                    self.expect_symbol(")")?;
                    let (expr, low, high) = (Box::new(left), Box::new(low), Box::new(high));
                    let negated = word == "!between";
                    return Ok(Expr { kind: ExprKind::Between { expr, low, high, negated }, position });
                }
                if word == "matches" {
                    self.next();
                    self.expect_word("regex")?;
                    BinaryOp::MatchesRegex
                } else {
                    match text_operator(&word) {
                        Some(op) => BinaryOp::Text(op),
                        None => return Ok(left),
                    }
                }
            }
            _ => return Ok(left),
        };
        if !matches!(op, BinaryOp::MatchesRegex) {
            self.next();
        }
        Ok(binary(op, left, self.additive()?, position))
    }

    fn additive(&mut self) -> Result<Expr, KqlError> {
        let mut left = self.multiplicative()?;
        loop {
            let op = match self.peek_kind(0) {
                TokenKind::Symbol("+") => BinaryOp::Add,
                TokenKind::Symbol("-") => BinaryOp::Subtract,
                _ => return Ok(left),
            };
            let position = self.next().position;
            left = binary(op, left, self.multiplicative()?, position);
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, KqlError> {
        let mut left = self.unary()?;
        loop {
            let op = match self.peek_kind(0) {
                TokenKind::Symbol("*") => BinaryOp::Multiply,
                TokenKind::Symbol("/") => BinaryOp::Divide,
                TokenKind::Symbol("%") => BinaryOp::Modulo,
                _ => return Ok(left),
            };
            let position = self.next().position;
            left = binary(op, left, self.unary()?, position);
        }
    }

    fn unary(&mut self) -> Result<Expr, KqlError> {
        let position = self.peek().position;
        if self.eat_symbol("-") {
            let operand = self.unary()?;
            return Ok(Expr {
                kind: match operand.kind {
                    ExprKind::Long(value) => ExprKind::Long(-value),
                    ExprKind::Real(value) => ExprKind::Real(-value),
                    ExprKind::Timespan(value) => ExprKind::Timespan(-value),
                    _ => ExprKind::Negate(Box::new(operand)),
                },
                position,
            });
        }
        self.eat_symbol("+");
        self.postfix()
    }

    fn postfix(&mut self) -> Result<Expr, KqlError> {
        let mut expr = self.primary()?;
        loop {
            let position = self.peek().position;
            if self.eat_symbol(".") {
                let key = self.name("a property name after `.`")?.text;
                expr = Expr { kind: ExprKind::Member { base: Box::new(expr), key }, position };
            } else if let TokenKind::QuotedName(key) = self.peek_kind(0).clone() {
                // The lexer reads `["key"]` as a quoted name; after a value it is a property.
                self.next();
                expr = Expr { kind: ExprKind::Member { base: Box::new(expr), key }, position };
            } else if self.eat_symbol("[") {
                let kind = match self.peek_kind(0).clone() {
                    TokenKind::Long(index) => ExprKind::Index { base: Box::new(expr), index },
                    TokenKind::Symbol("-") if matches!(self.peek_kind(1), TokenKind::Long(_)) => {
                        self.next();
                        let TokenKind::Long(index) = self.peek_kind(0).clone() else { unreachable!("peeked") };
                        ExprKind::Index { base: Box::new(expr), index: -index }
                    }
                    _ => return Err(self.unexpected("an index or a property name in quotes")),
                };
                self.next();
                self.expect_symbol("]")?;
                expr = Expr { kind, position };
            } else {
                return Ok(expr);
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, KqlError> {
        let token = self.peek().clone();
        let position = token.position;
        let literal = |kind| Ok(Expr { kind, position });
        let kind = match token.kind {
            TokenKind::String(text) => ExprKind::String(text),
            TokenKind::Long(value) => ExprKind::Long(value),
            TokenKind::Real(value) => ExprKind::Real(value),
            TokenKind::Timespan(value) => ExprKind::Timespan(value),
            TokenKind::DateTime(text) => match time::parse_datetime(&text) {
                Ok(micros) => ExprKind::DateTime(micros),
                Err(reason) => {
                    return Err(KqlError::InvalidLiteral { position, kind: "datetime", text, reason: reason.into() });
                }
            },
            TokenKind::Dynamic(text) => match serde_json::from_str(&double_quoted(&text)) {
                Ok(value) => ExprKind::Dynamic(value),
                Err(error) => {
                    let reason = format!("{error}; dynamic(...) takes JSON");
                    return Err(KqlError::InvalidLiteral { position, kind: "dynamic", text, reason });
                }
            },
            TokenKind::Symbol("(") => {
                self.next();
                let inner = self.expr()?;
                self.expect_symbol(")")?;
                return Ok(inner);
            }
            TokenKind::QuotedName(name) => ExprKind::Name(name),
            TokenKind::Name(name) if name == "true" || name == "false" => ExprKind::Bool(name == "true"),
            TokenKind::Name(name) if matches!(self.peek_kind(1), TokenKind::Symbol("(")) => {
                self.next();
                self.next();
                let mut args = Vec::new();
                if !self.at_symbol(")") {
                    args = self.comma_separated(|parser| {
                        let position = parser.peek().position;
                        match parser.eat_symbol("*") {
                            true => Ok(Expr { kind: ExprKind::Star, position }),
                            false => parser.expr(),
                        }
                    })?;
                }
                self.expect_symbol(")")?;
                return literal(ExprKind::Call { name, args });
            }
            TokenKind::Name(name) => ExprKind::Name(name),
            _ => return Err(self.unexpected("an expression")),
        };
        self.next();
        literal(kind)
    }
}

/// A `dynamic(...)` literal's text as JSON: KQL also quotes its strings with `'`.
fn double_quoted(text: &str) -> String {
    let mut json = String::with_capacity(text.len());
    let mut quote = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                json.push('"');
            }
            (Some(open), c) if c == open => {
                quote = None;
                json.push('"');
            }
            (Some(_), '\\') => match chars.next() {
                Some('\'') => json.push('\''),
                Some(escaped) => {
                    json.push('\\');
                    json.push(escaped);
                }
                None => json.push('\\'),
            },
            (Some('\''), '"') => json.push_str("\\\""),
            (_, c) => json.push(c),
        }
    }
    json
}

fn binary(op: BinaryOp, left: Expr, right: Expr, position: Position) -> Expr {
    Expr { kind: ExprKind::Binary { op, left: Box::new(left), right: Box::new(right) }, position }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn where_clause(kql: &str) -> ExprKind {
        let query = parse(&format!("T | where {kql}")).unwrap();
        let OperatorKind::Where(expr) = &query.body.operators[0].kind else { panic!("a where") };
        expr.kind.clone()
    }

    #[test]
    fn binds_and_tighter_than_or_and_comparisons_tighter_than_and() {
        let ExprKind::Binary { op: BinaryOp::Or, right, .. } = where_clause("A == 1 or B == 2 and C has 'x'") else {
            panic!("an or");
        };
        let ExprKind::Binary { op: BinaryOp::And, right, .. } = right.kind else { panic!("an and") };
        assert!(matches!(
            right.kind,
            ExprKind::Binary {
                op: BinaryOp::Text(TextOp { kind: TextOpKind::Has, case_sensitive: false, negated: false }),
                ..
            }
        ));
        assert!(matches!(
            where_clause("A + 1 * 2 > 3"),
            ExprKind::Binary { op: BinaryOp::Greater, left, .. }
                if matches!(left.kind, ExprKind::Binary { op: BinaryOp::Add, .. })
        ));
    }

    #[test]
    fn reads_paths_lists_and_ranges() {
        let ExprKind::Binary { left, .. } = where_clause(r#"R.ObjectRef["name"][0] == 1"#) else { panic!() };
        let ExprKind::Index { base, index: 0 } = left.kind else { panic!("an index") };
        assert!(matches!(base.kind, ExprKind::Member { key, .. } if key == "name"));
        assert!(
            matches!(where_clause("A !in~ ('x', 'y')"), ExprKind::List { op: ListOp::In { negated: true, case_sensitive: false }, items, .. } if items.len() == 2)
        );
        assert!(matches!(where_clause("A between (1 .. 10)"), ExprKind::Between { negated: false, .. }));
        assert!(matches!(where_clause("A matches regex 'x+'"), ExprKind::Binary { op: BinaryOp::MatchesRegex, .. }));
    }

    #[test]
    fn reads_lets_sorts_and_joins() {
        let query = parse(
            "let n = 5; let recent = T | take 1;\nrecent | sort by A asc, B | join kind=leftanti (U) on $left.A == $right.B, C",
        )
        .unwrap();
        assert!(matches!(query.lets[0].value, LetValue::Scalar(Expr { kind: ExprKind::Long(5), .. })));
        assert!(matches!(query.lets[1].value, LetValue::Tabular(_)));
        let OperatorKind::Sort(keys) = &query.body.operators[0].kind else { panic!("a sort") };
        assert_eq!(
            keys.iter().map(|k| (k.descending, k.nulls_first)).collect::<Vec<_>>(),
            [(false, true), (true, false)]
        );
        let OperatorKind::Join { kind: JoinKind::LeftAnti, on, .. } = &query.body.operators[1].kind else {
            panic!("a join");
        };
        assert_eq!(
            on.iter().map(|k| (k.left.text.as_str(), k.right.text.as_str())).collect::<Vec<_>>(),
            [("A", "B"), ("C", "C")]
        );
    }

    #[test]
    fn reads_dynamic_literals_with_either_quote() {
        let ExprKind::List { items, .. } = where_clause(r#"A in (dynamic(['a"b', "c'd", 'e\'f']))"#) else { panic!() };
        let ExprKind::Dynamic(value) = &items[0].kind else { panic!("a dynamic literal") };
        assert_eq!(value, &serde_json::json!(["a\"b", "c'd", "e'f"]));
    }

    #[test]
    fn names_an_unknown_operator_and_where_it_is() {
        let error = parse("T\n| where A == 1\n  | frobnicate").unwrap_err();
        assert!(
            error.to_string().starts_with("3:5: unknown tabular operator `frobnicate`; supported: where, "),
            "{error}"
        );
        let error = parse("T | where (A == 1").unwrap_err();
        assert_eq!(error.to_string(), "1:18: expected `)`, found the end of the query");
    }
}
