{{- /*
  The service's settings: the user's `config` (Settings field names) plus the ones the chart owns
  (executor, namespace, docker-api socket, push secret, build pod placement and labels, the state
  directory on the store's volume). The schema
  rejects chart-owned keys in `config`, so nothing here overrides a user's choice silently.
*/}}
{{- define "binder-service.settings" -}}
{{- $settings := deepCopy .Values.config }}
{{- $_ := set $settings "executor" "kubernetes" }}
{{- $_ := set $settings "k8s_namespace" .Release.Namespace }}
{{- $_ := set $settings "engine" .Values.build.engine }}
{{- $_ := set $settings "k8s_builder_image" (printf "%s:%s" .Values.build.builderImage.repository (.Values.build.builderImage.tag | default .Chart.AppVersion)) }}
{{- if eq .Values.build.engine "docker" }}
{{- $_ := set $settings "k8s_docker_socket" (include "binder-service.docker-api.socket" .) }}
{{- end }}
{{- $_ := set $settings "k8s_push_secret" (include "binder-service.push-secret.fullname" .) }}
{{- $_ := set $settings "k8s_build_labels" (include "binder-service.build.labels" . | fromYaml) }}
{{- $_ := set $settings "k8s_node_selector" .Values.build.nodeSelector }}
{{- $_ := set $settings "k8s_tolerations" .Values.build.tolerations }}
{{- $_ := set $settings "k8s_affinity" .Values.build.affinity }}
{{- if eq .Values.build.engine "docker" }}
{{- $selector := list }}
{{- range $k, $v := include "binder-service.selectorLabels" (dict "root" . "component" "docker-api") | fromYaml }}
{{- $selector = append $selector (printf "%s=%s" $k $v) }}
{{- end }}
{{- $_ := set $settings "k8s_docker_api_selector" (join "," $selector) }}
{{- end }}
{{- $_ := set $settings "base_url" (include "binder-service.baseUrl" .) }}
{{- $_ := set $settings "host" "0.0.0.0" }}
{{- $_ := set $settings "port" 8585 }}
{{- $_ := set $settings "state_dir" (include "binder-service.stateDir" .) }}
{{- if include "binder-service.push-secret.fullname" . }}
{{- $_ := set $settings "docker_config" "/etc/binder-service/docker/config.json" }}
{{- end }}
{{- toJson $settings }}
{{- end }}

{{- /* BINDER_SERVICE_<NAME>=value for every setting: JSON for maps and lists, text otherwise. */}}
{{- define "binder-service.settings.env" -}}
{{- range $key, $value := include "binder-service.settings" . | fromJson }}
{{- if kindIs "invalid" $value }}
{{- else if or (kindIs "map" $value) (kindIs "slice" $value) }}
{{ printf "BINDER_SERVICE_%s" (upper $key) }}: {{ toJson $value | quote }}
{{- else }}
{{ printf "BINDER_SERVICE_%s" (upper $key) }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- /* "true" when the chart generates the API token: no JupyterHub and no config.api_tokens. */}}
{{- define "binder-service.generatedToken" -}}
{{- if not (or .Values.jupyterhub.enabled .Values.config.api_tokens) }}true{{ end }}
{{- end }}

{{- /*
  Egress for pods that run untrusted code (build pods, docker-api): DNS, and the public internet only.
  Private ranges (the cluster, the node, the VPC), carrier-grade NAT, loopback and link-local (cloud
  metadata at 169.254.169.254) are excluded.
*/}}
{{- define "binder-service.publicEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
  to:
    - namespaceSelector: {}
    {{- range list "10.0.0.0/8" "172.16.0.0/12" "192.168.0.0/16" }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
- to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except:
          - 10.0.0.0/8
          - 172.16.0.0/12
          - 192.168.0.0/16
          - 100.64.0.0/10
          - 127.0.0.0/8
          - 169.254.0.0/16
    - ipBlock:
        cidr: ::/0
        except:
          - fc00::/7
          - fe80::/10
          - ::1/128
{{- end }}
