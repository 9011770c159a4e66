"""HTTP and WebSocket: turns requests into calls and results into responses."""
