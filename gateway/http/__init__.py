"""The public HTTP surface (docs/http.md)."""
