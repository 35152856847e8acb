{{/* Refuses to render a release that nothing of could start: every pod needs a database, and the workers and the
topics Job a broker. Included by config.yaml, so every render (install, upgrade, template) checks it. */}}
{{- define "mcp-todo.required" -}}
{{- $_ := required "database: set database.url (postgresql://...) or database.existingSecret (a Secret holding DATABASE_URL under database.existingSecretKey); without a database no pod can start" (.Values.database.existingSecret | default .Values.database.url) -}}
{{- $_ := required "kafka.bootstrapServers: set it to your Kafka / Redpanda bootstrap servers (host:port[,host:port]); the workers and the topics Job need a broker" .Values.kafka.bootstrapServers -}}
{{- end -}}

{{/* Names and labels. */}}
{{- define "mcp-todo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mcp-todo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "mcp-todo.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mcp-todo.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mcp-todo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mcp-todo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "mcp-todo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "mcp-todo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* The labels of one component (server, notifier, recurrer, migrate, topics): call with (list $ "server"). */}}
{{- define "mcp-todo.componentLabels" -}}
{{ include "mcp-todo.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "mcp-todo.componentSelector" -}}
{{ include "mcp-todo.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "mcp-todo.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "mcp-todo.secretName" -}}
{{ include "mcp-todo.fullname" . }}-secrets
{{- end -}}

{{- define "mcp-todo.configName" -}}
{{ include "mcp-todo.fullname" . }}-config
{{- end -}}

{{/* MCP_TODO_PUBLIC_URL: the value given, else https://<first ingress host> when the Ingress is on. */}}
{{- define "mcp-todo.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{ .Values.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
https://{{ (index .Values.ingress.hosts 0).host }}
{{- end -}}
{{- end -}}

{{/* The non-secret settings every process reads, as the ConfigMap's data. */}}
{{- define "mcp-todo.configData" -}}
{{- $data := dict -}}
{{- range $key, $value := .Values.config -}}
{{- $_ := set $data $key (toString $value) -}}
{{- end -}}
{{- with .Values.kafka -}}
{{- if .bootstrapServers -}}
{{- $_ := set $data "KAFKA_BOOTSTRAP_SERVERS" .bootstrapServers -}}
{{- end -}}
{{- $_ := set $data "KAFKA_SECURITY_PROTOCOL" .securityProtocol -}}
{{- $_ := set $data "KAFKA_SASL_MECHANISM" .saslMechanism -}}
{{- $_ := set $data "KAFKA_TOPIC_PREFIX" .topicPrefix -}}
{{- $_ := set $data "KAFKA_ENABLE_IDEMPOTENCE" (toString .enableIdempotence) -}}
{{- end -}}
{{- with .Values.oauth -}}
{{- if .issuer -}}
{{- $_ := set $data "MCP_TODO_OAUTH_ISSUER" .issuer -}}
{{- $_ := set $data "MCP_TODO_OAUTH_AUDIENCE" .audience -}}
{{- $_ := set $data "MCP_TODO_OAUTH_SCOPES" .scopes -}}
{{- $_ := set $data "MCP_TODO_OAUTH_USER_CLAIM" .userClaim -}}
{{- end -}}
{{- end -}}
{{- $publicUrl := include "mcp-todo.publicUrl" . -}}
{{- if $publicUrl -}}
{{- $_ := set $data "MCP_TODO_PUBLIC_URL" $publicUrl -}}
{{- end -}}
{{- if $publicUrl -}}
{{/* DNS-rebinding protection: the names the server is reached by, from outside and inside the cluster. */}}
{{- $svc := include "mcp-todo.fullname" . -}}
{{- $hosts := list $svc (printf "%s.%s" $svc .Release.Namespace) (printf "%s.%s.svc" $svc .Release.Namespace) -}}
{{- $hosts = append $hosts (urlParse $publicUrl).hostname -}}
{{- if .Values.ingress.enabled -}}
{{- range .Values.ingress.hosts -}}
{{- $hosts = append $hosts .host -}}
{{- end -}}
{{- end -}}
{{- $_ := set $data "MCP_TODO_ALLOWED_HOSTS" (join " " (uniq $hosts)) -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/* The chart's own Secret: whatever secret values were given without an existing Secret. */}}
{{- define "mcp-todo.secretData" -}}
{{- $data := dict -}}
{{- if and (not .Values.database.existingSecret) .Values.database.url -}}
{{- $_ := set $data "DATABASE_URL" .Values.database.url -}}
{{- end -}}
{{- if and (not .Values.database.existingSecret) .Values.database.directUrl -}}
{{- $_ := set $data "MCP_TODO_DIRECT_DATABASE_URL" .Values.database.directUrl -}}
{{- end -}}
{{- with .Values.kafka.sasl -}}
{{- if and (not .existingSecret) .username -}}
{{- $_ := set $data "KAFKA_SASL_USERNAME" .username -}}
{{- $_ := set $data "KAFKA_SASL_PASSWORD" .password -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.notify.existingSecret) .Values.notify.urls -}}
{{- $_ := set $data "MCP_TODO_NOTIFY_URLS" .Values.notify.urls -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/* Environment of every mcp-todo container: the ConfigMap, then each secret from its Secret. */}}
{{- define "mcp-todo.env" -}}
envFrom:
  - configMapRef:
      name: {{ include "mcp-todo.configName" . }}
  {{- if .Values.oauth.existingSecret }}
  - secretRef:
      name: {{ .Values.oauth.existingSecret }}
  {{- end }}
env:
  # Required: without a URL the pod fails to start with "couldn't find key DATABASE_URL", never an embedded database.
  - name: DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ .Values.database.existingSecret | default (include "mcp-todo.secretName" .) }}
        key: {{ if .Values.database.existingSecret }}{{ .Values.database.existingSecretKey }}{{ else }}DATABASE_URL{{ end }}
  {{- if or (and .Values.database.existingSecret .Values.database.existingSecretDirectKey) (and (not .Values.database.existingSecret) .Values.database.directUrl) }}
  # DATABASE_URL is a transaction-mode pooler: LISTEN, session locks and migrations take this one.
  - name: MCP_TODO_DIRECT_DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ .Values.database.existingSecret | default (include "mcp-todo.secretName" .) }}
        key: {{ if .Values.database.existingSecret }}{{ .Values.database.existingSecretDirectKey }}{{ else }}MCP_TODO_DIRECT_DATABASE_URL{{ end }}
  {{- end }}
  {{- with .Values.kafka.sasl }}
  {{- if or .existingSecret .username }}
  - name: KAFKA_SASL_USERNAME
    valueFrom:
      secretKeyRef:
        name: {{ .existingSecret | default (include "mcp-todo.secretName" $) }}
        key: {{ if .existingSecret }}{{ .usernameKey }}{{ else }}KAFKA_SASL_USERNAME{{ end }}
  - name: KAFKA_SASL_PASSWORD
    valueFrom:
      secretKeyRef:
        name: {{ .existingSecret | default (include "mcp-todo.secretName" $) }}
        key: {{ if .existingSecret }}{{ .passwordKey }}{{ else }}KAFKA_SASL_PASSWORD{{ end }}
  {{- end }}
  {{- end }}
  {{- if or .Values.notify.existingSecret .Values.notify.urls }}
  - name: MCP_TODO_NOTIFY_URLS
    valueFrom:
      secretKeyRef:
        name: {{ .Values.notify.existingSecret | default (include "mcp-todo.secretName" .) }}
        key: MCP_TODO_NOTIFY_URLS
  {{- end }}
{{- end -}}

{{/* Pod-level settings shared by every pod: call with (list $ .Values.server) or similar. */}}
{{- define "mcp-todo.podSpec" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
automountServiceAccountToken: false
enableServiceLinks: false
securityContext:
  {{- toYaml $.Values.podSecurityContext | nindent 2 }}
{{- with $.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $component.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  # The root filesystem is read-only; /tmp is the one writable place.
  - name: tmp
    emptyDir:
      sizeLimit: 64Mi
{{- end -}}

{{/* Container-level settings shared by every container. */}}
{{- define "mcp-todo.container" -}}
image: {{ include "mcp-todo.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
{{ include "mcp-todo.env" . }}
{{- end -}}

{{/* Rolls the pods when a setting changes. */}}
{{- define "mcp-todo.checksums" -}}
checksum/config: {{ include "mcp-todo.configData" . | sha256sum }}
checksum/secret: {{ include "mcp-todo.secretData" . | sha256sum }}
{{- end -}}

{{/* Prometheus scrape annotations: call with (list $ port path). */}}
{{- define "mcp-todo.scrapeAnnotations" -}}
{{- if (index . 0).Values.metrics.podAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ index . 1 | quote }}
prometheus.io/path: {{ index . 2 }}
{{- end -}}
{{- end -}}
