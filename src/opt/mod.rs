//! The optimizer (stub, being written).
