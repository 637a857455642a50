//! Sallyport demo crate (work in progress).
