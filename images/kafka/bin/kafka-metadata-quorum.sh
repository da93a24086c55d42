#!/bin/bash
# kafka-metadata-quorum.sh: describe the KRaft quorum (org.apache.kafka.tools.MetadataQuorumCommand).
exec "${KAFKA_HOME:-/opt/kafka}/bin/kafka-run-class.sh" org.apache.kafka.tools.MetadataQuorumCommand "$@"
