"""A real single-node Apache Kafka broker (KRaft, combined broker+controller) run from Maven Central jars.

The broker listens on loopback only, has topic auto-creation switched off (topics are created explicitly,
as in production) and replication settings suited to one node. It runs in its own process group and is
stopped on ``stop()``, on leaving the ``with`` block, and at interpreter exit, so no ``java`` is left behind.

Usage::

    python -m sluice_local.kafka_broker [--port N] [--work-dir DIR]  # prints bootstrap servers; Ctrl-C stops

or from Python::

    with KafkaBroker() as broker:
        ensure_topics(broker.bootstrap_servers, [DesiredTopic("events")])
"""

from __future__ import annotations

import argparse
import base64
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from xml.sax.saxutils import quoteattr

from sluice_local.artifacts import ArtifactError, broker_jars, require_java
from sluice_local.processes import LOOPBACK, LoggedProcess, ManagedProcesses, interrupt_on_sigterm

NODE_ID = 1
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0
FORMAT_TIMEOUT_S = 120.0


class BrokerError(RuntimeError):
    """The broker could not be started (or stopped); the message says why and carries the log's tail."""


def new_cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, base64url without padding (22 characters).

    Like Kafka's own ``Uuid.randomUuid``, ids starting with ``-`` are skipped: a command line would read
    them as an option.
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):
            return cluster_id


def render_server_properties(
    *, port: int, controller_port: int, data_dir: Path, overrides: Mapping[str, str] | None = None
) -> str:
    """``server.properties`` of a combined KRaft broker+controller with node id 1 on loopback."""
    settings: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{LOOPBACK}:{controller_port}",
        "listeners": f"PLAINTEXT://{LOOPBACK}:{port},CONTROLLER://{LOOPBACK}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{LOOPBACK}:{port}",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(data_dir),
        # Topics are created explicitly (as the operator does in a cluster): a typo fails, it creates nothing.
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "default.replication.factor": "1",
        "min.insync.replicas": "1",
        # One node: every internal topic has a single replica, and few partitions so first use is quick.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # Sized for a 2-core test machine.
        "num.network.threads": "2",
        "num.io.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        "log.retention.hours": "168",
    }
    settings.update(overrides or {})
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def render_log4j2_config(log_file: Path) -> str:
    """A log4j2 XML configuration appending the broker's log to ``log_file`` (INFO, noisy loggers at WARN)."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName={quoteattr(str(log_file))} append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
  </Loggers>
</Configuration>
"""


