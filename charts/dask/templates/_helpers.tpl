{{/* Prefix of every object: the release name (helm limits it to 53 characters). */}}
{{- define "dask.fullname" -}}
{{- .Release.Name | trunc 53 | trimSuffix "-" -}}
{{- end -}}

{{/* The scheduler Service; workflows compute it as <release>-scheduler.<namespace>:8786. */}}
{{- define "dask.scheduler" -}}
{{- include "dask.fullname" . }}-scheduler
{{- end -}}

{{- define "dask.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name | quote }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "dask.labels" -}}
{{ include "dask.selector" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sdp
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- end -}}

{{/*
A flag that may arrive as a boolean or, from an untyped writer, as the string "true"/"false".
*/}}
{{- define "dask.enabled" -}}
{{- if eq (toString .) "true" }}true{{ end -}}
{{- end -}}

{{- define "dask.serviceType" -}}
{{- if not (has . (list "ClusterIP" "NodePort" "LoadBalancer")) -}}
{{- fail (printf "serviceType must be ClusterIP, NodePort or LoadBalancer, got %v" .) -}}
{{- end -}}
{{- . -}}
{{- end -}}
