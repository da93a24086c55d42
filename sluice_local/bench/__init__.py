"""``python -m sluice_local bench``: Sluice measured against the limits of the machine it runs on.

Every figure is a ratio against a reference measured in the same run (Kafka's own producer and consumer tools,
Spark in batch on the same events, Sluice before the change, a peer stream processor), so that figures taken on
shared machines whose speed drifts stay comparable. See :mod:`sluice_local.bench.cli` for the figures and
``README.md`` ("Performance") for a full run's results.
"""
