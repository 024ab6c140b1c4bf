{{- /*
  The build store (docs: state.md). "shared": PostgreSQL, its URL in config.db_url or in the Secret
  database.existingSecret names; several replicas share it. "sqlite": a file in the state directory,
  on the persistence volume; it has one owner, so one replica, and pods are replaced with Recreate.
*/}}
{{- define "binder-service.store" -}}
{{- $url := .Values.config.db_url | default "" | toString }}
{{- if and $url .Values.database.existingSecret.name }}
{{- fail "config.db_url and database.existingSecret.name both give the build store's URL: set one of them" }}
{{- end }}
{{- if or .Values.database.existingSecret.name (and $url (not (hasPrefix "sqlite" $url))) }}shared{{ else }}sqlite{{ end }}
{{- end }}

{{- /* Where the state volume is mounted: the service's state_dir. */}}
{{- define "binder-service.stateDir" -}}
/var/lib/binder-service
{{- end }}

{{- /* Fails the render when several replicas would each keep a store of their own. */}}
{{- define "binder-service.store.check" -}}
{{- $replicas := int .Values.replicas }}
{{- if and (gt $replicas 1) (eq (include "binder-service.store" .) "sqlite") }}
{{- fail (printf "replicas: %d needs a build store the replicas share: set config.db_url to a PostgreSQL URL (postgresql+asyncpg://user:password@host/db), or database.existingSecret.name to a Secret holding it. Without one each replica would keep a history of its own; a SQLite store has one owner, so use replicas: 1 (docs: chart, \"The build store\")" $replicas) }}
{{- end }}
{{- end }}

{{- /* "true" when the chart makes the store's PersistentVolumeClaim. */}}
{{- define "binder-service.state.makeClaim" -}}
{{- if and (eq (include "binder-service.store" .) "sqlite") .Values.persistence.enabled (not .Values.persistence.existingClaim) }}true{{ end }}
{{- end }}
