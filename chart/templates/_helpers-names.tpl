{{- /*
  Names of every resource, in one place so a parent chart can reuse them
  (include "binder-service.fullname" with the subchart's context).
*/}}

{{- define "binder-service.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "binder-service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "binder-service.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- /* The service (Deployment, Service, Ingress, ServiceAccount, Role): <fullname> */}}
{{- define "binder-service.service.fullname" -}}
{{- include "binder-service.fullname" . }}
{{- end }}

{{- define "binder-service.config.fullname" -}}
{{- include "binder-service.fullname" . | trunc 56 | trimSuffix "-" }}-config
{{- end }}

{{- define "binder-service.auth.fullname" -}}
{{- include "binder-service.fullname" . | trunc 58 | trimSuffix "-" }}-auth
{{- end }}

{{- /* The SQLite build store's PersistentVolumeClaim (persistence.existingClaim, else the chart's). */}}
{{- define "binder-service.state.claimName" -}}
{{- .Values.persistence.existingClaim | default (printf "%s-state" (include "binder-service.fullname" . | trunc 57 | trimSuffix "-")) }}
{{- end }}

{{- define "binder-service.docker-api.fullname" -}}
{{- include "binder-service.fullname" . | trunc 52 | trimSuffix "-" }}-docker-api
{{- end }}

{{- define "binder-service.build.fullname" -}}
{{- include "binder-service.fullname" . | trunc 57 | trimSuffix "-" }}-build
{{- end }}

{{- /* The build pods' docker config.json: the user's existing Secret, else ours when credentials are given. */}}
{{- define "binder-service.push-secret.fullname" -}}
{{- if .Values.registry.existingSecret }}
{{- .Values.registry.existingSecret }}
{{- else if .Values.registry.username }}
{{- include "binder-service.fullname" . | trunc 51 | trimSuffix "-" }}-push-secret
{{- end }}
{{- end }}

{{- /*
  Host paths of the docker-api DaemonSet, scoped to namespace and release so two installs can share a node.
*/}}
{{- define "binder-service.docker-api.hostDir" -}}
{{- printf "%s-%s" .Release.Namespace .Release.Name }}
{{- end }}

{{- define "binder-service.docker-api.runDir" -}}
{{- printf "%s/%s/docker-api" (.Values.dockerApi.hostRunRoot | trimSuffix "/") (include "binder-service.docker-api.hostDir" .) }}
{{- end }}

{{- define "binder-service.docker-api.dataDir" -}}
{{- printf "%s/%s/docker-api" (.Values.dockerApi.hostDataRoot | trimSuffix "/") (include "binder-service.docker-api.hostDir" .) }}
{{- end }}

{{- define "binder-service.docker-api.socket" -}}
{{- $socket := printf "%s/docker-api.sock" (include "binder-service.docker-api.runDir" .) }}
{{- /* A unix socket path has at most 107 bytes. */}}
{{- if gt (len $socket) 107 }}
{{- fail (printf "the docker-api socket path %s is longer than a unix socket allows (107); use a shorter dockerApi.hostRunRoot, namespace or release name" $socket) }}
{{- end }}
{{- $socket }}
{{- end }}

{{- /*
  The path prefix the service is served under: config.base_url, else the JupyterHub service prefix
  (<hub base url>services/<name>/) when paired with a hub, else "/". Always "/x/y/" shaped.
*/}}
{{- define "binder-service.baseUrl" -}}
{{- $url := trimAll "/" (.Values.config.base_url | default "/") }}
{{- if .Values.jupyterhub.enabled }}
{{- $prefix := printf "%sservices/%s/" (include "binder-service.hub.baseUrl" .) .Values.jupyterhub.serviceName }}
{{- /* The hub's proxy forwards <prefix>... unchanged: the service must serve exactly there. */}}
{{- if and $url (ne (printf "/%s/" $url) $prefix) }}
{{- fail (printf "config.base_url (%s) differs from the hub's service prefix %s: leave it out, jupyterhub.baseUrl and jupyterhub.serviceName make it" .Values.config.base_url $prefix) }}
{{- end }}
{{- $url = trimAll "/" $prefix }}
{{- end }}
{{- if $url }}{{ printf "/%s/" $url }}{{ else }}/{{ end }}
{{- end }}

{{- /* The hub's base URL (jupyterhub.baseUrl, z2jh's hub.baseUrl), "/x/y/" shaped. */}}
{{- define "binder-service.hub.baseUrl" -}}
{{- $url := trimAll "/" .Values.jupyterhub.baseUrl }}
{{- if $url }}{{ printf "/%s/" $url }}{{ else }}/{{ end }}
{{- end }}

{{- /* The hub's API: jupyterhub.apiUrl, else z2jh's `hub` Service under the hub's base URL. */}}
{{- define "binder-service.hub.apiUrl" -}}
{{- .Values.jupyterhub.apiUrl | default (printf "http://hub:8081%shub/api" (include "binder-service.hub.baseUrl" .)) }}
{{- end }}
