{{/* Name of every object: the release name (helm limits it to 53 characters). */}}
{{- define "workflow.fullname" -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The pb_id as a label value: at most 63 characters, alphanumeric at both ends. */}}
{{- define "workflow.pbLabel" -}}
{{- regexReplaceAll "^[^A-Za-z0-9]+|[^A-Za-z0-9]+$" (.Values.pb_id | toString | trunc 63) "" -}}
{{- end -}}

{{- define "workflow.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name | quote }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: workflow
app.kubernetes.io/part-of: sdp
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
sdp.skao.int/pb-id: {{ include "workflow.pbLabel" . | quote }}
{{- end -}}

{{/*
One environment value as a quoted string. Numbers read from a values file are float64 in
helm; whole ones are printed without an exponent (1000000, not 1e+06). null becomes "".
*/}}
{{- define "workflow.envValue" -}}
{{- $v := .value -}}
{{- if kindIs "invalid" $v -}}
""
{{- else if or (kindIs "map" $v) (kindIs "slice" $v) -}}
{{- fail (printf "env.%s must be a scalar (string, number or boolean), got %s" .name (toJson $v)) -}}
{{- else if and (kindIs "float64" $v) (eq $v (floor $v)) -}}
{{- $v | int64 | toString | quote -}}
{{- else -}}
{{- $v | toString | quote -}}
{{- end -}}
{{- end -}}
