//! Sallyport session crate (work in progress).
