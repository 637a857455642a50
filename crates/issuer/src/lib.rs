//! Sallyport issuer crate (work in progress).
