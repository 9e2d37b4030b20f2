//! Reading the placeholder SQL SeaORM sends: a small tokenizer that yields the statement's
//! fingerprint (placeholders normalised, `IN (…)` lists and multi-row `VALUES` collapsed), how
//! many rows or keys it carries at once, and which column each placeholder is bound to — enough
//! to redact secret values and to tell a page of a paginated query from an N+1.
//!
//! This is not a SQL parser. It understands the shapes sea-query generates (`"t"."c" = $1`,
//! `"t"."c" IN ($1, $2)`, `("t"."c") IN (($1), ($2))`, `INSERT INTO "t" ("a", "b") VALUES (…)`,
//! `LIMIT $n OFFSET $m`) and hand-written SQL in the same style; anything else still gets a
//! fingerprint, only without column names for its placeholders.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, LazyLock, PoisonError, RwLock},
};

use sea_orm::{
    DbBackend, Value,
    sea_query::{MysqlQueryBuilder, PostgresQueryBuilder, QueryBuilder, SqliteQueryBuilder},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    /// A bare identifier or keyword.
    Word(&'a str),
    /// A quoted identifier, without its quotes.
    Quoted(&'a str),
    /// A string literal, quotes included.
    Str(&'a str),
    Number(&'a str),
    /// A bind parameter, by its 1-based index.
    Placeholder(usize),
    /// Punctuation and operators: `(`, `)`, `,`, `.`, `=`, `<>`, `::`, …
    Punct(&'a str),
}

impl Token<'_> {
    fn is_word(&self, keyword: &str) -> bool {
        matches!(self, Token::Word(w) if w.eq_ignore_ascii_case(keyword))
    }

    fn is_punct(&self, punct: &str) -> bool {
        matches!(self, Token::Punct(p) if *p == punct)
    }

    fn identifier(&self) -> Option<&str> {
        match self {
            Token::Quoted(name) | Token::Word(name) => Some(name),
            _ => None,
        }
    }
}

const OPERATOR_CHARS: &[u8] = b"<>=!|:+-*/%~&^@#";

fn tokenize(sql: &str, backend: DbBackend) -> Vec<Token<'_>> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    let mut next_question_mark = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            c if c.is_ascii_whitespace() => i += 1,
            b'"' | b'`' => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == c {
                        // A doubled quote is an escaped quote inside the identifier.
                        if bytes.get(i + 1) == Some(&c) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                tokens.push(Token::Quoted(&sql[start + 1..i.min(bytes.len())]));
                i = (i + 1).min(bytes.len());
            }
            b'\'' => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\'' {
                        if bytes.get(i + 1) == Some(&b'\'') {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                tokens.push(Token::Str(&sql[start..i]));
            }
            b'$' if backend == DbBackend::Postgres
                && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) =>
            {
                i += 1;
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                let index = sql[start + 1..i].parse().unwrap_or(0);
                tokens.push(Token::Placeholder(index));
            }
            b'?' if backend != DbBackend::Postgres => {
                next_question_mark += 1;
                tokens.push(Token::Placeholder(next_question_mark));
                i += 1;
            }
            c if c.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
                    i += 1;
                }
                tokens.push(Token::Number(&sql[start..i]));
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                    i += 1;
                }
                tokens.push(Token::Word(&sql[start..i]));
            }
            b'(' | b')' | b',' | b'.' | b';' => {
                i += 1;
                tokens.push(Token::Punct(&sql[start..i]));
            }
            c if OPERATOR_CHARS.contains(&c) => {
                while i < bytes.len() && OPERATOR_CHARS.contains(&bytes[i]) {
                    i += 1;
                }
                tokens.push(Token::Punct(&sql[start..i]));
            }
            _ => {
                let width = sql[i..].chars().next().map_or(1, char::len_utf8);
                i += width;
                tokens.push(Token::Punct(&sql[start..i]));
            }
        }
    }
    tokens
}

/// The index of the `)` that closes the `(` at `open`, or the last token if it is never closed.
fn matching_paren(tokens: &[Token<'_>], open: usize) -> usize {
    let mut depth = 0usize;
    for (offset, token) in tokens[open..].iter().enumerate() {
        if token.is_punct("(") {
            depth += 1;
        } else if token.is_punct(")") {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return open + offset;
            }
        }
    }
    tokens.len().saturating_sub(1)
}

