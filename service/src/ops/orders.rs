//! Operations on orders.
