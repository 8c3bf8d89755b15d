"""Plain functions that do the work; they take their adapters and own the commit."""
