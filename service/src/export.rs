//! Streaming exports of large tables in bounded memory.
