"""Local runtime for Sluice: pinned jars from Maven Central, a real single-node Kafka broker, topic helpers.

Nothing here runs at import time; see :mod:`sluice_local.artifacts`, :mod:`sluice_local.kafka_broker` and
:mod:`sluice_local.topics`.
"""
