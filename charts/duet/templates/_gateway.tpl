{{/*
The DICOM gateway's names, labels and computed settings. Its pods carry app.kubernetes.io/component: gateway
(no duet/model label: the gateway is no InferenceService component), which its Services, NetworkPolicy,
PodDisruptionBudget and PodMonitor select on.
*/}}

{{- define "duet.gateway.name" -}}
{{- printf "%s-gateway" (include "duet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "duet.gateway.selectorLabels" -}}
{{ include "duet.selectorLabels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{- define "duet.gateway.labels" -}}
{{ include "duet.labels" . }}
app.kubernetes.io/component: gateway
{{- end -}}

{{/*
v2 base URL of the mammography InferenceService. Standard mode: the transformer's Service, where KServe's raw
ingress reconciler points status.address (<isvc>-transformer, port 80 to the transformer's HTTP port), named
<name>.<namespace> as KServe names the predictor host (the cluster domain is not always cluster.local; the pod's
DNS search path completes it). Knative mode: the InferenceService's cluster-local address, which Knative's local
gateway routes by host name, so it is the full name KServe publishes in status.address.url.
gateway.inference.url overrides both.
*/}}
{{- define "duet.gateway.inferenceUrl" -}}
{{- if .Values.gateway.inference.url -}}
{{- .Values.gateway.inference.url -}}
{{- else -}}
{{- $isvc := include "duet.isvcName" (dict "root" . "model" .Values.gateway.inference.model) -}}
{{- if eq .Values.kserve.deploymentMode "Knative" -}}
{{- printf "http://%s.%s.svc.cluster.local" $isvc .Release.Namespace -}}
{{- else -}}
{{- printf "http://%s-transformer.%s:80" $isvc .Release.Namespace -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* TCP port of a URL: its explicit port, else 443 for https and 80 for http. */}}
{{- define "duet.gateway.urlPort" -}}
{{- $url := urlParse . -}}
{{- $hostPort := splitList ":" $url.host -}}
{{- if gt (len $hostPort) 1 -}}
{{- last $hostPort -}}
{{- else -}}
{{- ternary "443" "80" (eq $url.scheme "https") -}}
{{- end -}}
{{- end -}}

{{/* Ports the results go out on: each destination's ("AE@host:port" or a DICOMweb URL), deduplicated. */}}
{{- define "duet.gateway.destinationPorts" -}}
{{- $ports := list -}}
{{- range .Values.gateway.destinations -}}
{{- if regexMatch "^https?://" . -}}
{{- $ports = append $ports (include "duet.gateway.urlPort" .) -}}
{{- else -}}
{{- $ports = append $ports (last (splitList ":" .)) -}}
{{- end -}}
{{- end -}}
{{- $ports | uniq | join "," -}}
{{- end -}}

{{/* Checks of the gateway values that the schema cannot express. */}}
{{- define "duet.gateway.validate" -}}
{{- $g := .Values.gateway -}}
{{- if and (not (index .Values.models .Values.gateway.inference.model | default dict).enabled) (not $g.inference.url) -}}
{{- fail "gateway.enabled needs models.mammography.enabled (the gateway sends every study to it), or gateway.inference.url pointing at a mammography service elsewhere; or set gateway.enabled=false" -}}
{{- end -}}
{{- range $g.destinations -}}
{{- if not (regexMatch "^(https?://[^/]+.*|[^@ ]{1,16}@[^: ]+:[0-9]+)$" .) -}}
{{- fail (printf "gateway.destinations entry %q is neither AE@host:port nor an http(s):// DICOMweb URL" .) -}}
{{- end -}}
{{- end -}}
{{- if and $g.tls.enabled (not $g.tls.secretName) -}}
{{- fail "gateway.tls.enabled needs gateway.tls.secretName: a Secret with tls.crt and tls.key (and ca.crt when gateway.tls.verifyClients)" -}}
{{- end -}}
{{- /* The quota must bind before the disk does: a full volume fails writes mid-study instead of refusing the
instance with an out-of-resources status. */}}
{{- $size := toString $g.spool.size -}}
{{- $units := dict "" 1.0 "k" 1e3 "M" 1e6 "G" 1e9 "T" 1e12 "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 -}}
{{- $volumeBytes := mulf (regexFind "^[0-9.]+" $size | float64) (index $units (regexFind "[A-Za-z]*$" $size)) -}}
{{- if ge (float64 $g.spool.quotaBytes) $volumeBytes -}}
{{- fail (printf "gateway.spool.quotaBytes (%s) must be below the spool volume gateway.spool.size (%s), with room for the gateway's state" (toString (int64 $g.spool.quotaBytes)) $size) -}}
{{- end -}}
{{- if and $g.tls.enabled (eq (int $g.tls.port) (int $g.dimsePort)) -}}
{{- fail "gateway.tls.port must differ from gateway.dimsePort" -}}
{{- end -}}
{{- end -}}
