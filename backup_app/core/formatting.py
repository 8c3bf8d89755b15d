"""Small display helpers shared by the CLI and the templates."""
from datetime import datetime, timezone

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


def relative_time(moment: datetime | None, now: datetime | None = None) -> str:
    """'just now', '5 minutes ago', '3 days ago' (or 'in …' for the future)."""
    if moment is None:
        return "—"
    seconds = ((now or datetime.now(timezone.utc)) - moment).total_seconds()
    if abs(seconds) < 45:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        count = round(abs(seconds) / size)
        if count >= 1 and abs(seconds) >= size * 0.75:
            label = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"{label} ago" if seconds > 0 else f"in {label}"
    raise AssertionError("unreachable")


def duration(seconds: float | None) -> str:
    """45 -> '45 s', 150 -> '2 min 30 s', 600 -> '10 min', 7300 -> '2 h 1 min', 86400 -> '24 h',
    3 days -> '3 days'."""
    if seconds is None:
        return "—"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours >= 72 and hours % 24 == 0 and not minutes and not secs:
        return f"{hours // 24} days"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"


def exact_time(moment: datetime | None) -> str:
    """'2026-11-25 10:00:00 UTC'."""
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


LOCATION_LABELS = {"local": "Local", "s3": "MinIO"}


def location_label(location: str) -> str:
    """How the pages name a copy's location: 'Local', 'MinIO', and each of S3_STORES by its name."""
    return LOCATION_LABELS.get(location, location.removeprefix("s3:"))


CUT = " […] "


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters: its head and its tail around " […] ".

    The head says what failed, the tail often why; the middle of a long output goes.
    """
    if len(text) <= limit:
        return text
    keep = max(limit - len(CUT), 0)
    head = keep - keep // 3
    return (text[:head] + CUT + text[len(text) - (keep - head):])[:limit]


def cron_words(expression: str | None) -> str:
    """'*/5 * * * *' -> 'Every 5 minutes' (cron-descriptor, 24-hour times); '' for none or one it cannot read."""
    if not expression:
        return ""
    from cron_descriptor import ExpressionDescriptor, FormatException, Options  # here: only pages with a schedule

    options = Options()
    options.use_24hour_time_format = True
    try:
        return ExpressionDescriptor(expression, options).get_description()
    except (FormatException, ValueError):
        return ""
