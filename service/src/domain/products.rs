//! Products and their stock.
