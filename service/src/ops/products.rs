//! Operations on products.
