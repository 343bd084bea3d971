"""The consumer's cost per message: CPU (user+sys from /proc), Redis round trips and commands, and
RabbitMQ acks, with the real ``python -m consumer`` process.

    BENCH_REDIS_URL=redis://127.0.0.1:6379/6 BENCH_NAMESPACE=benchconsumer. \\
        python bench/consumer_cost.py [--messages 4000] [--rounds 3] [--rate 200] [--profile DIR]

Two shapes, interleaved over the rounds: ``backlog``, N events waiting when the consumer takes them
(it is paused with SIGSTOP once consuming, the events published, then resumed), and ``trickle``,
N events published at ``--rate`` per second. Each event is a valid ``new_order`` body for a random
order id (the consumer does not read PostgreSQL). The CPU counted is the consumer's from the moment
it consumes to the moment the last job is in Redis, so its start-up is left out. Counting is done in
the consumer process (``--child``): every Redis write to the socket (a round trip), every Redis
command sent, every ``basic_ack`` call. ``--profile DIR`` writes a CPU-time cProfile per run.

Prints a table and writes the numbers to ``bench/results/<date>-consumer.json``.
"""

import argparse
import atexit
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def child() -> None:
    """Run the consumer, as ``python -m consumer`` does, counting its Redis and AMQP traffic."""
    import cProfile

    import redis.connection
    from pika.adapters.blocking_connection import BlockingChannel

    from consumer.__main__ import main

    counts = {"redis_round_trips": 0, "redis_commands": 0, "acks": 0}
    connection_class = redis.connection.AbstractConnection
    send, send_one, pack_many = (
        connection_class.send_packed_command,
        connection_class.send_command,
        connection_class.pack_commands,
    )
    ack = BlockingChannel.basic_ack

    def counted_send(self, command, check_health=True):  # type: ignore[no-untyped-def]
        counts["redis_round_trips"] += 1
        return send(self, command, check_health)

    def counted_send_one(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        counts["redis_commands"] += 1
        return send_one(self, *args, **kwargs)

    def counted_pack_many(self, commands):  # type: ignore[no-untyped-def]
        counts["redis_commands"] += len(commands)
        return pack_many(self, commands)

    def counted_ack(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        counts["acks"] += 1
        return ack(self, *args, **kwargs)

    connection_class.send_packed_command = counted_send
    connection_class.send_command = counted_send_one
    connection_class.pack_commands = counted_pack_many
    BlockingChannel.basic_ack = counted_ack
    counts_file = os.environ["BENCH_COUNTS_FILE"]
    signal.signal(signal.SIGUSR1, lambda *_: Path(counts_file).write_text(json.dumps(counts)))
    profile_file = os.environ.get("BENCH_PROFILE_FILE")
    if profile_file:
        profiler = cProfile.Profile(time.process_time)
        atexit.register(profiler.dump_stats, profile_file)
        profiler.enable()
    main([])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def event() -> bytes:
    return json.dumps(
        {
            "event": "new_order",
            "event_id": str(uuid.uuid4()),
            "order_id": str(uuid.uuid4()),
            "user_id": 1,
            "total_price": "12.50",
            "created_at": datetime.now(UTC).isoformat(),
            "request_id": "req-bench",
        }
    ).encode()


def wait_for(condition, process, timeout: float = 120, interval: float = 0.05) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            raise RuntimeError(f"the consumer exited ({process.returncode})")
        if time.monotonic() > deadline:
            raise TimeoutError(condition)
        time.sleep(interval)


def run(
    shape: str, messages: int, rate: float, env: dict[str, str], profile: Path | None
) -> dict[str, float]:
    import pika
    import redis

    from orders_app.events.topology import Topology

    rq_redis = redis.Redis.from_url(env["REDIS_URL"])
    rq_redis.flushdb()  # the bench's own db number only
    topology = Topology.from_config({"EVENTS_NAMESPACE": env["FLASK_EVENTS_NAMESPACE"]})
    connection = pika.BlockingConnection(pika.URLParameters(env["RABBITMQ_URL"]))
    channel = connection.channel()
    topology.declare(channel)
    channel.queue_purge(topology.queue)
    channel.queue_purge(topology.dead_letter_queue)
    bodies = [event() for _ in range(messages)]
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=2)
    with tempfile.TemporaryDirectory() as scratch:
        counts_file = Path(scratch, "counts.json")
        child_env = {**env, "BENCH_COUNTS_FILE": str(counts_file)}
        if profile:
            child_env["BENCH_PROFILE_FILE"] = str(profile / f"{shape}-{time.time_ns()}.prof")
        process = subprocess.Popen(
            [sys.executable, __file__, "--child"],
            cwd=ROOT,
            env=child_env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for(
                lambda: channel.queue_declare(topology.queue, passive=True).method.consumer_count == 1,
                process,
            )
            time.sleep(0.5)  # let the consumer settle in its loop after its basic_consume
            process.send_signal(signal.SIGUSR1)
            wait_for(counts_file.exists, process)
            before = json.loads(counts_file.read_text())
            counts_file.unlink()
            cpu_before = cpu_seconds(process.pid)
            started = time.monotonic()
            if shape == "backlog":
                process.send_signal(signal.SIGSTOP)
                for body in bodies:
                    channel.basic_publish(topology.exchange, topology.routing_key, body, properties)
                connection.process_data_events(0)
                process.send_signal(signal.SIGCONT)
                started = time.monotonic()
            else:
                for n, body in enumerate(bodies):
                    delay = started + n / rate - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    channel.basic_publish(topology.exchange, topology.routing_key, body, properties)
            queue_key = f"rq:queue:{env['RQ_QUEUE']}"
            wait_for(lambda: rq_redis.llen(queue_key) == messages, process)
            wait_for(
                lambda: channel.queue_declare(topology.queue, passive=True).method.message_count == 0, process
            )
            elapsed = time.monotonic() - started
            cpu = cpu_seconds(process.pid) - cpu_before
            process.send_signal(signal.SIGUSR1)
            wait_for(counts_file.exists, process)
            after = json.loads(counts_file.read_text())
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    # Every message acked: none left unacked once the consumer has gone (it would be ready again).
    leftover = channel.queue_declare(topology.queue, passive=True).method.message_count
    dead = channel.queue_declare(topology.dead_letter_queue, passive=True).method.message_count
    connection.close()
    if leftover or dead:
        raise RuntimeError(f"{leftover} messages back in the queue, {dead} dead-lettered")
    per = {key: (after[key] - before[key]) / messages for key in after}
    return {"cpu_ms_per_message": 1000 * cpu / messages, "messages_per_second": messages / elapsed, **per}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--shapes", default="backlog,trickle")
    parser.add_argument("--label", default="", help="a name for this code in the results file")
    parser.add_argument("--profile", type=Path, help="write a CPU-time cProfile of each run here")
    args = parser.parse_args()
    if args.child:
        child()
        return
    env = {
        **os.environ,
        "PYTHON_DOTENV_DISABLED": "1",
        "REDIS_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6"),
        "RABBITMQ_URL": os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        "FLASK_EVENTS_NAMESPACE": os.environ.get("BENCH_NAMESPACE", "benchconsumer."),
        "RQ_QUEUE": "orders",
        "JWT_SECRET_KEY": secrets.token_urlsafe(48),  # required, unused by the consumer
        "METRICS_PORT": "0",
    }
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    shapes = args.shapes.split(",")
    runs: dict[str, list[dict[str, float]]] = {shape: [] for shape in shapes}
    for _ in range(args.rounds):
        for shape in shapes:  # interleaved
            runs[shape].append(run(shape, args.messages, args.rate, env, args.profile))
    summary = {}
    print(f"load average {os.getloadavg()}")
    for shape, results in runs.items():
        summary[shape] = {}
        for key in results[0]:
            values = sorted(result[key] for result in results)
            summary[shape][key] = {"median": statistics.median(values), "min": values[0], "max": values[-1]}
            print(f"{shape:8} {key:22} {statistics.median(values):9.4f}  ({values[0]:.4f}–{values[-1]:.4f})")
    out = ROOT / "bench" / "results" / f"{date.today()}-consumer.json"
    recorded = json.loads(out.read_text()) if out.exists() else {}
    recorded[args.label or datetime.now(UTC).isoformat(timespec="seconds")] = {
        "messages": args.messages,
        "rounds": args.rounds,
        "rate": args.rate,
        "load_average": os.getloadavg(),
        "summary": summary,
        "runs": runs,
    }
    out.write_text(json.dumps(recorded, indent=2) + "\n")


if __name__ == "__main__":
    main()
