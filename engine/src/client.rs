//! Async client of the binary TCP protocol, with batching and pipelining. (Stub.)
