"""Small helpers with no knowledge of tenants: file locks, atomic writes, closing
iterators, blocking calls in threads, and the base of the platform's errors."""
