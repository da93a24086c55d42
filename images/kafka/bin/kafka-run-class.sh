#!/bin/bash
# kafka-run-class.sh MAIN_CLASS [ARG...]: run a Kafka main class on the jars in $KAFKA_HOME/libs.
#   KAFKA_HEAP_OPTS  JVM heap (default -Xmx256m; kafka-server-start.sh defaults to -Xmx1G)
#   KAFKA_OPTS       more JVM options
#   KAFKA_LOG4J_CONFIG  log4j2 configuration (default $KAFKA_HOME/config/tools-log4j2.yaml: warnings only)
#   LOG_DIR          kafka.logs.dir for the configuration (default $KAFKA_HOME/logs)
set -euo pipefail
home=${KAFKA_HOME:-/opt/kafka}
[ $# -ge 1 ] || { echo "usage: kafka-run-class.sh MAIN_CLASS [ARG...]" >&2; exit 2; }
main=$1
shift
java=${JAVA_HOME:+$JAVA_HOME/bin/}java
# shellcheck disable=SC2086 # KAFKA_HEAP_OPTS and KAFKA_OPTS hold several options
exec "$java" ${KAFKA_HEAP_OPTS:--Xmx256m} ${KAFKA_OPTS:-} \
  -Dlog4j2.configurationFile="${KAFKA_LOG4J_CONFIG:-$home/config/tools-log4j2.yaml}" \
  -Dkafka.logs.dir="${LOG_DIR:-$home/logs}" \
  -cp "$home/libs/*" "$main" "$@"
