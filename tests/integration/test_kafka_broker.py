"""The local Kafka broker and topic helpers against a real broker: start, topics, produce/consume, stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient
from sluice_operator.kafka_admin import DesiredTopic, KafkaAdminError, ensure_topics

from sluice_local.kafka_broker import BrokerError, KafkaBroker
from sluice_local.topics import TopicError, end_offsets, read_all

pytestmark = pytest.mark.integration


def _produce(
    bootstrap: str, topic: str, records: list[tuple[bytes, bytes]], **config: object
) -> list[KafkaError]:
    """Produce records, wait for every delivery report, return the delivery errors."""
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            errors.append(err)

    producer = Producer({"bootstrap.servers": bootstrap, **config})
    for key, value in records:
        producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
    assert producer.flush(30) == 0, "undelivered records after 30 s"
    return errors


def _topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def test_broker_serves_metadata_on_loopback(kafka_broker: KafkaBroker) -> None:
    host, port = kafka_broker.bootstrap_servers.split(":")
    assert host == "127.0.0.1"
    assert int(port) == kafka_broker.port != kafka_broker.controller_port
    metadata = AdminClient({"bootstrap.servers": kafka_broker.bootstrap_servers}).list_topics(timeout=10)
    assert [(b.id, b.host, b.port) for b in metadata.brokers.values()] == [(1, "127.0.0.1", int(port))]
    assert kafka_broker.is_running()
    assert kafka_broker.startup_seconds is not None and kafka_broker.startup_seconds < 90


def test_produce_and_read_back_across_partitions(kafka_broker: KafkaBroker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [DesiredTopic(topic, partitions=3)], timeout=30)
    records = [(f"k{i % 7}".encode(), f"v{i}".encode()) for i in range(60)]
    assert _produce(bootstrap, topic, records) == []

    offsets = end_offsets(bootstrap, topic)
    assert sorted(offsets) == [0, 1, 2]
    assert sum(offsets.values()) == 60

    messages = read_all(bootstrap, topic, timeout=30)
    assert sorted((m.key(), m.value()) for m in messages) == sorted(records)
    # Same key, same partition; each partition read in offset order from 0.
    partitions_by_key: dict[bytes, set[int]] = {}
    for m in messages:
        partitions_by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(p) == 1 for p in partitions_by_key.values())
    for partition, end in offsets.items():
        assert [m.offset() for m in messages if m.partition() == partition] == list(range(end))


def test_read_all_ignores_records_after_the_call(
    topic_factory: Callable[..., str], kafka_broker: KafkaBroker
) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = topic_factory()
    assert _produce(bootstrap, topic, [(b"a", b"1"), (b"b", b"2")]) == []
    assert [m.value() for m in read_all(bootstrap, topic)] == [b"1", b"2"]
    assert _produce(bootstrap, topic, [(b"c", b"3")]) == []
    assert [m.value() for m in read_all(bootstrap, topic)] == [b"1", b"2", b"3"]


def test_topics_made_by_the_reconciler_are_ready_to_read_and_made_once(kafka_broker: KafkaBroker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    names = [f"idem-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    topics = [DesiredTopic(n, partitions=2, config={"retention.ms": "3600000"}) for n in names]
    assert {r.action for r in ensure_topics(bootstrap, topics, timeout=30)} == {"created"}
    assert {r.action for r in ensure_topics(bootstrap, topics, timeout=30)} == {"unchanged"}  # already there
    assert set(names) <= _topics(bootstrap)
    assert end_offsets(bootstrap, names[0]) == {0: 0, 1: 0}


def test_empty_topic_reads_as_empty(topic_factory: Callable[..., str], kafka_broker: KafkaBroker) -> None:
    assert read_all(kafka_broker.bootstrap_servers, topic_factory(partitions=2)) == []


def test_invalid_topic_config_is_reported(kafka_broker: KafkaBroker) -> None:
    with pytest.raises(KafkaAdminError, match="bad-config"):
        ensure_topics(
            kafka_broker.bootstrap_servers,
            [DesiredTopic("bad-config", config={"cleanup.policy": "nonsense"})],
            timeout=30,
        )


def test_auto_create_is_off(kafka_broker: KafkaBroker) -> None:
    bootstrap = kafka_broker.bootstrap_servers
    topic = f"never-created-{uuid.uuid4().hex[:8]}"
    errors = _produce(bootstrap, topic, [(b"k", b"v")], **{"message.timeout.ms": 3000})
    assert len(errors) == 1
    assert errors[0].code() in {
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError._UNKNOWN_TOPIC,
        KafkaError._MSG_TIMED_OUT,
    }
    assert topic not in _topics(bootstrap)
    with pytest.raises(TopicError, match="does not exist"):
        read_all(bootstrap, topic, timeout=5)
    with pytest.raises(TopicError, match="does not exist"):
        end_offsets(bootstrap, topic)


def test_busy_port_is_refused_with_a_clear_message() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(BrokerError, match=rf"port {port} on 127.0.0.1 is in use"):
            KafkaBroker(port=port).start()


def test_startup_failure_reports_the_log_quickly(tmp_path: Path) -> None:
    started = time.monotonic()
    with pytest.raises(BrokerError, match=r"exited during startup(.|\n)*heap"):
        KafkaBroker(work_dir=tmp_path, heap="1k").start()
    assert time.monotonic() - started < 30


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    state = subprocess.run(
        ["ps", "-o", "stat=", "-p", str(pid)], check=False, capture_output=True, text=True
    ).stdout.strip()
    return bool(state) and not state.startswith("Z")


def test_lifecycle_with_fixed_port_and_kept_work_dir(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    broker = KafkaBroker(port=port, work_dir=tmp_path / "work")
    with broker:
        assert broker.bootstrap_servers == f"127.0.0.1:{port}"
        pid = broker.pid
        assert pid is not None and _alive(pid)
        assert os.getpgid(pid) == pid  # its own process group
        ensure_topics(broker.bootstrap_servers, [DesiredTopic("kept")], timeout=30)
    assert not _alive(pid)
    assert not broker.is_running()
    broker.stop()  # idempotent
    with pytest.raises(BrokerError, match="not started"):
        _ = broker.bootstrap_servers
    # A given work dir is kept, with its log, config and data.
    assert "Kafka Server started" in (tmp_path / "work" / "broker.log").read_text()
    assert "auto.create.topics.enable=false" in (tmp_path / "work" / "server.properties").read_text()
    assert (tmp_path / "work" / "data" / "meta.properties").is_file()


def test_temp_work_dir_is_removed_on_stop() -> None:
    broker = KafkaBroker().start()
    work_dir = broker.work_dir
    assert work_dir is not None and work_dir.is_dir()
    broker.stop()
    assert not work_dir.exists()


def _run_python(code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_interpreter_exit_stops_a_forgotten_broker() -> None:
    code = (
        "from sluice_local.kafka_broker import KafkaBroker\n"
        "broker = KafkaBroker().start()\n"
        "print(broker.pid, flush=True)\n"  # and exit without stop()
    )
    child = _run_python(code)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err
    assert not _alive(int(out.strip()))


def test_cli_prints_bootstrap_servers_and_stops_on_ctrl_c() -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "sluice_local.kafka_broker"],
        cwd=Path(__file__).parents[2],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        bootstrap = child.stdout.readline().strip()
        assert bootstrap.startswith("127.0.0.1:"), child.stderr.read() if child.stderr else ""
        assert "__consumer_offsets" not in _topics(bootstrap)  # answers; no group has used it yet
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=60)
        assert child.returncode == 0, err
        assert "Ctrl-C to stop" in err
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # The broker is gone with the CLI.
    host, port = bootstrap.split(":")
    with socket.socket() as probe:
        assert probe.connect_ex((host, int(port))) != 0
