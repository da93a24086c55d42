#!/bin/bash
# kafka-topics.sh: create, list, describe and delete topics (org.apache.kafka.tools.TopicCommand).
exec "${KAFKA_HOME:-/opt/kafka}/bin/kafka-run-class.sh" org.apache.kafka.tools.TopicCommand "$@"
