//! What a test's code logged, as text: a sink for a test-scoped tracing subscriber.

use std::{
    io,
    sync::{Arc, Mutex, OnceLock, PoisonError},
};

use tracing_subscriber::{EnvFilter, Layer, fmt, layer::SubscriberExt};

/// A log sink: everything written to it, kept in memory. Clones share the text.
#[derive(Debug, Clone, Default)]
pub struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl io::Write for CapturedLog {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// A writer for `fmt::layer().with_writer(…)`: each call a handle on the same text.
    pub fn writer(&self) -> impl Fn() -> CapturedLog + Send + Sync + 'static {
        let sink = self.clone();
        move || sink.clone()
    }

    /// A subscriber built as the binary builds its own (`src/telemetry.rs`): a registry with
    /// the row-count layer and a text printer filtered by `filter`, the filter the printer's
    /// alone, writing here.
    pub fn subscriber_like_the_binary(
        &self,
        filter: &str,
    ) -> impl tracing::Subscriber + Send + Sync + 'static {
        ask_every_subscriber();
        tracing_subscriber::registry()
            .with(sql_observe::row_count_layer())
            .with(
                fmt::layer()
                    .with_ansi(false)
                    .with_writer(self.writer())
                    .with_filter(EnvFilter::new(filter)),
            )
    }
}

/// Call before a test-scoped subscriber is used. tracing caches per-callsite interest; while a
/// single dispatcher exists it asks only the registering thread's default, so a callsite first
/// reached by another test (with no subscriber) would stay disabled for this one. A second,
/// never-dropped dispatcher makes it ask every registered one.
pub fn ask_every_subscriber() {
    static SECOND_DISPATCHER: OnceLock<tracing::Dispatch> = OnceLock::new();
    SECOND_DISPATCHER
        .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
}
