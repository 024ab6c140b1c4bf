{{- /*
  Labels: the standard app.kubernetes.io/* set. Selectors use name + instance + component only, since
  the others change on upgrade. Call the component helpers with (dict "root" $ "component" "docker-api").
*/}}

{{- define "binder-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "binder-service.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "binder-service.labels" -}}
{{ include "binder-service.selectorLabels" . }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/part-of: binder-service
{{- with .root.Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- /*
  Labels the service puts on build pods (k8s_build_labels); the executor adds name=binder-service and
  component=build. The build NetworkPolicy selects component=build plus this instance label.
*/}}
{{- define "binder-service.build.labels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/part-of: binder-service
{{- end }}

{{- define "binder-service.build.selectorLabels" -}}
app.kubernetes.io/component: build
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}