/// What the tokenizer learned about one statement.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SqlShape {
    /// The statement with placeholders as `?`, `IN (…)` lists and multi-row `VALUES` collapsed,
    /// and whitespace normalised: statements that differ only in bound values share it.
    pub fingerprint: String,
    /// The most rows in a `VALUES` list or keys in an `IN` list: above 1, the statement is a
    /// batch (a select-in load or a chunk of a bulk insert), not a per-row query.
    pub batch_size: usize,
    /// For each placeholder (0-based), the columns it is compared with or inserted into.
    pub columns: Vec<BTreeSet<String>>,
    /// Placeholders (0-based) bound to an `OFFSET`: pages of one query differ only there.
    pub offset_params: Vec<usize>,
    /// Placeholders (0-based) compared with `<`, `>`, `<=` or `>=`: a keyset cursor, when the
    /// statement is also ordered and limited.
    pub range_params: Vec<usize>,
    /// The page size: a `LIMIT` bound to a placeholder (0-based) or written as a number.
    pub limit: Option<Limit>,
    /// Whether it has an `ORDER BY`.
    pub ordered: bool,
    /// The table an `INSERT`, `UPDATE` or `DELETE` writes, lowercase.
    pub written_table: Option<String>,
    /// The tables named after `FROM` and `JOIN`, lowercase.
    pub read_tables: Vec<String>,
}

/// How a statement's `LIMIT` is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    Placeholder(usize),
    Literal(u64),
}

impl SqlShape {
    fn bind(&mut self, placeholder: usize, column: Option<&str>) {
        let Some(index) = placeholder.checked_sub(1) else {
            return;
        };
        if self.columns.len() <= index {
            self.columns.resize(index + 1, BTreeSet::new());
        }
        if let Some(column) = column {
            self.columns[index].insert(column.to_owned());
        }
    }
}

/// Appends `piece` to a fingerprint, with a space only where SQL needs one to stay readable.
fn push_piece(out: &mut String, piece: &str) {
    let Some(last) = out.chars().last() else {
        out.push_str(piece);
        return;
    };
    let glued = match piece {
        ")" | "," | "." => true,
        // `COUNT(`, but `IN (`, `VALUES (`, `"t" (`: no space after a function name only.
        "(" => {
            let last_word = out.rsplit([' ', '(', '.', ',']).next().unwrap_or("");
            last == '(' || last == '.' || (last.is_alphanumeric() && !is_keyword(last_word))
        }
        _ => last == '(' || last == '.',
    };
    if !glued {
        out.push(' ');
    }
    out.push_str(piece);
}

fn is_keyword(word: &str) -> bool {
    const KEYWORDS: &[&str] = &[
        "IN", "VALUES", "FROM", "JOIN", "ON", "AND", "OR", "WHERE", "SELECT", "AS", "EXISTS",
        "NOT", "INTO", "SET", "BY", "USING", "WITH", "OVER",
    ];
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

fn token_text(token: &Token<'_>) -> String {
    match token {
        Token::Word(w) | Token::Str(w) | Token::Number(w) | Token::Punct(w) => (*w).to_owned(),
        Token::Quoted(name) => format!("\"{name}\""),
        Token::Placeholder(_) => "?".to_owned(),
    }
}

/// The column an `IN` at `in_index` tests: `"t"."c" IN`, `("t"."c") IN`, `"t"."c" NOT IN`.
fn column_before_in<'a>(tokens: &[Token<'a>], in_index: usize) -> Option<&'a str> {
    let mut at = in_index.checked_sub(1)?;
    if tokens[at].is_word("NOT") {
        at = at.checked_sub(1)?;
    }
    if tokens[at].is_punct(")") {
        at = at.checked_sub(1)?;
    }
    match tokens[at] {
        Token::Quoted(name) => Some(name),
        Token::Word(name) if !is_keyword(name) => Some(name),
        _ => None,
    }
}

/// The column a placeholder at `index` is compared with or assigned to: `col = ?`, `col <> ?`,
/// `col LIKE ?`, `col >= ?`.
fn column_before_operator<'a>(tokens: &[Token<'a>], index: usize) -> Option<&'a str> {
    let operator = tokens.get(index.checked_sub(1)?)?;
    let is_comparison = matches!(operator, Token::Punct(op) if matches!(*op, "=" | "<>" | "!=" | "<" | ">" | "<=" | ">="))
        || operator.is_word("LIKE")
        || operator.is_word("ILIKE");
    if !is_comparison {
        return None;
    }
    match tokens.get(index.checked_sub(2)?)? {
        Token::Quoted(name) => Some(name),
        Token::Word(name) if !is_keyword(name) => Some(name),
        _ => None,
    }
}

