#!/bin/bash
# kafka-server-start.sh SERVER_PROPERTIES: run a Kafka node (broker and/or KRaft controller) in the foreground,
# logging at INFO to stdout. SIGTERM makes a controlled shutdown.
set -euo pipefail
home=${KAFKA_HOME:-/opt/kafka}
[ $# -eq 1 ] || { echo "usage: kafka-server-start.sh SERVER_PROPERTIES" >&2; exit 2; }
export KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G}
export KAFKA_LOG4J_CONFIG=${KAFKA_LOG4J_CONFIG:-$home/config/log4j2.yaml}
exec "$home/bin/kafka-run-class.sh" kafka.Kafka "$1"
