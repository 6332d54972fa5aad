{{/*
Names and labels. Every object takes its labels from "duet.labels" so selectors and dashboards agree.
*/}}

{{- define "duet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "duet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "duet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable across upgrades (never the chart version). */}}
{{- define "duet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "duet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Standard labels for every object. */}}
{{- define "duet.labels" -}}
helm.sh/chart: {{ include "duet.chart" . }}
{{ include "duet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: duet
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Labels of one component's pods. Call with (dict "root" $ "model" "mammography" "component" "predictor").
KServe copies the InferenceService component's `labels` onto its pods; NetworkPolicies, PodDisruptionBudgets
and PodMonitors select on exactly these.
*/}}
{{- define "duet.componentSelectorLabels" -}}
{{ include "duet.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
duet/model: {{ .model }}
{{- end -}}

{{- define "duet.componentLabels" -}}
{{ include "duet.labels" .root }}
app.kubernetes.io/component: {{ .component }}
duet/model: {{ .model }}
{{- end -}}

{{/* InferenceService name of a model: (dict "root" $ "model" "mammography"). */}}
{{- define "duet.isvcName" -}}
{{- printf "%s-%s" (include "duet.fullname" .root) .model | trunc 45 | trimSuffix "-" -}}
{{- end -}}

{{/* Image reference: repository[:tag][@digest]; a digest pins it. */}}
{{- define "duet.image" -}}
{{- $ref := .repository -}}
{{- if .tag -}}{{- $ref = printf "%s:%s" $ref .tag -}}{{- end -}}
{{- if .digest -}}{{- $ref = printf "%s@%s" $ref .digest -}}{{- end -}}
{{- $ref -}}
{{- end -}}

{{/* storageUri of a model: its own, else the repository's, else the model image as oci://. */}}
{{- define "duet.storageUri" -}}
{{- $m := index .root.Values.models .model -}}
{{- if $m.storageUri -}}
{{- $m.storageUri -}}
{{- else if .root.Values.modelRepository.storageUri -}}
{{- .root.Values.modelRepository.storageUri -}}
{{- else -}}
{{- printf "oci://%s" (include "duet.image" .root.Values.modelRepository.image) -}}
{{- end -}}
{{- end -}}

{{- define "duet.serviceAccountName" -}}
{{- default (include "duet.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* True when KServe runs the components as Knative Services. */}}
{{- define "duet.knative" -}}
{{- if eq .Values.kserve.deploymentMode "Knative" -}}true{{- end -}}
{{- end -}}

{{/*
Consistency checks that the schema cannot express (they depend on two values at once).
*/}}
{{- define "duet.validate" -}}
{{- $mode := .Values.autoscaling.mode -}}
{{- $knative := eq .Values.kserve.deploymentMode "Knative" -}}
{{- if and $knative (has $mode (list "keda" "hpa")) -}}
{{- fail (printf "autoscaling.mode=%s needs kserve.deploymentMode=Standard; Knative scales by concurrency (autoscaling.mode=knative)" $mode) -}}
{{- end -}}
{{- if and (not $knative) (eq $mode "knative") -}}
{{- fail "autoscaling.mode=knative needs kserve.deploymentMode=Knative" -}}
{{- end -}}
{{- if and .Values.triton.tensorrt.enabled .Values.triton.modelConfigName -}}
{{- fail "triton.tensorrt.enabled and triton.modelConfigName both choose --model-config-name; set only one" -}}
{{- end -}}
{{- range $model, $m := .Values.models -}}
{{- if $m.enabled -}}
{{- range $component := list "predictor" "transformer" -}}
{{- $c := index $m $component -}}
{{- if lt (int $c.maxReplicas) (int $c.minReplicas) -}}
{{- fail (printf "models.%s.%s.maxReplicas (%d) is below minReplicas (%d)" $model $component (int $c.maxReplicas) (int $c.minReplicas)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Autoscaling queries: each reads one recording rule of files/prometheus-rules.yaml (the only place with PromQL
logic), narrowed to this namespace and model, reduced to the single sample KEDA requires.
(dict "root" $ "model" "mammography" "signal" "queue"|"tritonInflight"|"transformerInflight")
*/}}
{{- define "duet.autoscalingQuery" -}}
{{- $m := index .root.Values.models .model -}}
{{- $ns := .root.Release.Namespace -}}
{{- if eq .signal "queue" -}}
max(duet:triton_queue_time_seconds:avg1m{namespace="{{ $ns }}", model="{{ $m.tritonModel }}"})
{{- else if eq .signal "tritonInflight" -}}
sum(duet:triton_inflight:sum{namespace="{{ $ns }}", model="{{ $m.tritonModel }}"})
{{- else if eq .signal "transformerInflight" -}}
sum(duet:transformer_inflight:sum{namespace="{{ $ns }}", model="{{ .model }}"})
{{- else -}}
{{- fail (printf "unknown autoscaling signal %s" .signal) -}}
{{- end -}}
{{- end -}}
