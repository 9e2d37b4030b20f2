//! `EXPLAIN` of a captured statement, on PostgreSQL: never `ANALYZE` (the statement is planned,
//! not run), only for a single SELECT, inside a read-only transaction that is rolled back,
//! outside any recorded scope ([`sql_observe::unobserved`]) so that it never shows up as a
//! statement of a request. The statement's stored values are bound as its parameters; a value
//! the capture redacted (`'***'`) is never sent: its placeholder becomes a `NULL` literal (a
//! typed NULL parameter would need the type the redaction dropped), and the answer says which
//! ones were.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait, Value};
use serde::Serialize;

use crate::{StatementView, routes::Problem};

/// The plan, as PostgreSQL's text format prints it.
#[derive(Debug, Serialize)]
pub(crate) struct Plan {
    pub(crate) sql: String,
    /// One line of the plan per entry.
    pub(crate) plan: Vec<String>,
    /// The positions (from 1) of the parameters bound as NULL because their values were
    /// redacted: the plan is that of the statement with NULL there, not of the real one.
    pub(crate) bound_as_null: Vec<usize>,
}

pub(crate) async fn explain(
    db: &DatabaseConnection,
    statement: &StatementView,
) -> Result<Plan, Problem> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Err(Problem::unprocessable(
            "EXPLAIN is offered on PostgreSQL only.",
        ));
    }
    if !is_single_select(&statement.sql) {
        return Err(Problem::unprocessable(
            "EXPLAIN is offered for a single SELECT only; this statement is not one.",
        ));
    }
    let bound_as_null: Vec<usize> = statement
        .values
        .iter()
        .enumerate()
        .filter(|(_, value)| value.is_none())
        .map(|(index, _)| index + 1)
        .collect();
    let values: Vec<Value> = statement.values.iter().flatten().cloned().collect();
    let redacted: Vec<bool> = statement.values.iter().map(Option::is_none).collect();
    let sql = format!(
        "EXPLAIN {}",
        null_for_redacted(statement.sql.trim().trim_end_matches(';'), &redacted)
    );
    let run = async {
        let transaction = db.begin().await?;
        transaction
            .execute_unprepared("SET TRANSACTION READ ONLY")
            .await?;
        let rows = transaction
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                &sql,
                values,
            ))
            .await?;
        transaction.rollback().await?;
        rows.iter()
            .map(|row| row.try_get::<String>("", "QUERY PLAN"))
            .collect::<Result<Vec<_>, _>>()
    };
    let plan = sql_observe::unobserved(run).await.map_err(|error| {
        Problem::unprocessable(format!("PostgreSQL refused the EXPLAIN: {error}"))
    })?;
    Ok(Plan {
        sql,
        plan,
        bound_as_null,
    })
}

/// `sql` (PostgreSQL, `$n` placeholders) with each placeholder whose value is `redacted` written
/// as `NULL` and the others renumbered in order, so that only the kept values are bound.
pub(crate) fn null_for_redacted(sql: &str, redacted: &[bool]) -> String {
    let renumbered: Vec<Option<usize>> = redacted
        .iter()
        .scan(0, |kept, &is_redacted| {
            Some((!is_redacted).then(|| {
                *kept += 1;
                *kept
            }))
        })
        .collect();
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match quote {
            Some(open) => {
                if c == open {
                    quote = None;
                }
                out.push(c);
            }
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                out.push(c);
            }
            None if c == '$' => {
                let mut digits = String::new();
                while let Some((_, d)) = chars.peek().copied().filter(|(_, d)| d.is_ascii_digit()) {
                    digits.push(d);
                    chars.next();
                }
                let position = digits.parse::<usize>().ok().filter(|n| *n >= 1);
                match position.and_then(|n| renumbered.get(n - 1)) {
                    Some(Some(new)) => out.push_str(&format!("${new}")),
                    Some(None) => out.push_str("NULL"),
                    None => {
                        out.push('$');
                        out.push_str(&digits);
                    }
                }
            }
            None => out.push(c),
        }
    }
    out
}

/// Whether `sql` is one SELECT statement: it starts with `SELECT` and has no `;` outside quotes
/// but at its very end. A `WITH` is refused (it may hold a data-modifying statement).
pub(crate) fn is_single_select(sql: &str) -> bool {
    let sql = sql.trim();
    let sql = sql.strip_suffix(';').unwrap_or(sql).trim_end();
    let starts_with_select = sql
        .get(..6)
        .is_some_and(|head| head.eq_ignore_ascii_case("select"))
        && sql[6..]
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c == '(' || c == '*' || c == '"');
    if !starts_with_select {
        return false;
    }
    let mut quote: Option<char> = None;
    for c in sql.chars() {
        match quote {
            Some(open) if c == open => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None if c == ';' => return false,
            None => {}
        }
    }
    quote.is_none()
}

#[cfg(test)]
mod tests {
    use super::{is_single_select, null_for_redacted};

    #[test]
    fn redacted_placeholders_become_null_and_the_others_are_renumbered() {
        let sql = "SELECT * FROM t WHERE a = $1 AND b = '$2' AND c = $2 LIMIT $3";
        assert_eq!(
            null_for_redacted(sql, &[true, false, true]),
            "SELECT * FROM t WHERE a = NULL AND b = '$2' AND c = $1 LIMIT NULL"
        );
        assert_eq!(null_for_redacted(sql, &[false, false, false]), sql);
    }

    #[test]
    fn only_a_single_select_is_explained() {
        for sql in [
            "SELECT 1",
            "select \"id\" FROM \"user\" WHERE \"id\" = $1",
            "SELECT ';' AS semicolon;",
            "SELECT * FROM t",
        ] {
            assert!(is_single_select(sql), "{sql}");
        }
        for sql in [
            "UPDATE \"account\" SET balance = 0",
            "DELETE FROM t",
            "INSERT INTO t VALUES (1)",
            "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d",
            "SELECT 1; DELETE FROM t",
            "SELECTED",
            "SELECT 'unterminated",
            "",
        ] {
            assert!(!is_single_select(sql), "{sql}");
        }
    }
}
