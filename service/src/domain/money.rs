//! Money: an exact decimal amount of at most two decimal places.
