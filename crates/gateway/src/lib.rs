//! Sallyport gateway crate (work in progress).
