//! Sallyport client crate (work in progress).
