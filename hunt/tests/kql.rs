use datafusion::prelude::*;
use riposte_hunt::schema::Table;
use datafusion::datasource::MemTable;

#[tokio::test]
async fn scratch() {
    let ctx = SessionContext::new_with_config(SessionConfig::new().set_bool("datafusion.sql_parser.enable_ident_normalization", false));
    for t in [Table::CloudProcessEvents, Table::CloudAuditEvents] {
        let schema = t.schema();
        let batch = datafusion::arrow::record_batch::RecordBatch::new_empty(schema.clone());
        ctx.register_table(datafusion::common::TableReference::bare(t.name()), std::sync::Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap())).unwrap();
    }
    let queries = [
        "SELECT INTERVAL '1' HOUR AS a, INTERVAL '1.5' SECOND AS b, INTERVAL '2' DAY AS c, INTERVAL '100 milliseconds' AS d",
        "SELECT now() - INTERVAL '1' HOUR AS x",
        "SELECT TIMESTAMP '2026-12-01T10:00:00.000000Z' AS t, arrow_typeof(TIMESTAMP '2026-12-01T10:00:00Z') AS ty",
        "SELECT count(*) FROM \"CloudProcessEvents\" WHERE \"Timestamp\" > TIMESTAMP '2026-12-01T10:00:00Z'",
        "SELECT count(*) FROM \"CloudProcessEvents\" WHERE \"Timestamp\" > now() - INTERVAL '1' HOUR",
        "SELECT date_bin(INTERVAL '1' HOUR, \"Timestamp\", TIMESTAMP '1970-01-01T00:00:00Z') AS \"Timestamp\", count(*) FROM \"CloudProcessEvents\" GROUP BY date_bin(INTERVAL '1' HOUR, \"Timestamp\", TIMESTAMP '1970-01-01T00:00:00Z')",
        "SELECT arrow_typeof(date_bin(INTERVAL '1' HOUR, TIMESTAMP '2026-12-01T10:20:00Z', TIMESTAMP '1970-01-01T00:00:00Z'))",
        "SELECT a, unnest(b) AS c FROM (SELECT 1 AS a, make_array('x','y') AS b UNION ALL SELECT 2, CAST(NULL AS VARCHAR[]) UNION ALL SELECT 3, CAST(make_array() AS VARCHAR[])) s",
        "SELECT s.a, t.c FROM (SELECT 1 AS a, make_array('x','y') AS b) s CROSS JOIN UNNEST(s.b) AS t(c)",
        "SELECT regexp_like('Bash -c', '(?i)(^|[^0-9A-Za-z])bash($|[^0-9A-Za-z])') AS a, strpos('abc','c') AS b, starts_with('abc','a') AS c, ends_with('abc', 'c') AS d, reverse('abc') AS e",
        "SELECT \"ProcessName\" FROM \"CloudProcessEvents\" AS l WHERE EXISTS (SELECT 1 FROM \"CloudAuditEvents\" AS r WHERE l.\"NodeName\" = r.\"UserName\")",
        "SELECT \"ProcessName\", row_number() OVER (PARTITION BY \"NodeName\" ORDER BY \"Timestamp\" DESC NULLS LAST) AS rn FROM \"CloudProcessEvents\"",
        "SELECT array_agg(DISTINCT \"ProcessName\") FILTER (WHERE \"ProcessName\" IS NOT NULL) AS s, count(CASE WHEN \"ProcessId\" > 1 THEN 1 END) AS c FROM \"CloudProcessEvents\"",
        "SELECT TRY_CAST('12' AS BIGINT) AS a, TRY_CAST('x' AS BIGINT) AS b, TRY_CAST('true' AS BOOLEAN) AS c, TRY_CAST('1.5' AS DOUBLE) AS d",
        "SELECT date_trunc('day', \"Timestamp\") FROM \"CloudProcessEvents\"",
        "SELECT arrow_typeof(date_trunc('day', TIMESTAMP '2026-12-01T10:20:00Z'))",
        "SELECT concat('a', NULL, 'b') AS a, array_to_string(make_array('a','b'), ' ') AS b, array_has(make_array('a','b'), 'a') AS c, cardinality(make_array('a')) AS d, length('héllo') AS e",
        "SELECT 'x' LIKE '%x' ESCAPE '\\' AS a",
        "SELECT CAST(1.5 AS VARCHAR) AS a, CAST(TIMESTAMP '2026-12-01T10:20:00Z' AS VARCHAR) AS b",
        "SELECT 7 / 2 AS a, floor(7 / CAST(2 AS DOUBLE)) * 2 AS b",
        "SELECT x FROM (SELECT 1 AS x) ORDER BY x DESC NULLS LAST LIMIT 1",
        "SELECT \"Timestamp\" - INTERVAL '1.5' SECOND FROM \"CloudProcessEvents\"",
        "SELECT CASE WHEN true THEN 'a' ELSE 'b' END AS c",
        "SELECT \"ProcessName\" IN ('a','b') FROM \"CloudProcessEvents\"",
        "SELECT CAST(NULL AS VARCHAR) AS n, substr('abcdef', 2, 3) AS s",
        "SELECT arrow_typeof(\"Timestamp\") AS a, arrow_typeof(now()) AS b FROM (SELECT * FROM \"CloudProcessEvents\" UNION ALL SELECT * FROM \"CloudProcessEvents\")",
        "SELECT arrow_typeof(now()) AS a, arrow_typeof(now() - INTERVAL '1' HOUR) AS b",
    ];
    for q in queries {
        match ctx.sql(q).await {
            Ok(df) => match df.collect().await {
                Ok(b) => println!("OK {q}\n{}", datafusion::arrow::util::pretty::pretty_format_batches(&b).unwrap()),
                Err(e) => println!("EXEC ERR {q}\n  {e}"),
            },
            Err(e) => println!("PLAN ERR {q}\n  {e}"),
        }
    }
}
