{{- /* Names as z2jh makes them: fullnameOverride "" (its default, a string) means no prefix at all. */}}
{{- define "jupyterhub.fullname" -}}
{{- if kindIs "string" .Values.fullnameOverride }}
{{- .Values.fullnameOverride }}
{{- else }}
{{- $name := .Values.nameOverride | default .Chart.Name }}
{{- if contains $name .Release.Name }}{{ .Release.Name }}{{ else }}{{ .Release.Name }}-{{ $name }}{{ end }}
{{- end }}
{{- end }}

{{- define "jupyterhub.fullname.dash" -}}
{{- with include "jupyterhub.fullname" . }}{{ . }}-{{ end }}
{{- end }}

{{- /* z2jh's pod (match) labels: component, app, release. Call with (dict "root" $ "component" "hub"). */}}
{{- define "jupyterhub.matchLabels" -}}
component: {{ .component }}
app: {{ .root.Values.nameOverride | default .root.Chart.Name | quote }}
release: {{ .root.Release.Name | quote }}
{{- end }}

{{- /*
  z2jh's jupyterhub.networkPolicy.renderEgressRules: one rule per enabled egressAllowRules flag, then the
  user's `egress`. Called with (list $ .Values.hub.networkPolicy).
*/}}
{{- define "jupyterhub.networkPolicy.renderEgressRules" -}}
{{- $root := index . 0 }}
{{- $netpol := index . 1 }}
{{- $rules := $netpol.egressAllowRules }}
{{- $metadata := printf "%s/32" $root.Values.singleuser.cloudMetadata.ip }}
{{- if or $rules.dnsPortsCloudMetadataServer $rules.dnsPortsKubeSystemNamespace $rules.dnsPortsPrivateIPs }}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
  to:
    {{- if $rules.dnsPortsCloudMetadataServer }}
    - ipBlock: {cidr: {{ $metadata }}}
    {{- end }}
    {{- if $rules.dnsPortsKubeSystemNamespace }}
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: kube-system}}
    {{- end }}
    {{- if $rules.dnsPortsPrivateIPs }}
    - ipBlock: {cidr: 10.0.0.0/8}
    - ipBlock: {cidr: 172.16.0.0/12}
    - ipBlock: {cidr: 192.168.0.0/16}
    {{- end }}
{{- end }}
{{- if $rules.nonPrivateIPs }}
- to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, {{ $metadata }}]
{{- end }}
{{- if $rules.privateIPs }}
- to:
    - ipBlock: {cidr: 10.0.0.0/8}
    - ipBlock: {cidr: 172.16.0.0/12}
    - ipBlock: {cidr: 192.168.0.0/16}
{{- end }}
{{- if $rules.cloudMetadataServer }}
- to:
    - ipBlock: {cidr: {{ $metadata }}}
{{- end }}
{{- with $netpol.egress }}
{{ toYaml . }}
{{- end }}
{{- end }}
