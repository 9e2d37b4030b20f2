//! HTTP load from an external generator: `wrk` (Debian package `wrk`), driven by a generated
//! Lua script, and its report parsed.
//!
//! The script picks a random (conversation, bearer token) pair for every request, from the
//! callers the harness sampled; each wrk thread seeds its generator with its own number, so
//! that a run is repeatable. `wrk --latency` prints the latency distribution (50, 75, 90 and
//! 99%), from its own histogram (microsecond resolution), over every response, 2xx or not.

use std::{fmt::Write as _, path::Path, time::Duration};

use anyhow::{Context, bail};
use serde::Serialize;

/// A `wrk -t T -c C -d D --latency` report, as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct WrkReport {
    /// Responses received, whatever their status.
    pub(crate) requests: u64,
    /// The run's duration as wrk prints it (two decimals).
    pub(crate) seconds: f64,
    /// wrk's `Requests/sec`: `requests` over its own measured run time.
    pub(crate) requests_per_s: f64,
    pub(crate) latency_mean_us: f64,
    pub(crate) latency_max_us: f64,
    pub(crate) latency_p50_us: f64,
    pub(crate) latency_p75_us: f64,
    pub(crate) latency_p90_us: f64,
    pub(crate) latency_p99_us: f64,
    /// Responses whose status was not 2xx or 3xx ("Non-2xx or 3xx responses").
    pub(crate) non_2xx: u64,
    /// "Socket errors: connect C, read R, write W, timeout T", summed.
    pub(crate) socket_errors: u64,
}

impl WrkReport {
    /// Every failed request: non-2xx responses and socket errors.
    pub(crate) fn errors(&self) -> u64 {
        self.non_2xx + self.socket_errors
    }

    /// Successful responses per second: wrk's rate, less the failed responses' share.
    pub(crate) fn successes_per_s(&self) -> f64 {
        if self.requests == 0 {
            return 0.0;
        }
        let ok = self.requests.saturating_sub(self.non_2xx) as f64;
        self.requests_per_s * ok / self.requests as f64
    }
}

/// A duration as wrk prints it (`123.45us`, `4.57ms`, `2.02s`, `1.00m`, `1.00h`), in µs.
fn parse_duration_us(text: &str) -> anyhow::Result<f64> {
    let units = [
        ("us", 1.0),
        ("ms", 1e3),
        ("s", 1e6),
        ("m", 60e6),
        ("h", 3600e6),
    ];
    for (unit, scale) in units {
        if let Some(number) = text.strip_suffix(unit)
            && let Ok(value) = number.parse::<f64>()
        {
            return Ok(value * scale);
        }
    }
    bail!("{text:?} is not a wrk duration")
}

/// Parses the text `wrk --latency` prints to stdout.
pub(crate) fn parse_report(text: &str) -> anyhow::Result<WrkReport> {
    let mut requests = None;
    let mut seconds = None;
    let mut requests_per_s = None;
    let mut mean_max = None;
    let mut percentiles = [None; 4];
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    let mut in_distribution = false;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Latency", mean, _stdev, max, _within] => {
                mean_max = Some((parse_duration_us(mean)?, parse_duration_us(max)?));
            }
            ["Latency", "Distribution"] => in_distribution = true,
            [percent, value] if in_distribution && percent.ends_with('%') => {
                let index = match *percent {
                    "50%" => 0,
                    "75%" => 1,
                    "90%" => 2,
                    "99%" => 3,
                    other => bail!("unexpected wrk percentile {other}"),
                };
                percentiles[index] = Some(parse_duration_us(value)?);
            }
            [count, "requests", "in", duration, ..] => {
                in_distribution = false;
                requests = Some(count.parse::<u64>()?);
                seconds = Some(parse_duration_us(duration.trim_end_matches(','))? / 1e6);
            }
            ["Non-2xx", "or", "3xx", "responses:", count] => non_2xx = count.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                // connect C, read R, write W, timeout T
                for pair in rest.chunks(2) {
                    if let [_, count] = pair {
                        socket_errors += count.trim_end_matches(',').parse::<u64>()?;
                    }
                }
            }
            ["Requests/sec:", rate] => requests_per_s = Some(rate.parse::<f64>()?),
            _ => {}
        }
    }
    let missing = |what: &str| format!("wrk's report has no {what} line:\n{text}");
    let (latency_mean_us, latency_max_us) = mean_max.with_context(|| missing("Latency"))?;
    let [p50, p75, p90, p99] = percentiles;
    Ok(WrkReport {
        requests: requests.with_context(|| missing("requests in"))?,
        seconds: seconds.with_context(|| missing("requests in"))?,
        requests_per_s: requests_per_s.with_context(|| missing("Requests/sec"))?,
        latency_mean_us,
        latency_max_us,
        latency_p50_us: p50.with_context(|| missing("50% (run wrk with --latency)"))?,
        latency_p75_us: p75.with_context(|| missing("75%"))?,
        latency_p90_us: p90.with_context(|| missing("90%"))?,
        latency_p99_us: p99.with_context(|| missing("99%"))?,
        non_2xx,
        socket_errors,
    })
}

