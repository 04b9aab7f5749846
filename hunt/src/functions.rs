//! The JSON functions hunts need, for DataFusion, which has none built in.
//!
//! `json_extract_scalar`, `json_extract` and `json_array_length` take Trino's names and
//! semantics, so one SQL text runs on both engines: the JSON is text (a `varchar`), the path is
//! Trino's JSONPath subset (`$`, `.key`, `["key"]`, `[0]`), invalid JSON gives NULL, an invalid
//! path is an error. One difference remains: Trino's `json_extract` returns its `JSON` type,
//! which SQL meant for both engines wraps in `json_format(...)`; here it returns the JSON text
//! directly (as `json_format` would).
//!
//! `json_array_elements` is DataFusion's way to expand a JSON array into rows (with `unnest`),
//! where Trino writes `UNNEST(CAST(json_parse(x) AS ARRAY<JSON>))`.

use std::borrow::Cow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int64Array, ListBuilder, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DataFusionError, Result, exec_err, plan_err};
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use serde_json::Value;

/// Registers the functions with `ctx`.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::from(JsonExtract::new(Extracted::Scalar)));
    ctx.register_udf(ScalarUDF::from(JsonExtract::new(Extracted::Json)));
    ctx.register_udf(ScalarUDF::from(JsonArray::new(ArrayResult::Length)));
    ctx.register_udf(ScalarUDF::from(JsonArray::new(ArrayResult::Elements)));
}

/// What `json_extract*` returns of the value a path selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Extracted {
    /// `json_extract_scalar`: a string's text, a number's or boolean's JSON text; NULL for null,
    /// an object or an array.
    Scalar,
    /// `json_extract`: the value's JSON text, whatever it is.
    Json,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonExtract {
    extracted: Extracted,
    signature: Signature,
}

