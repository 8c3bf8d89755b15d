"""Small display helpers shared by the CLI and the templates."""

UNITS = ("B", "KB", "MB", "GB", "TB", "PB")


def human_size(nbytes: int | None) -> str:
    """1536 -> '1.5 KB' (powers of 1024)."""
    if nbytes is None:
        return "—"
    size = float(nbytes)
    for unit in UNITS:
        if size < 1024 or unit == UNITS[-1]:
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
