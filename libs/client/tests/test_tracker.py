"""The tracker against real services: batching, flush on exit, retries, a stalled server."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from northstar_client import RetryPolicy, Tracker
from northstar_harness.isolation import drop_namespace, new_namespace


def test_sends_full_batches_without_waiting_and_the_rest_on_close(suite, wait) -> None:
    tracker = Tracker(suite.config(), batch_size=50, flush_interval=60.0)
    for i in range(120):
        assert tracker.track("t.batch", user_id=f"u{i % 7}", properties={"i": i})

    # Two full batches leave at once; the 20 left wait for the (long) interval.
    wait(lambda: tracker.stats().accepted == 100, message="two full batches sent")
    assert tracker.stats().batches == 2
    assert tracker.queue_size() == 20

    assert tracker.close() is True
    stats = tracker.stats()
    assert (stats.accepted, stats.duplicate, stats.rejected, stats.dropped, stats.failed) == (
        120,
        0,
        0,
        0,
        0,
    )
    assert stats.batches == 3
    wait(lambda: suite.event_count("t.batch") == 120, message="metrics counts every event once")


def test_flushes_by_interval(suite, wait) -> None:
    with Tracker(suite.config(), batch_size=500, flush_interval=0.05) as tracker:
        tracker.track("t.interval", user_id="u1")
        tracker.track("t.interval", user_id="u2")
        wait(lambda: tracker.stats().accepted == 2, message="sent by the interval alone")
        assert tracker.stats().batches == 1


def test_flushes_on_interpreter_exit(suite, wait) -> None:
    script = textwrap.dedent(
        f"""
        from northstar_client import ClientConfig, Tracker
        config = ClientConfig(
            ingest_endpoint={suite.ingest_address!r},
            metrics_endpoint={suite.metrics_address!r},
            api_key={suite.config().api_key!r},
        )
        tracker = Tracker(config, batch_size=1000, flush_interval=3600)
        for i in range(37):
            tracker.track("t.exit", user_id=f"u{{i}}")
        print(tracker.queue_size())
        # No flush, no close: the atexit hook sends the queue.
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "37"  # all still queued when the script ended
    wait(lambda: suite.event_count("t.exit") == 37, message="flushed at exit")


def test_retries_a_lost_answer_without_double_counting(
    suite, serve, wait, fast_retry, helpers
) -> None:
    # Ingest stores the first batch, but the tracker hears UNAVAILABLE twice for it.
    proxy = helpers.IngestProxy(suite.ingest_address, lose_answers=2)
    address = serve(proxy)
    tracker = Tracker(suite.config(ingest_endpoint=address, retry=fast_retry), batch_size=25)
    for i in range(100):
        tracker.track("t.retry", user_id=f"u{i}")
    assert tracker.close() is True

    stats = tracker.stats()
    assert stats.failed == 0
    assert stats.accepted + stats.duplicate == 100
    # The third attempt of the first batch was answered DUPLICATE: stored once.
    assert stats.duplicate == 25
    assert proxy.forwarded_events == 150
    wait(lambda: suite.event_count("t.retry") == 100, message="each event counted once")


def test_retries_while_the_log_is_down(database_url, private_nats, wait, helpers) -> None:
    loop = helpers.LoopThread()
    own = helpers.start(private_nats.url, database_url, new_namespace(), loop)
    try:
        private_nats.stop()
        policy = RetryPolicy(
            max_attempts=100, initial_backoff=0.05, max_backoff=0.2, total_timeout=60
        )
        tracker = Tracker(own.config(retry=policy, timeout=2.0), batch_size=10, flush_interval=0.01)
        for i in range(30):
            tracker.track("t.down", user_id=f"u{i}")
        # Ingest answers UNAVAILABLE while NATS is down; nothing is accepted or lost.
        wait(lambda: tracker.stats().batches == 0 and tracker.stats().pending == 30)
        private_nats.start()
        assert tracker.close(timeout=60) is True
        stats = tracker.stats()
        assert (stats.accepted + stats.duplicate, stats.failed, stats.dropped) == (30, 0, 0)
        wait(lambda: own.event_count("t.down") == 30, timeout=60)
    finally:
        for host in own.hosts:
            loop.run(host.stop())
        # The NATS server is the test's own; the schemas are on the shared PostgreSQL.
        loop.run(drop_namespace(own.namespace, nats_url=None, database_url=database_url))
        loop.close()


def test_bounded_memory_and_counted_drops_under_a_stalled_server(suite, serve, helpers) -> None:
    silent = helpers.SilentServer()
    address = serve(silent)
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.01, total_timeout=30)
    tracker = Tracker(
        suite.config(ingest_endpoint=address, retry=policy, timeout=30.0),
        batch_size=10,
        flush_interval=0.01,
        max_queue_size=100,
    )
    started = time.monotonic()
    kept = sum(tracker.track("t.stall", user_id=f"u{i}") for i in range(5_000))
    assert time.monotonic() - started < 5.0  # track() never blocks on the server

    stats = tracker.stats()
    assert tracker.queue_size() <= 100
    assert stats.pending <= 110  # the queue plus the one batch in flight
    assert stats.dropped == 5_000 - kept
    assert stats.enqueued == kept
    assert kept <= 110

    started = time.monotonic()
    assert tracker.close(timeout=0.5) is False
    assert time.monotonic() - started < 5.0  # closing does not hang on the stalled call
    final = tracker.stats()
    # Every event is accounted for: never answered, so failed (cancelled) or dropped.
    assert (final.accepted, final.duplicate, final.pending) == (0, 0, 0)
    assert final.enqueued == kept
    assert final.failed + final.dropped == 5_000
    assert silent.calls >= 1


def test_drop_oldest_keeps_the_newest(suite, serve, helpers) -> None:
    address = serve(helpers.SilentServer())
    tracker = Tracker(
        suite.config(ingest_endpoint=address, timeout=30.0),
        batch_size=1_000,
        flush_interval=3600,
        max_queue_size=5,
        drop="oldest",
    )
    for i in range(12):
        assert tracker.track("t.oldest", user_id=f"u{i}") is True
    assert tracker.queue_size() == 5
    assert tracker.stats().dropped == 7
    tracker.close(timeout=0.2)
