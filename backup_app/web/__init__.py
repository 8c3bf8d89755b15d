"""The pages: one blueprint package per area, and what every response shares."""