/// The table named at `at`: `"t"`, `t` or `"schema"."t"` (the last part), lowercase.
fn table_at(tokens: &[Token<'_>], mut at: usize) -> Option<String> {
    let mut name = tokens.get(at)?.identifier()?;
    if is_keyword(name) {
        return None;
    }
    while tokens.get(at + 1).is_some_and(|t| t.is_punct(".")) {
        at += 2;
        name = tokens.get(at)?.identifier()?;
    }
    Some(name.to_ascii_lowercase())
}

fn is_range_operator(token: &Token<'_>) -> bool {
    matches!(token, Token::Punct(op) if matches!(*op, "<" | ">" | "<=" | ">="))
}

/// Distinct statement texts whose shapes are kept: an application sends a few hundred at most
/// (its queries are prepared statements); past this, the cache starts again.
const CACHED_SHAPES: usize = 4096;

type ShapeCache = HashMap<Box<str>, Arc<SqlShape>>;

/// One cache per backend (placeholders differ): PostgreSQL, MySQL, SQLite.
static SHAPES: LazyLock<[RwLock<ShapeCache>; 3]> = LazyLock::new(Default::default);

/// [`shape`], read once per distinct statement text: the same SQL always has the same shape,
/// and tokenizing it is most of what the capture costs per statement. A hit allocates nothing.
pub(crate) fn cached_shape(sql: &str, backend: DbBackend) -> Arc<SqlShape> {
    let cache = &SHAPES[match backend {
        DbBackend::Postgres => 0,
        DbBackend::MySql => 1,
        _ => 2,
    }];
    if let Some(known) = cache
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(sql)
    {
        return Arc::clone(known);
    }
    let fresh = Arc::new(shape(sql, backend));
    let mut cache = cache.write().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= CACHED_SHAPES {
        cache.clear();
    }
    cache.insert(sql.into(), Arc::clone(&fresh));
    fresh
}

/// Reads `sql` as `backend` writes it.
pub(crate) fn shape(sql: &str, backend: DbBackend) -> SqlShape {
    let tokens = tokenize(sql, backend);
    let mut shape = SqlShape::default();
    let mut insert_columns: Vec<&str> = Vec::new();
    // The `)` that ends a `(a, b) > ($1, $2)` row comparison, while inside one.
    let mut row_comparison_until: Option<usize> = None;
    let mut i = 0;
    while i < tokens.len() {
        let token = tokens[i];
        if row_comparison_until.is_some_and(|end| i > end) {
            row_comparison_until = None;
        }
        if i == 0 || tokens[i - 1].is_punct("(") || tokens[i - 1].is_punct(";") {
            let written = if token.is_word("INSERT") || token.is_word("REPLACE") {
                tokens[i + 1..]
                    .iter()
                    .position(|t| t.is_word("INTO"))
                    .and_then(|into| table_at(&tokens, i + 2 + into))
            } else if token.is_word("UPDATE") {
                table_at(&tokens, i + 1)
            } else if token.is_word("DELETE")
                && tokens.get(i + 1).is_some_and(|t| t.is_word("FROM"))
            {
                table_at(&tokens, i + 2)
            } else {
                None
            };
            if written.is_some() && shape.written_table.is_none() {
                shape.written_table = written;
            }
        }
        if (token.is_word("FROM") || token.is_word("JOIN"))
            && let Some(table) = table_at(&tokens, i + 1)
            && !shape.read_tables.contains(&table)
        {
            shape.read_tables.push(table);
        }
        if token.is_word("ORDER") && tokens.get(i + 1).is_some_and(|t| t.is_word("BY")) {
            shape.ordered = true;
        }
        if token.is_word("LIMIT") {
            match tokens.get(i + 1) {
                Some(Token::Placeholder(n)) => {
                    shape.limit = n.checked_sub(1).map(Limit::Placeholder);
                }
                Some(Token::Number(n)) => shape.limit = n.parse().ok().map(Limit::Literal),
                _ => {}
            }
        }
        if is_range_operator(&token) && tokens.get(i + 1).is_some_and(|t| t.is_punct("(")) {
            row_comparison_until = Some(matching_paren(&tokens, i + 1));
        }
        // `INSERT INTO "t" ("a", "b")`: remember the column list for the VALUES that follow.
        if token.is_word("INTO") {
            let mut at = i + 1;
            while tokens
                .get(at + 1)
                .is_some_and(|next| next.is_punct(".") && tokens.get(at).is_some())
            {
                at += 2;
            }
            if tokens.get(at + 1).is_some_and(|t| t.is_punct("(")) {
                let close = matching_paren(&tokens, at + 1);
                insert_columns = tokens[at + 2..close]
                    .iter()
                    .filter_map(Token::identifier)
                    .collect();
            }
        }
        if token.is_word("IN") && tokens.get(i + 1).is_some_and(|t| t.is_punct("(")) {
            let close = matching_paren(&tokens, i + 1);
            let inner = &tokens[i + 2..close];
            if !inner.iter().any(|t| t.is_word("SELECT")) {
                let column = column_before_in(&tokens, i);
                let mut depth = 0usize;
                let mut items = usize::from(!inner.is_empty());
                for inner_token in inner {
                    match inner_token {
                        Token::Punct("(") => depth += 1,
                        Token::Punct(")") => depth = depth.saturating_sub(1),
                        Token::Punct(",") if depth == 0 => items += 1,
                        Token::Placeholder(n) => shape.bind(*n, column),
                        _ => {}
                    }
                }
                shape.batch_size = shape.batch_size.max(items);
                push_piece(&mut shape.fingerprint, "IN");
                push_piece(&mut shape.fingerprint, "(");
                push_piece(&mut shape.fingerprint, "...");
                push_piece(&mut shape.fingerprint, ")");
                i = close + 1;
                continue;
            }
        }
        if token.is_word("VALUES") && tokens.get(i + 1).is_some_and(|t| t.is_punct("(")) {
            let mut rows = 0;
            let mut at = i + 1;
            loop {
                let close = matching_paren(&tokens, at);
                rows += 1;
                let mut position = 0;
                let mut depth = 0usize;
                for row_token in &tokens[at + 1..close] {
                    match row_token {
                        Token::Punct("(") => depth += 1,
                        Token::Punct(")") => depth = depth.saturating_sub(1),
                        Token::Punct(",") if depth == 0 => position += 1,
                        Token::Placeholder(n) => {
                            shape.bind(*n, insert_columns.get(position).copied());
                        }
                        _ => {}
                    }
                }
                let continues = tokens.get(close + 1).is_some_and(|t| t.is_punct(","))
                    && tokens.get(close + 2).is_some_and(|t| t.is_punct("("));
                if continues {
                    at = close + 2;
                } else {
                    i = close + 1;
                    break;
                }
            }
            shape.batch_size = shape.batch_size.max(rows);
            for piece in ["VALUES", "(", "...", ")"] {
                push_piece(&mut shape.fingerprint, piece);
            }
            continue;
        }
        if let Token::Placeholder(n) = token {
            let previous = i.checked_sub(1).and_then(|p| tokens.get(p));
            if previous.is_some_and(|p| p.is_word("OFFSET")) {
                shape.offset_params.push(n.saturating_sub(1));
            }
            if (previous.is_some_and(is_range_operator) || row_comparison_until.is_some())
                && let Some(index) = n.checked_sub(1)
            {
                shape.range_params.push(index);
            }
            shape.bind(n, column_before_operator(&tokens, i));
        }
        push_piece(&mut shape.fingerprint, &token_text(&token));
        i += 1;
    }
    shape
}

/// A bound value as the backend would write it as a literal, shortened when long.
pub(crate) fn render_value(value: &Value, backend: DbBackend) -> String {
    const MAX_CHARS: usize = 120;
    let rendered = match backend {
        DbBackend::Postgres => PostgresQueryBuilder.value_to_string(value),
        DbBackend::MySql => MysqlQueryBuilder.value_to_string(value),
        _ => SqliteQueryBuilder.value_to_string(value),
    };
    if rendered.chars().count() > MAX_CHARS {
        let mut short: String = rendered.chars().take(MAX_CHARS).collect();
        short.push('…');
        short
    } else {
        rendered
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_normalised_and_in_lists_of_any_length_collapse() {
        let two = shape(
            r#"SELECT "m"."id" FROM "m" WHERE "m"."user_id" IN ($1, $2) LIMIT $3"#,
            DbBackend::Postgres,
        );
        let five = shape(
            r#"SELECT "m"."id" FROM "m" WHERE "m"."user_id" IN (?, ?, ?, ?, ?) LIMIT ?"#,
            DbBackend::Sqlite,
        );
        assert_eq!(two.fingerprint, five.fingerprint);
        assert_eq!(
            two.fingerprint,
            r#"SELECT "m"."id" FROM "m" WHERE "m"."user_id" IN (...) LIMIT ?"#
        );
        assert_eq!((two.batch_size, five.batch_size), (2, 5));
        assert!(two.columns[0].contains("user_id"));
    }

    #[test]
    fn the_postgres_loader_tuple_form_collapses_too() {
        let loaded = shape(
            r#"SELECT "p".* FROM "p" WHERE ("p"."user_id") IN (($1), ($2), ($3)) ORDER BY "p"."id" ASC"#,
            DbBackend::Postgres,
        );
        assert_eq!(
            loaded.fingerprint,
            r#"SELECT "p".* FROM "p" WHERE ("p"."user_id") IN (...) ORDER BY "p"."id" ASC"#
        );
        assert_eq!(loaded.batch_size, 3);
        assert!(loaded.columns[2].contains("user_id"));
    }

    #[test]
    fn multi_row_values_collapse_and_map_placeholders_to_insert_columns() {
        let insert = shape(
            r#"INSERT INTO "api_tokens" ("user_id", "token_hash") VALUES ($1, $2), ($3, $4) RETURNING "id""#,
            DbBackend::Postgres,
        );
        assert_eq!(
            insert.fingerprint,
            r#"INSERT INTO "api_tokens" ("user_id", "token_hash") VALUES (...) RETURNING "id""#
        );
        assert_eq!(insert.batch_size, 2);
        assert!(insert.columns[3].contains("token_hash"));
        assert!(insert.columns[2].contains("user_id"));
    }

    #[test]
    fn comparisons_and_offsets_are_mapped() {
        let page = shape(
            r#"SELECT "u"."id" FROM "u" WHERE "u"."token_hash" = ? AND "u"."id" >= ? LIMIT ? OFFSET ?"#,
            DbBackend::Sqlite,
        );
        assert!(page.columns[0].contains("token_hash"));
        assert!(page.columns[1].contains("id"));
        assert_eq!(page.offset_params, vec![3]);
    }

    #[test]
    fn a_cached_shape_is_the_shape_and_is_read_once_per_text() {
        let sql = r#"SELECT "t"."id" FROM "t" WHERE "t"."id" = $1"#;
        let first = cached_shape(sql, DbBackend::Postgres);
        let again = cached_shape(sql, DbBackend::Postgres);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(*first, shape(sql, DbBackend::Postgres));
        // The same text read as SQLite's has `$1` as no placeholder: a cache of its own.
        assert_ne!(*cached_shape(sql, DbBackend::Sqlite), *first);
    }

    #[test]
    fn keyset_cursors_limits_and_order_are_found() {
        let keyset = shape(
            r#"SELECT "m"."id" FROM "messages" AS "m" WHERE "m"."id" > $1 AND "m"."conversation_id" = $2 ORDER BY "m"."id" ASC LIMIT $3"#,
            DbBackend::Postgres,
        );
        assert_eq!(keyset.range_params, vec![0]);
        assert_eq!(keyset.limit, Some(Limit::Placeholder(2)));
        assert!(keyset.ordered);
        assert_eq!(keyset.read_tables, vec!["messages".to_owned()]);
        assert_eq!(keyset.written_table, None);

        let rows = shape(
            r#"SELECT * FROM "m" WHERE ("m"."created_at", "m"."id") < (?, ?) ORDER BY 1 LIMIT 10"#,
            DbBackend::Sqlite,
        );
        assert_eq!(rows.range_params, vec![0, 1]);
        assert_eq!(rows.limit, Some(Limit::Literal(10)));
    }

    #[test]
    fn the_table_a_write_changes_is_named() {
        for (sql, table) in [
            (
                r#"INSERT INTO "public"."Orders" ("a") VALUES ($1)"#,
                "orders",
            ),
            (
                r#"UPDATE "inventory" SET "stock" = $1 WHERE "id" = $2"#,
                "inventory",
            ),
            (r#"DELETE FROM "carts" WHERE "id" = $1"#, "carts"),
        ] {
            assert_eq!(
                shape(sql, DbBackend::Postgres).written_table.as_deref(),
                Some(table),
                "{sql}"
            );
        }
        let join = shape(
            r#"SELECT 1 FROM "a" INNER JOIN "b" ON "a"."id" = "b"."a_id""#,
            DbBackend::Postgres,
        );
        assert_eq!(join.read_tables, vec!["a".to_owned(), "b".to_owned()]);
    }

    #[test]
    fn a_subquery_after_in_is_not_collapsed() {
        let sub = shape(
            r#"SELECT 1 FROM "a" WHERE "a"."id" IN (SELECT "b"."a_id" FROM "b" WHERE "b"."x" = $1)"#,
            DbBackend::Postgres,
        );
        assert!(
            sub.fingerprint.contains("IN (SELECT"),
            "{}",
            sub.fingerprint
        );
        assert!(sub.columns[0].contains("x"));
    }
}
