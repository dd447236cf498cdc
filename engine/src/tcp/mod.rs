//! The batched binary TCP protocol server. (Stub: the servers work fills this in.)
