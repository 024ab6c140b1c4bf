{{- /*
  The container's env besides the config Secret: the generated token, the database URL from an existing
  Secret, JUPYTERHUB_*, extraEnv.
*/}}
{{- define "binder-service.service.env" -}}
{{- $baseUrl := include "binder-service.baseUrl" . }}
{{- with .Values.database.existingSecret }}
{{- if .name }}
- name: BINDER_SERVICE_DB_URL
  valueFrom:
    secretKeyRef:
      name: {{ .name | quote }}
      key: {{ .key | quote }}
{{- end }}
{{- end }}
{{- if include "binder-service.generatedToken" . }}
- name: BINDER_SERVICE_API_TOKENS
  valueFrom:
    secretKeyRef:
      name: {{ include "binder-service.auth.fullname" . }}
      key: token
{{- end }}
{{- if .Values.jupyterhub.enabled }}
{{- $hub := .Values.jupyterhub }}
- name: JUPYTERHUB_API_URL
  value: {{ include "binder-service.hub.apiUrl" . | quote }}
- name: JUPYTERHUB_API_TOKEN
  valueFrom:
    secretKeyRef:
      {{- if $hub.apiToken }}
      name: {{ include "binder-service.auth.fullname" . }}
      key: hub-api-token
      {{- else }}
      name: {{ $hub.existingSecret.name | quote }}
      key: {{ $hub.existingSecret.key | default (printf "hub.services.%s.apiToken" $hub.serviceName) | quote }}
      {{- end }}
- name: JUPYTERHUB_SERVICE_NAME
  value: {{ $hub.serviceName | quote }}
- name: JUPYTERHUB_SERVICE_PREFIX
  value: {{ $baseUrl | quote }}
- name: JUPYTERHUB_BASE_URL
  value: {{ include "binder-service.hub.baseUrl" . | quote }}
- name: JUPYTERHUB_CLIENT_ID
  value: {{ printf "service-%s" $hub.serviceName | quote }}
- name: JUPYTERHUB_OAUTH_CALLBACK_URL
  value: {{ printf "%soauth_callback" $baseUrl | quote }}
{{- with $hub.host }}
- name: JUPYTERHUB_HOST
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}
