//! The HTTP/JSON gateway and admin API (axum). (Stub: the servers work fills this in.)
