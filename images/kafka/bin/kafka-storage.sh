#!/bin/bash
# kafka-storage.sh: format a log directory for KRaft, or print a random cluster id (kafka.tools.StorageTool).
exec "${KAFKA_HOME:-/opt/kafka}/bin/kafka-run-class.sh" kafka.tools.StorageTool "$@"
