"""Fixtures shared by every tier: one local SparkSession per test session (UTC, with the Kafka connector), and one
real single-node Kafka broker per session, started on first use."""

from __future__ import annotations

import os
import sys

import pytest


@pytest.fixture(scope="session")
def spark():
    """A local[2] SparkSession with the pinned Kafka connector jars on its class path.

    One JVM serves the whole test session; the connector jars come from the project's cache (resolved from Maven
    Central on first use), so the same session serves unit tests and Kafka-backed integration tests.
    """
    from pyspark.sql import SparkSession

    from sluice_local.artifacts import connector_jars

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("sluice-tests")
        .config("spark.jars", ",".join(str(j) for j in connector_jars()))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory):
    """A started single-node KRaft broker, shared by the session; its log is kept in pytest's temp dir."""
    log_file = tmp_path_factory.mktemp("kafka-broker") / "broker.log"
    from sluice_local.kafka_broker import KafkaBroker

    with KafkaBroker(log_file=log_file) as broker:
        yield broker