/// The Lua script: a random (conversation, token) pair per request, for the last-10 page.
pub(crate) fn last10_script(callers: &[(i64, &str)]) -> anyhow::Result<String> {
    if callers.is_empty() {
        bail!("no callers to put in the wrk script");
    }
    let mut conversations = String::new();
    let mut tokens = String::new();
    for (conversation, token) in callers {
        // Tokens go into Lua string literals unescaped: allow only characters that need none.
        if !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.~+/=".contains(&b))
        {
            bail!("a token holds characters the wrk script would have to escape");
        }
        let _ = write!(conversations, "{conversation},");
        let _ = write!(tokens, "\"{token}\",");
    }
    Ok(format!(
        r#"-- Generated by mercado-bench: GET the last 10 messages of a random conversation, as
-- one of its participants. Each wrk thread seeds its generator with its own number.
local conversations = {{{conversations}}}
local tokens = {{{tokens}}}
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end

function init(args)
  math.randomseed(seed)
end

function request()
  local i = math.random(#conversations)
  return wrk.format("GET", "/conversations/" .. conversations[i] .. "/messages?limit=10",
    {{["Authorization"] = "Bearer " .. tokens[i]}})
end
"#
    ))
}

/// wrk's `-t`: two threads, but never more threads than connections (wrk refuses that).
pub(crate) fn threads_for(connections: u32) -> u32 {
    connections.clamp(1, 2)
}

/// wrk's `-d` takes whole seconds: at least 1.
pub(crate) fn whole_seconds(duration: Duration) -> u64 {
    duration.as_secs_f64().round().max(1.0) as u64
}

/// Runs `wrk -t T -c connections -d duration --latency -s script base_url` and parses its report.
pub(crate) async fn run(
    wrk: &Path,
    script: &Path,
    base_url: &str,
    connections: u32,
    duration: Duration,
) -> anyhow::Result<WrkReport> {
    let output = tokio::process::Command::new(wrk)
        .arg(format!("-t{}", threads_for(connections)))
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", whole_seconds(duration)))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(base_url)
        .kill_on_drop(true)
        .output()
        .await
        .with_context(|| {
            format!(
                "running {} (Debian: apt-get install wrk; or pass --wrk PATH)",
                wrk.display()
            )
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {stdout}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_report(&stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wrk 4.1.0 (Debian 12), `wrk -t2 -c8 -d2s --latency -s last10.lua` with the script the
    /// harness generated, against `target/release/mercado` on a quick-scale large database.
    const MERCADO_SAMPLE: &str = include_str!("wrk_sample_mercado.txt");
    /// The same with every token replaced by a wrong one: every response a 401.
    const UNAUTHORIZED_SAMPLE: &str = include_str!("wrk_sample_401.txt");
    /// `wrk -t2 -c4 -d2s --latency` against a listener that closes every other connection
    /// without answering: read errors.
    const SOCKET_ERRORS_SAMPLE: &str = include_str!("wrk_sample_socket_errors.txt");

    #[test]
    fn durations_are_read_in_their_units() {
        assert_eq!(parse_duration_us("456.00us").unwrap(), 456.0);
        assert_eq!(parse_duration_us("4.57ms").unwrap(), 4570.0);
        assert_eq!(parse_duration_us("2.02s").unwrap(), 2_020_000.0);
        assert_eq!(parse_duration_us("1.00m").unwrap(), 60e6);
        assert!(parse_duration_us("fast").is_err());
    }

    #[test]
    fn a_real_report_of_the_last10_page_parses() {
        let report = parse_report(MERCADO_SAMPLE).expect("parses");
        assert!(report.requests > 0);
        assert!(report.requests_per_s > 0.0);
        assert!(report.latency_p50_us > 0.0);
        assert!(report.latency_p50_us <= report.latency_p75_us);
        assert!(report.latency_p90_us <= report.latency_p99_us);
        assert!(report.latency_p99_us <= report.latency_max_us);
        assert_eq!(report.errors(), 0);
        assert_eq!(report.successes_per_s(), report.requests_per_s);
    }

    #[test]
    fn non_2xx_responses_count_as_errors() {
        let report = parse_report(UNAUTHORIZED_SAMPLE).expect("parses");
        assert!(report.non_2xx > 0);
        assert_eq!(report.non_2xx, report.requests);
        assert_eq!(report.successes_per_s(), 0.0);
    }

    #[test]
    fn socket_errors_count_as_errors() {
        let report = parse_report(SOCKET_ERRORS_SAMPLE).expect("parses");
        assert!(report.socket_errors > 0);
        assert!(report.errors() >= report.socket_errors);
    }

    #[test]
    fn a_report_without_the_distribution_is_refused() {
        let without: String = MERCADO_SAMPLE
            .lines()
            .filter(|l| !l.trim_start().starts_with("99%"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(parse_report(&without).is_err());
    }

    #[test]
    fn the_script_pairs_each_conversation_with_its_token() {
        let script = last10_script(&[(7, "tok-a"), (9, "tok_b")]).expect("builds");
        assert!(script.contains("local conversations = {7,9,}"));
        assert!(script.contains(r#"local tokens = {"tok-a","tok_b",}"#));
        assert!(last10_script(&[(1, "bad\"quote")]).is_err());
        assert!(last10_script(&[]).is_err());
    }

    #[test]
    fn wrk_never_gets_more_threads_than_connections() {
        assert_eq!(threads_for(1), 1);
        assert_eq!(threads_for(8), 2);
        assert_eq!(whole_seconds(Duration::from_millis(300)), 1);
        assert_eq!(whole_seconds(Duration::from_secs(10)), 10);
    }
}
