//! Bulk inserts: chunked under the bind-parameter limit, and COPY on PostgreSQL.
