"""make bench's report: medians, ratios to the baseline, the targets met or missed, markdown tables.

Every target is judged against the baseline measured in the same run (bench/run.py measures).
"""

import statistics
from pathlib import Path

TARGETS = {"get_cached": 0.4, "list_user": 0.12, "create": 0.11}  # × the baseline's requests/s
P99_TARGET = 4  # every scenario's p99 at 64 connections, × the baseline's p99
DRAIN_TARGET = 0.95  # the pipeline processes orders at least this fraction of the rate they come in
STEADY_P99_TARGET_MS = 50  # the steady-rate mix's p99, at half its capacity
STACK_CPU_TARGET_MS = 4.5  # CPU per order over every process and server: half of the ~9 ms first measured
PERFORMANCE_PAGE = Path(__file__).resolve().parent.parent / "docs" / "performance.md"


def median(runs, key):
    return statistics.median(run[key] for run in runs)


def report(meta, http, listing, make_run, pipeline, steady):
    """The results file's content: the summaries first, every run after them."""
    summary = summarise(http)
    return {
        "meta": meta,
        "summary": summary,
        "listing": summarise_listing(summary, listing),
        "steady": steady,
        "make_run": summarise_make_run(make_run, summary),
        "pipeline": judge_pipeline(pipeline),
        "runs": {"http": http, "make_run": make_run},
    }


def summarise(http):
    """Each scenario's medians, its ratios to the baseline and whether they meet their targets."""
    baseline_rps = median(http["baseline"], "requests_per_second")
    baseline_p99 = median(http["baseline"], "p99_ms")
    summary = {}
    for name, runs in http.items():
        ratio = median(runs, "requests_per_second") / baseline_rps
        p99_ratio = median(runs, "p99_ms") / baseline_p99
        valid = all(run["valid"] for run in runs)  # wrk's latencies leave out the requests that timed out
        summary[name] = {
            "requests_per_second": round(median(runs, "requests_per_second"), 1),
            "ratio_to_baseline": round(ratio, 3),
            "target": TARGETS.get(name),
            "target_met": valid and ratio >= TARGETS[name] if name in TARGETS else None,
            "p50_ms": round(median(runs, "p50_ms"), 2),
            "p99_ms": round(median(runs, "p99_ms"), 2),
            "p99_ratio_to_baseline": round(p99_ratio, 2),
            "p99_target_met": valid and p99_ratio <= P99_TARGET,
            "cpu_ms_per_request": round(median(runs, "cpu_ms_per_request"), 3),
            "socket_errors": {
                kind: sum(run["socket_errors"][kind] for run in runs) for kind in runs[0]["socket_errors"]
            },
            "non_2xx": sum(run["non_2xx"] for run in runs),
            "requests": sum(run["requests"] for run in runs),
            "valid": valid,
        }
    return summary


def summarise_listing(summary, listing):
    """First page against a later page, for each user of the listing scenarios."""
    return {
        name: {
            **user,
            "first_per_second": (first := summary[f"list_{name}_first"]["requests_per_second"]),
            "later_per_second": (later := summary[f"list_{name}_later"]["requests_per_second"]),
            "first_to_later": round(first / later, 2) if later else None,  # None: not one answer in time
            "deepest_page_per_second": summary[f"list_{name}_deepest_page"]["requests_per_second"],
        }
        for name, user in listing.items()
    }


def summarise_make_run(runs, summary):
    """make run's requests/s against plain gunicorn's in the HTTP scenarios."""
    return {
        name: {
            "requests_per_second": run["requests_per_second"],
            "gunicorn_requests_per_second": summary[name]["requests_per_second"],
            "ratio_to_gunicorn": round(run["requests_per_second"] / summary[name]["requests_per_second"], 3),
            "p99_ms": run["p99_ms"],
            "gunicorn_p99_ms": summary[name]["p99_ms"],
            "valid": run["valid"],
        }
        for name, run in runs.items()
    }


def judge_pipeline(pipeline):
    """The pipeline's results, its drain rate judged against the rate orders were created."""
    throughput = pipeline["throughput"]
    ratio = throughput["drained_per_second"] / throughput["created_per_second"]
    judged = {"drained_to_created": round(ratio, 3), "target": DRAIN_TARGET, "met": ratio >= DRAIN_TARGET}
    return {**pipeline, "throughput": {**throughput, **judged}}


# --- markdown ----------------------------------------------------------------------------------


def met(flag):
    return "met" if flag else "**missed**"


def validity(row):
    errors = [f"{kind} {count}" for kind, count in row["socket_errors"].items() if count]
    errors += [f"non-2xx {row['non_2xx']}"] if row["non_2xx"] else []
    errors += ["no answer"] if not row["requests"] else []
    return ("yes" if row["valid"] else "NO") + (f" ({', '.join(errors)})" if errors else "")


