//! Sallyport iron crate (work in progress).
