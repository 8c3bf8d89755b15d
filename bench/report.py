"""The results as a Markdown table (targets beside the figures) and as a JSON file."""
import json
from datetime import datetime
from pathlib import Path

from .backups import CODECS
from .measure import Sample, Summary, paired_ratios

MB = 1_000_000
COLUMNS = ("#", "case", "median", "min – max", "ratio (median of rounds, min – max)", "target", "met")
# Rows 4a–4c: the codecs beside the default (gzip, rows 3 and 3′); zstd has targets.
CODEC_ROWS = {"zstd": "4a", "plain": "4b", "zstd_encrypted": "4c"}


def seconds(samples: list[Sample]) -> list[float]:
    return [s.seconds for s in samples]


def span(summary: Summary, unit: str, digits: int = 2) -> tuple[str, str]:
    return (f"{summary.median:.{digits}f} {unit}",
            f"{summary.low:.{digits}f} – {summary.high:.{digits}f} {unit}")


def ratio_text(summary: Summary, reference: str) -> str:
    return f"{summary.median:.2f}× {reference} ({summary.low:.2f} – {summary.high:.2f})"


def verdict(ok: bool | None) -> str:
    return "" if ok is None else ("yes" if ok else "**no**")


class Table:
    """Rows of the table, built from the run's samples; `numbers` keeps the figures as JSON."""

    def __init__(self, results: dict):
        self.results = results
        self.samples = {key: [Sample(**s) for s in runs] for key, runs in results["samples"].items()}
        self.errors = results["errors"]
        self.rows: list[tuple[str, ...]] = []
        self.numbers: dict[str, float] = {}

    def have(self, key: str) -> bool:
        return bool(self.samples.get(key)) and key not in self.errors

    def missing(self, number: str, label: str, why: str) -> None:
        self.rows.append((number, label, "n/a", "", why, "", ""))

    def time_ratio(self, key: str, reference: str) -> Summary | None:
        if not (self.have(key) and self.have(reference)):
            return None
        summary = Summary.of(paired_ratios(seconds(self.samples[key]), seconds(self.samples[reference])))
        self.numbers[f"{key}/{reference}"] = summary.median
        return summary

    def timed_row(self, number: str, key: str, label: str, refs: dict[str, str],
                  target: str = "", limit: tuple[str, float] | None = None, extra: str = "") -> None:
        """A row of wall times with ratios to the cases in `refs` (key → row number)."""
        if not self.have(key):
            self.missing(number, label, self.errors.get(key, "not measured"))
            return
        summary = Summary.of(seconds(self.samples[key]))
        self.numbers[f"{key}.seconds"] = summary.median
        ratios = {ref: self.time_ratio(key, ref) for ref in refs}
        text = " · ".join([*(ratio_text(r, f"({refs[ref]})") for ref, r in ratios.items() if r),
                           *([extra] if extra else [])])
        ok = None
        if limit:
            measured = ratios.get(limit[0])
            ok = measured.median <= limit[1] if measured else None
        self.rows.append((number, label, *span(summary, "s"), text, target, verdict(ok)))

    def without_startup(self, key: str, number: str, reference: str, ref_number: str) -> str:
        """`key` less the start-up (case 0) over `reference`, round by round: the work's own cost."""
        if not all(self.have(k) for k in (key, "startup", reference)):
            return ""
        net = [t - s for t, s in zip(seconds(self.samples[key]), seconds(self.samples["startup"]), strict=True)]
        summary = Summary.of(paired_ratios(net, seconds(self.samples[reference])))
        self.numbers[f"{key}_minus_startup/{reference}"] = summary.median
        return f"({number}) − (0) is " + ratio_text(summary, f"({ref_number})")

    def build(self) -> list[tuple[str, ...]]:
        labels = self.results["labels"]
        self.timed_row("0′", "imports", labels["imports"], {})
        self.timed_row("0", "startup", labels["startup"], {"imports": "0′"}, "≤ 1.35× (0′)", ("imports", 1.35))
        self.startup_memory_row()
        self.timed_row("1", "dump_devnull", labels["dump_devnull"], {})
        self.timed_row("2", "dump_then_upload", labels["dump_then_upload"], {"dump_devnull": "1"})
        self.dump_alone_row()
        self.timed_row("3", "create", labels["create"], {"dump_devnull": "1", "dump_then_upload": "2"},
                       "≤ 1.10× (1)", ("dump_devnull", 1.10),
                       self.without_startup("create", "3", "dump_devnull", "1"))
        self.size_row()
        self.codec_rows()
        self.timed_row("5", "pg_restore", labels["pg_restore"], {})
        self.timed_row("5′", "pg_restore_jobs", labels["pg_restore_jobs"], {"pg_restore": "5"})
        self.timed_row("6a", "restore_local", labels["restore_local"], {"pg_restore": "5", "pg_restore_jobs": "5′"},
                       extra=self.without_startup("restore_local", "6a", "pg_restore", "5"))
        self.timed_row("6b", "restore_s3", labels["restore_s3"], {"pg_restore": "5"},
                       "≤ 1.15× (5)", ("pg_restore", 1.15),
                       self.without_startup("restore_s3", "6b", "pg_restore", "5"))
        self.timed_row("6c", "restore_swap", labels["restore_swap"], {"pg_restore": "5", "pg_restore_jobs": "5′"},
                       extra=self.without_startup("restore_swap", "6c", "pg_restore_jobs", "5′"))
        self.timed_row("6d", "restore_swap_1", labels["restore_swap_1"], {"pg_restore": "5"},
                       extra=self.without_startup("restore_swap_1", "6d", "pg_restore", "5"))
        self.unavailable_row()
        self.rss_rows()
        self.timed_row("7c", "dump_devnull_big", labels["dump_devnull_big"], {})
        self.timed_row("7d", "create_big", labels["create_big"], {"dump_devnull_big": "7c"})
        self.web_rows()
        self.worker_rows()
        return self.rows

    def startup_memory_row(self) -> None:
        """0″: peak RSS of `flask backup list` against that of the bare imports (0′), round by round."""
        if not (self.have("startup") and self.have("imports")):
            return
        summary = Summary.of([s.max_rss / MB for s in self.samples["startup"]])
        ratio = Summary.of(paired_ratios([s.max_rss for s in self.samples["startup"]],
                                         [s.max_rss for s in self.samples["imports"]]))
        self.numbers["startup.max_rss_mb"] = summary.median
        self.numbers["startup/imports.max_rss"] = ratio.median
        self.rows.append(("0″", "peak RSS of `flask backup list`", *span(summary, "MB", 1), ratio_text(ratio, "(0′)"),
                          "≤ 1.30× (0′)", verdict(ratio.median <= 1.30)))

    def unavailable_row(self) -> None:
        """6e: how long the swaps of 6c and 6d held the database unavailable (sessions ended, renamed)."""
        swaps = [s.steps["unavailable"] for key in ("restore_swap", "restore_swap_1") if self.have(key)
                 for s in self.samples[key]]
        if not swaps:
            return
        summary = Summary.of(swaps)
        self.numbers["swap_unavailable.seconds"] = summary.median
        self.rows.append(("6e", "the database unavailable during the swap of 6c and 6d", *span(summary, "s", 3),
                          "", "", ""))

    def dump_alone_row(self) -> None:
        """2′: the pg_dump step of case 2 alone, for the engine issue's note (create vs. a plain dump)."""
        if not self.have("dump_then_upload"):
            return
        dumps = [s.steps["pg_dump"] for s in self.samples["dump_then_upload"]]
        summary = Summary.of(dumps)
        self.numbers["dump_to_file.seconds"] = summary.median
        text = ""
        if self.have("create"):
            create_ratio = Summary.of(paired_ratios(seconds(self.samples["create"]), dumps))
            self.numbers["create/dump_to_file"] = create_ratio.median
            text = "(3) is " + ratio_text(create_ratio, "(2′)")
        self.rows.append(("2′", "`pg_dump -Fc -f FILE` alone (the dump step of 2)", *span(summary, "s"),
                          text, "", ""))

    def size_row(self) -> None:
        if self.have("create"):
            size = self.samples["create"][0].size
            self.numbers["create.size_bytes"] = size
            self.rows.append(("3′", "size of the backup (pg_dump custom, its own gzip compression)",
                              f"{size / MB:.1f} MB", "", "", "", ""))

    def codec_rows(self) -> None:
        """Time and size of each codec, both against the default codec's (rows 3 and 3′)."""
        for name, number in CODEC_ROWS.items():
            key = f"create_{name}"
            label = self.results["labels"][key]
            zstd = name == "zstd"
            self.timed_row(number, key, label, {"create": "3"}, "≤ 1.00× (3)" if zstd else "",
                           ("create", 1.00) if zstd else None)
            if self.have(key) and self.have("create"):
                self.size_ratio_row(number + "′", key, f"size, {CODECS[name][0]}", 0.80 if zstd else None)

    def size_ratio_row(self, number: str, key: str, label: str, limit: float | None) -> None:
        """The backup size of `key` and its ratio to the default codec's (3′)."""
        size = self.samples[key][0].size
        size_ratio = size / self.samples["create"][0].size
        self.numbers[f"{key}.size_bytes"] = size
        self.numbers[f"{key}.size_ratio"] = size_ratio
        self.rows.append((number, label, f"{size / MB:.1f} MB", "", f"{size_ratio:.2f}× (3′)",
                          f"≤ {limit:.2f}× (3′)" if limit else "", verdict(size_ratio <= limit if limit else None)))

    def rss_rows(self) -> None:
        label = "peak RSS of `flask backup create`, scale "
        big_label = f"{label}{self.results['params']['rss_multiplier']}×S"
        if not self.have("create"):
            self.missing("7a", label + "S", self.errors.get("create", "not measured"))
            self.missing("7b", big_label, self.errors.get("create", "not measured"))
            return
        base = Summary.of([s.max_rss / MB for s in self.samples["create"]])
        self.numbers["create.max_rss_mb"] = base.median
        self.rows.append(("7a", label + "S", *span(base, "MB", 1), "", "≤ 100 MB", verdict(base.median <= 100)))
        if not self.have("create_big"):
            self.missing("7b", big_label, self.errors.get("create_big", "not measured"))
            return
        big = Summary.of([s.max_rss / MB for s in self.samples["create_big"]])
        growth = big.median / base.median
        self.numbers["create_big.max_rss_mb"] = big.median
        self.numbers["create_big/create.max_rss"] = growth
        self.rows.append(("7b", big_label, *span(big, "MB", 1),
                          f"{growth:.2f}× (7a)", "≤ 1.10× (7a)", verdict(growth <= 1.10)))

    def web_rows(self) -> None:
        """8a, 8b: requests per second and latencies of the page and the API under load."""
        rows = self.results["params"]["web_rows"]
        target = "p50 ≤ 20 ms, ≥ 300 req/s"
        for number, key, path in (("8a", "page", "/"), ("8b", "api", "/api/backups")):
            label = f"GET `{path}`, {rows:,} catalog rows"
            if key not in self.results["web"]:
                self.missing(number, label, self.errors.get("web", "not measured"))
                continue
            runs = self.results["web"][key]["runs"]
            rps = Summary.of([r["rps"] for r in runs])
            latencies = [r for r in runs if r["p50_ms"] is not None]
            if not latencies:
                self.missing(number, label, f"no request succeeded ({runs[0]['failures']})")
                continue
            p50 = Summary.of([r["p50_ms"] for r in latencies]).median
            p99 = Summary.of([r["p99_ms"] for r in latencies]).median
            errors = sum(r["errors"] for r in runs)
            self.numbers.update({f"{key}.rps": rps.median, f"{key}.p50_ms": p50, f"{key}.p99_ms": p99})
            ok = p50 <= 20 and rps.median >= 300
            note = f"{errors} errors" if errors else ""
            self.rows.append((number, label, f"{rps.median:.1f} req/s · p50 {p50:.1f} ms · p99 {p99:.1f} ms",
                              f"{rps.low:.1f} – {rps.high:.1f} req/s", note, target, verdict(ok)))

    def worker_rows(self) -> None:
        """9a, 9b: backups per minute of one and of three worker processes; 9b's speed-up over 9a."""
        for number, key in (("9a", "workers_1"), ("9b", "workers_3")):
            label = self.results["labels"].get(key, key)
            if not self.have(key):
                self.missing(number, label, self.errors.get(key, "not measured"))
                continue
            rates = Summary.of([s.steps["backups_per_minute"] for s in self.samples[key]])
            self.numbers[f"{key}.backups_per_minute"] = rates.median
            text = ""
            if key != "workers_1" and self.have("workers_1"):
                speedup = Summary.of(paired_ratios(seconds(self.samples["workers_1"]), seconds(self.samples[key])))
                self.numbers[f"{key}/workers_1.throughput"] = speedup.median
                text = "throughput " + ratio_text(speedup, "(9a)")
            self.rows.append((number, label, *span(rates, "backups/min", 1), text, "", ""))


def markdown(results: dict) -> tuple[str, dict]:
    """The table as Markdown, with a header saying what ran where; and the figures."""
    table = Table(results)
    rows = table.build()
    params, machine, database = results["params"], results["machine"], results["database"]
    lines = [
        f"backup_app benchmark, {results['started_at']} on {machine['description']}",
        f"database: pgbench scale {params['scale']} + wide table = {database['bytes'] / MB:.0f} MB "
        f"(PostgreSQL {database['server']}, {database['pg_dump']}); "
        f"{params['repeat']} rounds, cases alternating; load average {machine['loadavg_start']} at start, "
        f"{machine['loadavg_end']} at the end",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    return "\n".join(lines), table.numbers


def save(results: dict, folder: Path) -> Path:
    """Write the results as bench/results/bench-<time>.json; return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.fromisoformat(results["started_at"]).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"bench-{stamp}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path