impl JsonExtract {
    fn new(extracted: Extracted) -> Self {
        JsonExtract { extracted, signature: Signature::string(2, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for JsonExtract {
    fn name(&self) -> &str {
        match self.extracted {
            Extracted::Scalar => "json_extract_scalar",
            Extracted::Json => "json_extract",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    /// Checks a literal path while planning, so that a bad one fails before any data is read.
    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        if let Some(Expr::Literal(value, _)) = args.get(1)
            && let Some(Some(path)) = value.try_as_str()
            && let Err(reason) = JsonPath::parse(path)
        {
            return plan_err!("{}: invalid JSON path {path:?}: {reason}", self.name());
        }
        Ok(ExprSimplifyResult::Original(args))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [documents, paths] = args.args.as_slice() else {
            return exec_err!("{} takes a JSON text and a path", self.name());
        };
        let documents = strings(documents, args.number_rows)?;
        let mut extracted = StringBuilder::with_capacity(documents.len(), 0);
        let paths = Paths::new(paths, args.number_rows, self.name())?;
        for row in 0..documents.len() {
            let value = match (documents.is_valid(row).then(|| documents.value(row)), paths.at(row)?) {
                (Some(document), Some(path)) => parse(document).and_then(|root| self.extract(path.select(&root))),
                _ => None,
            };
            extracted.append_option(value);
        }
        Ok(ColumnarValue::Array(Arc::new(extracted.finish())))
    }
}

impl JsonExtract {
    fn extract(&self, selected: Option<&Value>) -> Option<String> {
        match (self.extracted, selected?) {
            (Extracted::Scalar, Value::String(text)) => Some(text.clone()),
            (Extracted::Scalar, scalar @ (Value::Number(_) | Value::Bool(_))) => Some(scalar.to_string()),
            (Extracted::Scalar, Value::Null | Value::Array(_) | Value::Object(_)) => None,
            (Extracted::Json, value) => Some(value.to_string()),
        }
    }
}

/// What `json_array_*` returns of a JSON array; NULL when the text is not one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ArrayResult {
    /// `json_array_length`: how many elements.
    Length,
    /// `json_array_elements`: each element's JSON text, a `List<Utf8>` for `unnest`.
    Elements,
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct JsonArray {
    result: ArrayResult,
    signature: Signature,
}

impl JsonArray {
    fn new(result: ArrayResult) -> Self {
        JsonArray { result, signature: Signature::string(1, Volatility::Immutable) }
    }
}

impl ScalarUDFImpl for JsonArray {
    fn name(&self) -> &str {
        match self.result {
            ArrayResult::Length => "json_array_length",
            ArrayResult::Elements => "json_array_elements",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.result {
            ArrayResult::Length => DataType::Int64,
            ArrayResult::Elements => DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [documents] = args.args.as_slice() else {
            return exec_err!("{} takes a JSON text", self.name());
        };
        let documents = strings(documents, args.number_rows)?;
        let arrays = (0..documents.len()).map(|row| {
            documents.is_valid(row).then(|| parse(documents.value(row))).flatten().and_then(|value| match value {
                Value::Array(elements) => Some(elements),
                _ => None,
            })
        });
        let result: ArrayRef = match self.result {
            ArrayResult::Length => {
                Arc::new(arrays.map(|elements| elements.map(|e| e.len() as i64)).collect::<Int64Array>())
            }
            ArrayResult::Elements => {
                let mut lists = ListBuilder::new(StringBuilder::new());
                for elements in arrays {
                    match elements {
                        Some(elements) => {
                            for element in elements {
                                lists.values().append_value(element.to_string());
                            }
                            lists.append(true);
                        }
                        None => lists.append_null(),
                    }
                }
                Arc::new(lists.finish())
            }
        };
        Ok(ColumnarValue::Array(result))
    }
}

/// A JSON text's value; None when it is not JSON (Trino's functions give NULL then).
fn parse(document: &str) -> Option<Value> {
    serde_json::from_str(document).ok()
}

/// An argument as a `Utf8` array of `rows` rows, whichever string type the engine chose
/// (Parquet strings arrive as `Utf8View`).
fn strings(value: &ColumnarValue, rows: usize) -> Result<StringArray> {
    let array = cast(&value.to_array(rows)?, &DataType::Utf8)?;
    Ok(array.as_any().downcast_ref::<StringArray>().expect("cast to Utf8 gives a StringArray").clone())
}

/// The path argument: parsed once when it is a literal (as it nearly always is), else per row.
enum Paths {
    Literal(Option<JsonPath>),
    PerRow { paths: StringArray, function: String },
}

impl Paths {
    fn new(value: &ColumnarValue, rows: usize, function: &str) -> Result<Self> {
        Ok(match value {
            ColumnarValue::Scalar(scalar) => Paths::Literal(match scalar.try_as_str() {
                Some(Some(path)) => {
                    Some(JsonPath::parse(path).map_err(|reason| invalid_path(function, path, &reason))?)
                }
                Some(None) => None,
                None if scalar.is_null() => None,
                None => return exec_err!("{function}: the path must be a string"),
            }),
            ColumnarValue::Array(_) => Paths::PerRow { paths: strings(value, rows)?, function: function.to_owned() },
        })
    }

    fn at(&self, row: usize) -> Result<Option<Cow<'_, JsonPath>>> {
        Ok(match self {
            Paths::Literal(path) => path.as_ref().map(Cow::Borrowed),
            Paths::PerRow { paths, function } => match paths.is_valid(row) {
                true => {
                    let path = paths.value(row);
                    Some(Cow::Owned(JsonPath::parse(path).map_err(|reason| invalid_path(function, path, &reason))?))
                }
                false => None,
            },
        })
    }
}

fn invalid_path(function: &str, path: &str, reason: &str) -> DataFusionError {
    DataFusionError::Execution(format!("{function}: invalid JSON path {path:?}: {reason}"))
}

/// Trino's JSONPath subset for `json_extract`: `$` then any of `.key` (letters, digits, `_`,
/// `:`), `[key]` (letters, digits, `_`) and `["key"]` (`\"` and `\\` escaped). Each step names an
/// object's key, or an array's index when the value is an array, as in Trino.
#[derive(Clone, Debug, PartialEq, Eq)]
struct JsonPath(Vec<String>);

impl JsonPath {
    fn parse(path: &str) -> Result<JsonPath, String> {
        let mut chars = path.chars().peekable();
        if chars.next() != Some('$') {
            return Err("a path starts with `$`".into());
        }
        let unquoted = |c: char| c == '_' || c.is_alphanumeric();
        let mut steps = Vec::new();
        while let Some(c) = chars.next() {
            let step: String = match c {
                '.' => std::iter::from_fn(|| chars.next_if(|&c| c == ':' || unquoted(c))).collect(),
                '[' if chars.next_if_eq(&'"').is_some() => {
                    let mut key = String::new();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some(escaped @ ('"' | '\\')) => key.push(escaped),
                                _ => return Err("only `\\\"` and `\\\\` are escapes in a quoted key".into()),
                            },
                            Some(c) => key.push(c),
                            None => return Err("a quoted key is not closed".into()),
                        }
                    }
                    if chars.next() != Some(']') {
                        return Err("`]` must follow a quoted key".into());
                    }
                    steps.push(key);
                    continue;
                }
                '[' => {
                    let key: String = std::iter::from_fn(|| chars.next_if(|&c| unquoted(c))).collect();
                    if chars.next() != Some(']') {
                        return Err("`[` takes an index, a key or a quoted key, then `]`".into());
                    }
                    key
                }
                other => return Err(format!("unexpected {other:?}; steps are `.key`, `[0]` and `[\"key\"]`")),
            };
            if step.is_empty() {
                return Err("a step names nothing".into());
            }
            steps.push(step);
        }
        Ok(JsonPath(steps))
    }

    fn select<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        self.0.iter().try_fold(root, |value, step| match value {
            Value::Object(members) => members.get(step),
            Value::Array(elements) => step.parse::<usize>().ok().and_then(|index| elements.get(index)),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::Schema;
    use datafusion::datasource::MemTable;

    use super::*;

    const EVENT: &str = r#"{"objectRef":{"name":"web","resource":"pods"},"responseStatus":{"code":201},
        "annotations":{"authorization.k8s.io/decision":"allow","quote\"d":"q"},"flag":true,"none":null,
        "spec":{"containers":[{"name":"a"},{"name":"b"}],"args":["x",1]}}"#;

    /// Runs `SELECT <expression> AS v FROM t` over one `doc` column holding `documents`.
    async fn select(expression: &str, documents: Vec<Option<&str>>) -> Result<ArrayRef> {
        let ctx = SessionContext::new();
        register(&ctx);
        let schema = Arc::new(Schema::new(vec![Field::new("doc", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(documents))])?;
        ctx.register_table("t", Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))?;
        let batches = ctx.sql(&format!("SELECT {expression} AS v FROM t")).await?.collect().await?;
        Ok(batches[0].column(0).clone())
    }

    fn texts(array: &ArrayRef) -> Vec<Option<String>> {
        let array = cast(array, &DataType::Utf8).unwrap();
        array.as_string::<i32>().iter().map(|v| v.map(str::to_owned)).collect()
    }

    #[tokio::test]
    async fn json_extract_scalar_returns_scalars_as_text_and_null_for_the_rest() {
        let paths = [
            ("$.objectRef.resource", Some("pods")),
            ("$.responseStatus.code", Some("201")),
            ("$.flag", Some("true")),
            ("$.none", None),
            ("$.objectRef", None),
            ("$.missing.deeper", None),
            (r#"$.annotations["authorization.k8s.io/decision"]"#, Some("allow")),
            (r#"$.annotations["quote\"d"]"#, Some("q")),
            ("$.spec.containers[1].name", Some("b")),
            ("$.spec.args[1]", Some("1")),
            ("$.spec.containers[9]", None),
        ];
        for (path, expected) in paths {
            let result =
                select(&format!("json_extract_scalar(doc, '{}')", path.replace('\'', "''")), vec![Some(EVENT)])
                    .await
                    .unwrap();
            assert_eq!(texts(&result), vec![expected.map(str::to_owned)], "{path}");
        }
    }

    #[tokio::test]
    async fn json_extract_returns_json_text() {
        let result = select("json_extract(doc, '$.objectRef')", vec![Some(EVENT), Some("not json"), None]).await;
        assert_eq!(texts(&result.unwrap()), vec![Some(r#"{"name":"web","resource":"pods"}"#.to_owned()), None, None]);
        let result = select("json_extract(doc, '$.objectRef.name')", vec![Some(EVENT)]).await.unwrap();
        assert_eq!(texts(&result), vec![Some(r#""web""#.to_owned())]);
        let result = select("json_extract_scalar(json_extract(doc, '$.objectRef.name'), '$')", vec![Some(EVENT)]);
        assert_eq!(texts(&result.await.unwrap()), vec![Some("web".to_owned())]);
    }

    #[tokio::test]
    async fn json_array_functions_expand_and_count_arrays_only() {
        let documents = vec![Some(r#"[{"a":1},"x",2]"#), Some("[]"), Some(r#"{"a":1}"#), Some("["), None];
        let lengths = select("json_array_length(doc)", documents.clone()).await.unwrap();
        let lengths: Vec<_> = lengths.as_primitive::<datafusion::arrow::datatypes::Int64Type>().iter().collect();
        assert_eq!(lengths, vec![Some(3), Some(0), None, None, None]);
        let elements = select("unnest(json_array_elements(doc))", documents).await.unwrap();
        assert_eq!(texts(&elements), [r#"{"a":1}"#, r#""x""#, "2"].map(|e| Some(e.to_owned())));
    }

    #[tokio::test]
    async fn a_bad_path_fails_while_planning_and_naming_the_function() {
        for path in ["objectRef", "$.", "$[\"open", "$.a b", "$[x"] {
            let error = select(&format!("json_extract(doc, '{path}')"), vec![Some(EVENT)]).await.unwrap_err();
            let message = error.to_string();
            assert!(message.contains("json_extract: invalid JSON path"), "{path}: {message}");
        }
    }

    #[tokio::test]
    async fn a_path_from_a_column_is_parsed_per_row() {
        let result =
            select("json_extract_scalar('{\"a\":{\"b\":\"c\"}}', doc)", vec![Some("$.a.b"), None, Some("$.z")]);
        assert_eq!(texts(&result.await.unwrap()), vec![Some("c".to_owned()), None, None]);
        let error = select("json_extract_scalar('{}', doc)", vec![Some("a.b")]).await.unwrap_err();
        assert!(error.to_string().contains("invalid JSON path \"a.b\""), "{error}");
    }
}
