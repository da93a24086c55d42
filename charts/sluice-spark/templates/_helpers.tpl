{{/* Names and labels of the sluice-spark chart. */}}

{{- define "sluice-spark.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release name, plus the chart name unless the release name already contains it (52 characters: objects
add "-master", "-worker" and hashes to it). */}}
{{- define "sluice-spark.fullname" -}}
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

{{/* Selector labels of one component (master or worker): pass (list $ "master"). */}}
{{- define "sluice-spark.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice-spark.name" (index . 0) }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "sluice-spark.labels" -}}
{{- $root := index . 0 }}
helm.sh/chart: {{ printf "%s-%s" $root.Chart.Name $root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sluice-spark.selectorLabels" . }}
app.kubernetes.io/version: {{ $root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $root.Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end }}

{{- define "sluice-spark.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "sluice-spark.masterUrl" -}}
{{- printf "spark://%s-master:%d" (include "sluice-spark.fullname" .) (int .Values.master.port) }}
{{- end }}

{{/* JVM options turning on Spark's PrometheusServlet sink (spark.metrics.conf.* instead of a metrics.properties
file): each daemon serves /metrics/prometheus on its web UI, the master its own metrics at /metrics/master/prometheus
and its applications' at /metrics/applications/prometheus. */}}
{{- define "sluice-spark.metricsJavaOpts" -}}
{{- join " " (list
  "-Dspark.metrics.conf.*.sink.prometheusServlet.class=org.apache.spark.metrics.sink.PrometheusServlet"
  "-Dspark.metrics.conf.*.sink.prometheusServlet.path=/metrics/prometheus"
  "-Dspark.metrics.conf.master.sink.prometheusServlet.path=/metrics/master/prometheus"
  "-Dspark.metrics.conf.applications.sink.prometheusServlet.path=/metrics/applications/prometheus") }}
{{- end }}

{{- define "sluice-spark.checkpointClaim" -}}
{{- default (printf "%s-checkpoints" (include "sluice-spark.fullname" .)) .Values.sharedCheckpoints.existingClaim }}
{{- end }}

{{/* The pod-level and container-level security settings of every pod (PodSecurity "restricted"; uid 185 is the
image's spark user). */}}
{{- define "sluice-spark.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 185
runAsGroup: 185
fsGroup: 185
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "sluice-spark.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end }}

{{- define "sluice-spark.scheduling" -}}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
