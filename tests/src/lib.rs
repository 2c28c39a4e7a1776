//! Cross-crate test support.