def http_table(summary):
    lines = [
        f"| scenario | requests/s | × baseline | target | p50 ms | p99 ms | p99 × baseline (≤ {P99_TARGET}×) "
        "| CPU ms/request | valid (socket errors) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in summary.items():
        target = f"≥ {row['target']}×: {met(row['target_met'])}" if row["target"] else ""
        lines.append(
            f"| {name} | {row['requests_per_second']:.0f} | {row['ratio_to_baseline']:.2f} | {target} | "
            f"{row['p50_ms']:.2f} | {row['p99_ms']:.2f} | {row['p99_ratio_to_baseline']:.2f}: "
            f"{met(row['p99_target_met'])} | {row['cpu_ms_per_request']:.2f} | {validity(row)} |"
        )
    return lines


def listing_table(listing):
    lines = [
        "| listing | first page requests/s | later page | requests/s | first ÷ later "
        "| deepest page number | requests/s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in listing.values():
        lines.append(
            f"| a user with {row['orders']:,} orders | {row['first_per_second']:.0f} | "
            f"page {row['later_page']} by {row['later_page_by']} | {row['later_per_second']:.0f} | "
            f"{row['first_to_later'] or '–'} | page {row['deepest_page']} | "
            f"{row['deepest_page_per_second']:.0f} |"
        )
    return lines


def steady_table(steady):
    def cells(row):
        keys = ("requests", "errors", "p50_ms", "p99_ms", "p99_9_ms", "max_ms")
        return " | ".join(str(row[key]) for key in keys)

    within = steady["all"]["p99_ms"] is not None and steady["all"]["p99_ms"] <= STEADY_P99_TARGET_MS
    lines = [
        f"Steady rate: the mix sent at {steady['rate_asked']} requests/s ({steady['load']} × its capacity of "
        f"{steady['capacity_per_second']}/s; sent {steady['rate_sent']}/s, this generator's own lag p99 "
        f"{steady['send_lag_ms']['p99']} ms) for {steady['seconds']} s after {steady['warmup_seconds']} s "
        "of warm-up, latency from each request's scheduled send (bench/steady.py).",
        "",
        "| steady rate | requests | errors | p50 ms | p99 ms | p99.9 ms | max ms |",
        "|---|---|---|---|---|---|---|",
        f"| all (p99 ≤ {STEADY_P99_TARGET_MS} ms: {met(within)}) | {cells(steady['all'])} |",
    ]
    lines += [f"| {name} | {cells(row)} |" for name, row in steady["kinds"].items()]
    return lines


def markdown_steady(steady):
    return "\n".join(steady_table(steady))


def make_run_table(make_run):
    lines = [
        "| `make run` | requests/s | on gunicorn alone | × gunicorn | p99 ms (gunicorn alone) |",
        "|---|---|---|---|---|",
    ]
    for name, row in make_run.items():
        lines.append(
            f"| {name} | {row['requests_per_second']:.0f} | {row['gunicorn_requests_per_second']:.0f} | "
            f"{row['ratio_to_gunicorn']:.2f} | {row['p99_ms']:.2f} ({row['gunicorn_p99_ms']:.2f}) |"
        )
    return lines


def stack_cpu_table(throughput):
    cpu = throughput["cpu_ms_per_order"]
    roles = [name for name in cpu if name != "total"]
    return [
        f"| CPU ms per order, under `make run` | {' | '.join(roles)} | total | target |",
        "|---" * (len(roles) + 3) + "|",
        f"| {throughput['orders']} orders created at {throughput['created_per_second']}/s | "
        + " | ".join(f"{cpu[name]:.2f}" for name in roles)
        + f" | {cpu['total']:.2f} | ≤ {STACK_CPU_TARGET_MS} ms: {met(cpu['total'] <= STACK_CPU_TARGET_MS)} |",
    ]


def pipeline_table(pipeline):
    latency, throughput, workers = (pipeline[k] for k in ("latency", "throughput", "workers"))
    storm = pipeline.get("login_storm")
    rows = [
        "| pipeline | result | target |",
        "|---|---|---|",
        f"| POST → processed, one at a time, delay 0 | p50 {latency['p50_ms']} ms, "
        f"p99 {latency['p99_ms']} ms ({latency['samples']} orders) | p50 ≤ 50 ms, p99 ≤ 250 ms |",
        f"| orders created by wrk under `make run`, delay 0, {throughput['workers']} worker | "
        f"{throughput['orders']} orders: "
        f"created {throughput['created_per_second']}/s (in {throughput['create_seconds']} s), processed "
        f"{throughput['drained_per_second']}/s (in {throughput['drain_seconds']} s) = "
        f"{throughput['drained_to_created']} × the create rate | "
        f"≥ {DRAIN_TARGET} ×: {met(throughput['met'])} |",
        f"| {workers['workers']} workers, delay {workers['delay_seconds']} s | "
        f"{workers['orders_per_second']} orders/s = {workers['ratio_to_ideal']} × the ideal "
        f"{workers['ideal_per_second']} | ≥ 0.9 × ideal |",
    ]
    if storm:
        rows.append(
            f"| get_cached p99 on {storm['read_connections']} connections during a login storm "
            f"({storm['logins_per_second_asked']} logins/s asked) | "
            f"{storm['storm']['p99_ms']} ms (without the storm {storm['quiet']['p99_ms']} ms) "
            "| about the same |"
        )
    return [*rows, "", *stack_cpu_table(throughput)]


def markdown(results):
    meta, wrk = results["meta"], results["meta"]["wrk"]
    intro = (
        f"Measured {meta['date']} on {meta['machine']} with `{meta['command']}` in {meta['minutes']} minutes "
        f"(wrk -t2 -c{wrk['connections']}, {wrk['seconds']} s per run after a {wrk['warmup_seconds']} s "
        f"warm-up, {wrk['rounds']} runs each, medians; baseline = a ten-line Flask app on the same "
        "gunicorn + gevent configuration; CPU = the gunicorn workers' user + system time over a run ÷ its "
        f"requests; listing: {wrk['page_size']} orders a page)."
    )
    tables = [
        http_table(results["summary"]),
        listing_table(results["listing"]),
        steady_table(results["steady"]),
        make_run_table(results["make_run"]),
        pipeline_table(results["pipeline"]),
    ]
    return "\n\n".join([intro, *("\n".join(table) for table in tables)])


def update_page(table):
    """Put ``table`` between the bench markers of the documentation's performance page."""
    text = PERFORMANCE_PAGE.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        PERFORMANCE_PAGE.write_text(f"{before}{start}\n{table}\n{end}{after}")
