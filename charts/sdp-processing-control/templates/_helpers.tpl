{{/* Prefix of every object name: the release name, short enough for any suffix used here. */}}
{{- define "sdp.name" -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "sdp.targetNamespace" -}}
{{- $ns := .Values.targetNamespace.name | default (printf "%s-sdp" .Release.Namespace) -}}
{{- if gt (len $ns) 63 -}}
{{- fail (printf "target namespace %q is longer than 63 characters: set targetNamespace.name" $ns) -}}
{{- end -}}
{{- $ns -}}
{{- end -}}

{{/* The etcd client Service, qualified so that workflows in the target namespace reach it too. */}}
{{- define "sdp.etcdHost" -}}
{{- include "sdp.name" . }}-etcd.{{ .Release.Namespace }}
{{- end -}}

{{/* Call with (dict "ctx" $ "component" "…"). */}}
{{- define "sdp.selector" -}}
app.kubernetes.io/name: {{ .ctx.Chart.Name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name | quote }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sdp.labels" -}}
{{ include "sdp.selector" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: sdp
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- end -}}

{{/* Call with (dict "ctx" $ "image" .Values.x.image). */}}
{{- define "sdp.image" -}}
{{- printf "%s:%s" .image.repository (.image.tag | default .ctx.Chart.AppVersion | toString) | quote -}}
{{- end -}}

{{/* Pod-level settings shared by every pod of the chart. */}}
{{- define "sdp.podSpec" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Settings both daemons read. */}}
{{- define "sdp.daemonEnv" -}}
- name: SDP_CONFIG_HOST
  value: {{ include "sdp.etcdHost" . | quote }}
- name: SDP_CONFIG_PORT
  value: "2379"
- name: SDP_HELM_NAMESPACE
  value: {{ include "sdp.targetNamespace" . | quote }}
- name: SDP_HTTP_ADDR
  value: "0.0.0.0:8080"
- name: SDP_LOG_LEVEL
  value: {{ .Values.log.level | quote }}
- name: SDP_LOG_JSON
  value: {{ .Values.log.json | toString | quote }}
{{- end -}}

{{/* Container parts both daemons share: HTTP port, probes, security context. */}}
{{- define "sdp.daemonContainer" -}}
ports:
  - name: http
    containerPort: 8080
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  initialDelaySeconds: 5
  periodSeconds: 10
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
{{- end -}}

{{/* Pod annotations of both daemons: Prometheus scrapes /metrics on the http port. */}}
{{- define "sdp.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: "8080"
prometheus.io/path: /metrics
{{- end -}}
