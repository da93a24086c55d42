"""The sensor-event generator: samples the lab's events (plus late and malformed ones), sent to Kafka.

``model`` holds the pure sampling (no Kafka); ``producer`` the confluent-kafka loop; ``__main__`` the CLI
(``python -m spark_jobs.generator`` or ``sluice-generator``).
"""