class KafkaBroker(ManagedProcesses):
    """A single-node KRaft Kafka broker in a child ``java`` process; a context manager.

    ``port`` fixes the client port (default: a free one); ``work_dir`` keeps config, data and log there
    (default: a temp dir removed on stop); ``log_file`` defaults to ``<work dir>/broker.log``.
    """

    what = "Kafka broker"
    error = BrokerError
    ready_timeout = READY_TIMEOUT_S
    stop_timeout = STOP_TIMEOUT_S
    temp_prefix = "sluice-kafka-"

    def __init__(
        self,
        *,
        port: int | None = None,
        work_dir: Path | None = None,
        heap: str = "512m",
        log_file: Path | None = None,
    ) -> None:
        super().__init__(work_dir=work_dir)
        self._requested_port = port
        self._heap = heap
        self._given_log_file = Path(log_file) if log_file is not None else None
        self._log_file: Path | None = None
        self._port: int | None = None
        self._controller_port: int | None = None

    # -- properties ------------------------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``"127.0.0.1:PORT"`` for clients; only valid once started."""
        return f"{LOOPBACK}:{self._require(self._port)}"

    @property
    def port(self) -> int | None:
        """The client (PLAINTEXT) port, once started."""
        return self._port

    @property
    def controller_port(self) -> int | None:
        """The KRaft controller port, once started."""
        return self._controller_port

    @property
    def work_dir(self) -> Path | None:
        """Directory holding ``server.properties``, the log4j2 config and ``data/``, once started."""
        return self._work_dir

    @property
    def log_file(self) -> Path | None:
        """The broker's log (log4j2 output plus the JVM's stdout/stderr), once started."""
        return self._log_file

    @property
    def pid(self) -> int | None:
        """PID of the ``java`` process (also its process group id), while started."""
        return self.pids.get(self.what)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> KafkaBroker:
        """Format storage, launch the broker and wait until it serves metadata with itself registered.

        Raises BrokerError (port in use, early exit, not ready within 90 s) or ArtifactError (Java, jars).
        """
        return super().start()

    def stop(self) -> None:
        """SIGTERM the broker's process group, SIGKILL it after 30 s; remove the temp dir. Idempotent."""
        super().stop()
        if self._work_dir is None and self._given_log_file is None:
            self._log_file = None  # it was in the temp dir
        self._port = self._controller_port = None

    def _address(self) -> str | None:
        return f"{LOOPBACK}:{self._port}" if self._port is not None else None

    # -- steps of start() ------------------------------------------------------------------------------------

    def _start_processes(self, deadline: float) -> None:
        if self._requested_port is not None:
            self._check_port(self._requested_port)
        java = require_java(17)
        classpath = os.pathsep.join(str(jar) for jar in broker_jars())
        work_dir = self._prepare_work_dir()
        self._log_file = (self._given_log_file or work_dir / "broker.log").resolve()
        self._log_file.parent.mkdir(parents=True, exist_ok=True)
        self._port, self._controller_port = self._ports(2, self._requested_port)
        config = work_dir / "server.properties"
        config.write_text(
            render_server_properties(
                port=self._port, controller_port=self._controller_port, data_dir=work_dir / "data"
            )
        )
        log4j_config = work_dir / "log4j2.xml"
        log4j_config.write_text(render_log4j2_config(self._log_file))
        jvm = [java, f"-Dlog4j2.configurationFile={log4j_config}", "-cp", classpath]
        self._format_storage(jvm, config)
        command = [jvm[0], f"-Xmx{self._heap}", *jvm[1:], "kafka.Kafka", str(config)]
        broker = self._launch(self.what, command, log_file=self._log_file)
        self._await_registered(broker, deadline)

    def _format_storage(self, jvm: Sequence[str], config: Path) -> None:
        assert self._work_dir is not None
        if (self._work_dir / "data" / "meta.properties").exists():
            return  # a kept work_dir from an earlier run: reuse its cluster
        command = [*jvm, "kafka.tools.StorageTool", "format", "-t", new_cluster_id(), "-c", str(config)]
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=FORMAT_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"formatting Kafka storage took over {FORMAT_TIMEOUT_S:.0f} s") from exc
        if result.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage in {self._work_dir / 'data'} failed (exit {result.returncode}):\n"
                f"{(result.stdout + result.stderr).strip()}"
            )

    def _await_registered(self, broker: LoggedProcess, deadline: float) -> None:
        """Wait until the broker answers a metadata request and lists itself among the brokers."""
        from confluent_kafka.admin import AdminClient

        address = self.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": address, "logger": logging.getLogger(f"{__name__}.admin")})

        def problem() -> str | None:
            if not self._accepts_connections():
                return f"nothing listens on {address}"
            try:
                metadata = admin.list_topics(timeout=min(5.0, max(deadline - time.monotonic(), 0.1)))
            except Exception as exc:  # KafkaException: not answering yet
                return f"metadata request to {address} failed: {exc}"
            if NODE_ID not in metadata.brokers:
                return f"{address} answers, but the broker is not registered yet"
            return None

        self._wait_until_ready(broker, deadline, problem)

    def _accepts_connections(self) -> bool:
        assert self._port is not None
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            return probe.connect_ex((LOOPBACK, self._port)) == 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: start a broker, print its bootstrap servers, run until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m sluice_local.kafka_broker", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--port", type=int, help="client port on 127.0.0.1 (default: a free one)")
    parser.add_argument(
        "--work-dir", type=Path, help="keep config, data and broker.log here (default: temp dir)"
    )
    parser.add_argument("--heap", default="512m", help="JVM maximum heap (default: %(default)s)")
    args = parser.parse_args(argv)

    interrupt_on_sigterm()
    broker = KafkaBroker(port=args.port, work_dir=args.work_dir, heap=args.heap)
    try:
        broker.start()
        print(broker.bootstrap_servers, flush=True)
        print(
            f"Kafka {broker!r} started in {broker.startup_seconds:.1f} s; log: {broker.log_file}. "
            "Ctrl-C to stop.",
            file=sys.stderr,
            flush=True,
        )
        while (exited := broker.exited()) is None:
            time.sleep(0.5)
        print(f"error: {exited}", file=sys.stderr)
        return 1
    except (BrokerError, ArtifactError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
