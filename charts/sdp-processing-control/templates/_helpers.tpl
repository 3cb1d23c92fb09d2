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

{{/* The etcd StatefulSet; its client Service has the same name. */}}
{{- define "sdp.etcdName" -}}
{{- include "sdp.name" . }}-etcd
{{- end -}}

{{/* Governing (headless) Service of the etcd StatefulSet: members' DNS names and peers. */}}
{{- define "sdp.etcdHeadless" -}}
{{- include "sdp.etcdName" . }}-headless
{{- end -}}

{{/* Domain of the members: <member>.<this> resolves to one member's pod. */}}
{{- define "sdp.etcdDomain" -}}
{{- include "sdp.etcdHeadless" . }}.{{ .Release.Namespace }}.svc
{{- end -}}

{{/* The etcd client Service, qualified so that workflows in the target namespace reach it too. */}}
{{- define "sdp.etcdHost" -}}
{{- include "sdp.etcdName" . }}.{{ .Release.Namespace }}
{{- end -}}

{{/* Number of etcd members, checked: 1, 3, 5 or 7, and a cluster only with persistence. */}}
{{- define "sdp.etcdReplicas" -}}
{{- $n := .Values.etcd.replicas | int -}}
{{- if not (has $n (list 1 3 5 7)) -}}
{{- fail (printf "etcd.replicas must be 1, 3, 5 or 7 (an odd number keeps a majority), got %v" .Values.etcd.replicas) -}}
{{- end -}}
{{- if and (gt $n 1) (not .Values.etcd.persistence.enabled) -}}
{{- fail "etcd.replicas > 1 needs etcd.persistence.enabled: a member restarted on an empty emptyDir cannot rejoin its cluster" -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{/* http, or https with etcd.tls.enabled. */}}
{{- define "sdp.etcdScheme" -}}
{{- if .Values.etcd.tls.enabled }}https{{ else }}http{{ end -}}
{{- end -}}

{{/*
SDP_CONFIG_HOST of everything that talks to etcd: the client Service for one member; for a
cluster every member's client address, so that clients fail over when one member dies.
*/}}
{{- define "sdp.configHost" -}}
{{- $n := include "sdp.etcdReplicas" . | int -}}
{{- if eq $n 1 -}}
{{- include "sdp.etcdHost" . -}}
{{- else -}}
{{- $domain := include "sdp.etcdDomain" . -}}
{{- $name := include "sdp.etcdName" . -}}
{{- $hosts := list -}}
{{- range $i := until $n -}}
{{- $hosts = append $hosts (printf "%s-%d.%s:2379" $name $i $domain) -}}
{{- end -}}
{{- join "," $hosts -}}
{{- end -}}
{{- end -}}

{{/* The Secret named by etcd.auth / etcd.tls, required when that option is on. */}}
{{- define "sdp.authSecret" -}}
{{- required "etcd.auth.enabled needs etcd.auth.existingSecret: a Secret with root-password, username and password" .Values.etcd.auth.existingSecret -}}
{{- end -}}
{{- define "sdp.tlsSecret" -}}
{{- required "etcd.tls.enabled needs etcd.tls.existingSecret: a Secret with tls.crt, tls.key and ca.crt" .Values.etcd.tls.existingSecret -}}
{{- end -}}

{{/* Secret in the target namespace handed to workflows (config_secret), "" without auth/TLS. */}}
{{- define "sdp.workflowConfigSecret" -}}
{{- if or .Values.etcd.auth.enabled .Values.etcd.tls.enabled -}}
{{- .Values.workflows.configSecret | default (printf "%s-etcd-client" (include "sdp.name" .)) -}}
{{- end -}}
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

{{/*
How every client of etcd in this chart connects: SDP_CONFIG_HOST, the port, and with
etcd.tls / etcd.auth the protocol, CA and credentials (from the Secrets, never in values).
*/}}
{{- define "sdp.configEnv" -}}
- name: SDP_CONFIG_HOST
  value: {{ include "sdp.configHost" . | quote }}
- name: SDP_CONFIG_PORT
  value: "2379"
{{- with .Values.configPrefix }}
- name: SDP_CONFIG_PREFIX
  value: {{ . | quote }}
{{- end }}
{{- if .Values.etcd.tls.enabled }}
- name: SDP_CONFIG_PROTOCOL
  value: https
- name: SDP_CONFIG_CERT
  value: /etc/sdp-config/ca.crt
{{- end }}
{{- if .Values.etcd.auth.enabled }}
- name: SDP_CONFIG_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "sdp.authSecret" . }}
      key: username
- name: SDP_CONFIG_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "sdp.authSecret" . }}
      key: password
{{- end }}
{{- end -}}

{{/* The CA of etcd.tls at /etc/sdp-config/ca.crt: volume and mount (use with etcd.tls.enabled). */}}
{{- define "sdp.configCaVolume" -}}
- name: etcd-ca
  secret:
    secretName: {{ include "sdp.tlsSecret" . }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end -}}
{{- define "sdp.configCaMount" -}}
- name: etcd-ca
  mountPath: /etc/sdp-config
  readOnly: true
{{- end -}}

{{/* Settings both daemons read. */}}
{{- define "sdp.daemonEnv" -}}
{{ include "sdp.configEnv" . }}
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

{{/* A Service in front of one daemon's http port (for port-forward and the ServiceMonitor). */}}
{{- define "sdp.daemonService" -}}
{{- $sel := dict "ctx" .ctx "component" .component -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "sdp.name" .ctx }}-{{ .component }}
  labels:
    {{- include "sdp.labels" $sel | nindent 4 }}
spec:
  selector:
    {{- include "sdp.selector" $sel | nindent 4 }}
  ports:
    - name: http
      port: 8080
      targetPort: http
{{- end -}}
