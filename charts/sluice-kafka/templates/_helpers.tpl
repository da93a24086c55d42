{{/* Names, labels and derived settings of the sluice-kafka chart. */}}

{{- define "sluice-kafka.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release name, plus the chart name unless the release name already contains it. Kept to 52 characters:
the StatefulSet adds "-<ordinal>" and a controller-revision hash to it. */}}
{{- define "sluice-kafka.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sluice-kafka.headless" -}}
{{- printf "%s-headless" (include "sluice-kafka.fullname" .) }}
{{- end }}

{{- define "sluice-kafka.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice-kafka.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sluice-kafka.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice-kafka.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sluice
app.kubernetes.io/component: kafka
{{- end }}

{{- define "sluice-kafka.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The DNS name of node ORDINAL: <statefulset>-<ordinal>.<headless service>.<namespace>.svc.<cluster domain>. */}}
{{- define "sluice-kafka.nodeHost" -}}
{{- $root := index . 0 }}
{{- printf "%s-%d.%s.%s.svc.%s" (include "sluice-kafka.fullname" $root) (index . 1) (include "sluice-kafka.headless" $root) $root.Release.Namespace $root.Values.clusterDomain }}
{{- end }}

{{/* controller.quorum.voters: every node, as <node id>@<host>:<controller port>. */}}
{{- define "sluice-kafka.voters" -}}
{{- $voters := list }}
{{- range $i := until (int .Values.replicas) }}
{{- $voters = append $voters (printf "%d@%s:%d" $i (include "sluice-kafka.nodeHost" (list $ $i)) (int $.Values.ports.controller)) }}
{{- end }}
{{- join "," $voters }}
{{- end }}

{{/* Replication factor of new and internal topics: the value, else min(3, replicas). */}}
{{- define "sluice-kafka.replicationFactor" -}}
{{- if gt (int .Values.replicationFactor) 0 }}
{{- if gt (int .Values.replicationFactor) (int .Values.replicas) }}
{{- fail (printf "replicationFactor %d is larger than replicas %d: a topic cannot have more copies than there are Kafka nodes" (int .Values.replicationFactor) (int .Values.replicas)) }}
{{- end }}
{{- int .Values.replicationFactor }}
{{- else }}
{{- min 3 (int .Values.replicas) }}
{{- end }}
{{- end }}

{{/* min.insync.replicas: the value, else replication factor - 1 (at least 1). */}}
{{- define "sluice-kafka.minInsyncReplicas" -}}
{{- $rf := int (include "sluice-kafka.replicationFactor" .) }}
{{- if gt (int .Values.minInsyncReplicas) 0 }}
{{- if gt (int .Values.minInsyncReplicas) $rf }}
{{- fail (printf "minInsyncReplicas %d is larger than the replication factor %d: every write would be refused" (int .Values.minInsyncReplicas) $rf) }}
{{- end }}
{{- int .Values.minInsyncReplicas }}
{{- else }}
{{- max 1 (sub $rf 1) }}
{{- end }}
{{- end }}

{{/* The KRaft cluster id: the value, else 21 hex digits of sha256(namespace/release) plus "A" — 22 base64url
characters whose last one carries no stray bits, so they decode to exactly 16 bytes as Kafka requires. */}}
{{- define "sluice-kafka.clusterId" -}}
{{- if .Values.clusterId }}
{{- .Values.clusterId }}
{{- else }}
{{- printf "%s/%s" .Release.Namespace .Release.Name | sha256sum | trunc 21 }}A
{{- end }}
{{- end }}

{{- define "sluice-kafka.containerSecurityContext" -}}
allowPrivilegeEscalation: false
runAsNonRoot: true
runAsUser: {{ .Values.runAsUser }}
runAsGroup: {{ .Values.runAsUser }}
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end }}
