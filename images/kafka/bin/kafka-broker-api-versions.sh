#!/bin/bash
# kafka-broker-api-versions.sh: list every broker and the API versions it supports (org.apache.kafka.tools.BrokerApiVersionsCommand).
exec "${KAFKA_HOME:-/opt/kafka}/bin/kafka-run-class.sh" org.apache.kafka.tools.BrokerApiVersionsCommand "$@"
