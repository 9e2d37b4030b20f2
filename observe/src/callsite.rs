//! Which function of ours issued a statement.
//!
//! Why a backtrace: `#[track_caller]` stops at the first `.await`, and reading the current
//! tracing span would name a function only where someone remembered `#[instrument]`. The metric
//! callback runs synchronously inside the query's future, so the stack at that moment holds the
//! poll frames of every `async fn` awaiting it (`my_app::orders::list::{{closure}}`), down to
//! the one that built the query. Capturing is not free (a stack walk, and symbol resolution when
//! the finding is printed), so the scope captures one only when a fingerprint repeats — the
//! second occurrence, which is the one inside the loop — and resolves it only when a finding is
//! reported. `std::backtrace` gives no structured frames on stable Rust, so its documented
//! `Display` form (`N: path::to::fn` then `at file:line:col`) is read line by line.

use std::backtrace::Backtrace;

/// The innermost frame from one of `own_crates` (crate names such as `my_app`), skipping the
/// frames of `excluded` (this crate, `sql_observe`), as `path::to::fn (file:line)`.
pub(crate) fn innermost_own_frame(
    backtrace: &Backtrace,
    own_crates: &[String],
    excluded: &str,
) -> Option<String> {
    let text = backtrace.to_string();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(function) = frame_function(line) else {
            continue;
        };
        let location = lines
            .peek()
            .and_then(|next| next.trim_start().strip_prefix("at "))
            .map(str::to_owned);
        let path = clean_function(function);
        // `<my_app::x::Y as Trait>::f` belongs to the crate of the type.
        let owner = path.trim_start_matches('<');
        let ours = own_crates
            .iter()
            .any(|krate| owner.starts_with(&format!("{krate}::")));
        if ours && !owner.starts_with(excluded) {
            return Some(match location {
                Some(location) => format!("{path} ({})", shorten(&location)),
                None => path,
            });
        }
    }
    None
}

/// `  12: my_app::orders::x::{{closure}}` → `my_app::orders::x::{{closure}}`.
fn frame_function(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    let (number, rest) = trimmed.split_once(": ")?;
    number.parse::<usize>().ok()?;
    Some(rest.trim())
}

/// Drops what says nothing to a reader: async closure suffixes and symbol hashes.
fn clean_function(function: &str) -> String {
    let mut path = function.to_owned();
    if let Some((before, hash)) = path.rsplit_once("::h")
        && hash.len() == 16
        && hash.chars().all(|c| c.is_ascii_hexdigit())
    {
        path = before.to_owned();
    }
    while let Some(stripped) = path.strip_suffix("::{{closure}}") {
        path = stripped.to_owned();
    }
    path
}

/// `/work/x/my_app/src/orders.rs:12:5` → `my_app/src/orders.rs:12`: the path from the
/// crate directory, without the column.
fn shorten(location: &str) -> String {
    let without_column = match location.rsplit_once(':') {
        Some((rest, column)) if column.chars().all(|c| c.is_ascii_digit()) => rest,
        _ => location,
    };
    let relative = without_column
        .find("/src/")
        .and_then(|src| {
            without_column[..src]
                .rfind('/')
                .map(|dir| &without_column[dir + 1..])
        })
        .unwrap_or(without_column);
    relative.trim_start_matches("./").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_suffixes_and_hashes_are_removed() {
        assert_eq!(
            clean_function("service::loading::lazy::{{closure}}::{{closure}}"),
            "service::loading::lazy"
        );
        assert_eq!(
            clean_function("service::a::b::h0123456789abcdef"),
            "service::a::b"
        );
    }

    #[test]
    fn locations_are_shown_from_the_crate_directory() {
        assert_eq!(
            shorten("/work/wt/service/src/loading.rs:120:9"),
            "service/src/loading.rs:120"
        );
        assert_eq!(shorten("./src/main.rs:3:1"), "src/main.rs:3");
    }

    #[test]
    fn this_test_is_found_as_its_own_call_site() {
        let backtrace = Backtrace::force_capture();
        let site = innermost_own_frame(
            &backtrace,
            &["sql_observe".to_owned()],
            "sql_observe::nothing",
        );
        let site = site.unwrap_or_default();
        assert!(
            site.contains("this_test_is_found_as_its_own_call_site"),
            "{site}"
        );
    }
}
