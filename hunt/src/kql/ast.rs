//! The parsed query.

use super::Position;

/// `let` statements, then the tabular expression they serve.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Query {
    pub lets: Vec<Let>,
    pub body: Pipeline,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Let {
    pub name: Name,
    pub value: LetValue,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum LetValue {
    /// `let x = expr;`. A bare name may still turn out to be a table: the compiler decides.
    Scalar(Expr),
    /// `let t = T | ...;`
    Tabular(Pipeline),
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Name {
    pub text: String,
    pub position: Position,
}

/// A table (or tabular `let`) and the operators applied to it in turn.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Pipeline {
    pub source: Name,
    pub operators: Vec<Operator>,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Operator {
    pub kind: OperatorKind,
    pub position: Position,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum OperatorKind {
    Where(Expr),
    Project(Vec<Assignment>),
    /// Names, each possibly with `*` wildcards.
    ProjectAway(Vec<Name>),
    /// `(new, old)` pairs.
    ProjectRename(Vec<(Name, Name)>),
    Extend(Vec<Assignment>),
    Summarize {
        aggregates: Vec<Assignment>,
        by: Vec<Assignment>,
    },
    Sort(Vec<SortKey>),
    Top {
        count: u64,
        key: SortKey,
    },
    Take(u64),
    /// The columns, or all of them (`distinct *`) when empty.
    Distinct(Vec<Name>),
    Count,
    Join {
        kind: JoinKind,
        right: Pipeline,
        on: Vec<JoinKey>,
    },
    MvExpand {
        name: Option<Name>,
        expr: Expr,
    },
}

/// `Name = expr`, or a bare `expr` named after it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Assignment {
    pub name: Option<Name>,
    pub expr: Expr,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct SortKey {
    pub expr: Expr,
    pub descending: bool,
    pub nulls_first: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum JoinKind {
    /// KQL's default: an inner join that keeps one left row per key.
    InnerUnique,
    Inner,
    LeftOuter,
    RightOuter,
    FullOuter,
    LeftSemi,
    LeftAnti,
    RightSemi,
    RightAnti,
}

/// `on Key` (the same column both sides) or `on $left.A == $right.B`.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct JoinKey {
    pub left: Name,
    pub right: Name,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) struct Expr {
    pub kind: ExprKind,
    pub position: Position,
}

#[derive(Clone, Debug, PartialEq)]
pub(super) enum ExprKind {
    /// A column, or a scalar `let`.
    Name(String),
    String(String),
    Long(i64),
    Real(f64),
    Bool(bool),
    /// Microseconds.
    Timespan(i64),
    /// Microseconds since the epoch, UTC.
    DateTime(i64),
    Dynamic(serde_json::Value),
    /// `*`, as in `arg_max(Timestamp, *)`.
    Star,
    /// `base.key` or `base["key"]`.
    Member {
        base: Box<Expr>,
        key: String,
    },
    /// `base[0]`.
    Index {
        base: Box<Expr>,
        index: i64,
    },
    Call {
        name: String,
        args: Vec<Expr>,
    },
    Negate(Box<Expr>),
    Binary {
        op: BinaryOp,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `in`, `!in`, `in~`, `!in~`, `has_any`, `has_all`: an expression against a list.
    List {
        op: ListOp,
        expr: Box<Expr>,
        items: Vec<Expr>,
    },
    Between {
        expr: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BinaryOp {
    Or,
    And,
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    /// `=~`
    EqualIgnoringCase,
    /// `!~`
    NotEqualIgnoringCase,
    Add,
    Subtract,
    Multiply,
    Divide,
    Modulo,
    /// `has`, `contains`, `startswith`, `endswith` and their `_cs` and `!` forms.
    Text(TextOp),
    /// `matches regex`
    MatchesRegex,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct TextOp {
    pub kind: TextOpKind,
    pub case_sensitive: bool,
    pub negated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TextOpKind {
    /// A whole term.
    Has,
    Contains,
    StartsWith,
    EndsWith,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ListOp {
    In { negated: bool, case_sensitive: bool },
    HasAny,
    HasAll,
}
