//! Sallyport jwt crate (work in progress).
