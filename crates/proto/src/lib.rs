//! Sallyport proto crate (work in progress).
