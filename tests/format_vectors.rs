//! Format test vectors (filled in below).
