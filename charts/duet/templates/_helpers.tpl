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
The serving.kserve.io/deploymentMode annotation for kserve.deploymentMode on kserve.version. KServe 0.15 accepts
only RawDeployment/Serverless (pkg/constants DeploymentModeType) and falls back to its default for anything
else; 0.16 named them Standard/Knative and records the normalised name in status.deploymentMode, which every
later update's annotation must equal verbatim (validateDeploymentMode).
*/}}
{{- define "duet.deploymentModeName" -}}
{{- $legacy := semverCompare "<0.16-0" (printf "%s.0" .Values.kserve.version) -}}
{{- if eq .Values.kserve.deploymentMode "Knative" -}}
{{- ternary "Serverless" "Knative" $legacy -}}
{{- else -}}
{{- ternary "RawDeployment" "Standard" $legacy -}}
{{- end -}}
{{- end -}}

{{/* Logical mode (Standard or Knative) of any name KServe has used for it. */}}
{{- define "duet.logicalMode" -}}
{{- if has . (list "Knative" "Serverless") -}}Knative{{- else if has . (list "Standard" "RawDeployment") -}}Standard{{- else -}}{{ . }}{{- end -}}
{{- end -}}

{{/*
The annotation for one InferenceService: (dict "root" $ "isvc" name). On upgrade, an InferenceService KServe
already runs keeps the exact name KServe recorded in its status (also across a KServe upgrade from 0.15, whose
objects keep the legacy name); asking for the other mode fails here with the fix, rather than at KServe's
webhook. `lookup` is empty under `helm template` and dry runs: the name then follows kserve.version.
*/}}
{{- define "duet.isvcDeploymentMode" -}}
{{- $existing := lookup "serving.kserve.io/v1beta1" "InferenceService" .root.Release.Namespace .isvc | default dict -}}
{{- include "duet.modeAnnotation" (dict "root" .root "isvc" .isvc "recorded" (dig "status" "deploymentMode" "" $existing)) -}}
{{- end -}}

{{/* The annotation given the mode KServe recorded ("" for a new InferenceService). */}}
{{- define "duet.modeAnnotation" -}}
{{- $wanted := include "duet.deploymentModeName" .root -}}
{{- $recorded := .recorded -}}
{{- if $recorded -}}
{{- if ne (include "duet.logicalMode" $recorded) .root.Values.kserve.deploymentMode -}}
{{- fail (printf "InferenceService %s runs in KServe mode %s, which cannot change in place: set kserve.deploymentMode=%s, or uninstall and install again" .isvc $recorded (include "duet.logicalMode" $recorded)) -}}
{{- end -}}
{{- $recorded -}}
{{- else -}}
{{- $wanted -}}
{{- end -}}
{{- end -}}

{{/* ServingRuntime the predictors use: triton.runtime.name, else duet's own or KServe's. */}}
{{- define "duet.runtimeName" -}}
{{- .Values.triton.runtime.name | default (ternary "duet-tritonserver" "kserve-tritonserver" .Values.triton.runtime.create) -}}
{{- end -}}

{{/*
Protocol from transformer to predictor. The chart's runtime declares Triton's gRPC port first, so KServe's
Service port 80 reaches gRPC. KServe's own kserve-tritonserver declares no ports: its Service maps 80 to 8080,
Triton's REST port, so the transformer must speak v2 REST there.
*/}}
{{- define "duet.predictorProtocol" -}}
{{- ternary "grpc-v2" "v2" .Values.triton.runtime.create -}}
{{- end -}}

{{/* True when the model repository is an OCI image, which KServe mounts with a modelcar sidecar. */}}
{{- define "duet.modelcar" -}}
{{- range $model, $m := $.Values.models -}}
{{- if $m.enabled -}}
{{- if hasPrefix "oci://" (include "duet.storageUri" (dict "root" $ "model" $model)) -}}true{{- end -}}
{{- end -}}
{{- end -}}
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
{{- if and $knative (eq $mode "none") -}}
{{- fail "autoscaling.mode=none needs kserve.deploymentMode=Standard; in Knative mode use autoscaling.mode=knative and pin a component with minReplicas = maxReplicas" -}}
{{- end -}}
{{- if $knative -}}
{{- $features := .Values.kserve.knativeFeatures -}}
{{- range $component := list "transformer" "triton" -}}
{{- $c := index $.Values $component -}}
{{- range $field, $flag := dict "nodeSelector" "kubernetes.podspec-nodeselector" "tolerations" "kubernetes.podspec-tolerations" "affinity" "kubernetes.podspec-affinity" -}}
{{- if and (index $c $field) (not (index $features $field)) -}}
{{- fail (printf "%s.%s is set, but Knative rejects pods with %s unless config-features has %s: \"enabled\". Enable it and set kserve.knativeFeatures.%s=true, or empty %s.%s" $component $field $field $flag $field $component $field) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if .Values.transformer.dev.hotReload -}}
{{- fail "transformer.dev.hotReload uses an init container, which Knative allows only with kubernetes.podspec-init-containers; use kserve.deploymentMode=Standard for development" -}}
{{- end -}}
{{- end -}}
{{- if and (not .Values.triton.runtime.create) .Values.monitoring.podMonitor.enabled -}}
{{- fail "monitoring.podMonitor.enabled needs triton.runtime.create=true: KServe's kserve-tritonserver declares no metrics port, so the Triton PodMonitor would scrape nothing and DuetPredictorDown would fire; set monitoring.podMonitor.enabled=false or use the chart's runtime" -}}
{{- end -}}
{{- if and (not .Values.triton.runtime.create) (eq .Values.triton.modelControlMode "explicit") -}}
{{- fail "triton.modelControlMode=explicit needs triton.runtime.create=true: KServe's kserve-tritonserver starts Triton without --model-control-mode=explicit, so --load-model would stop it; set triton.modelControlMode=none" -}}
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

{{/*
Pod-level fields of one InferenceService component: (dict "root" $ "values" .Values.triton|.Values.transformer).
Knative admits only part of a PodSpec (knative/serving pkg/apis/serving/fieldmask.go, PodSpecMask): never
terminationGracePeriodSeconds (Knative derives it from the revision timeout), automountServiceAccountToken only
as false, and nodeSelector, tolerations, affinity and the pod securityContext only behind config-features flags
(kserve.knativeFeatures; duet.validate fails when a value needs a flag that is off).
*/}}
{{- define "duet.podFields" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $knative := eq $root.Values.kserve.deploymentMode "Knative" -}}
{{- $features := $root.Values.kserve.knativeFeatures -}}
serviceAccountName: {{ include "duet.serviceAccountName" $root }}
{{- if or (not $knative) (not $root.Values.serviceAccount.automountToken) }}
automountServiceAccountToken: {{ $root.Values.serviceAccount.automountToken }}
{{- end }}
{{- if or (not $knative) $features.podSecurityContext }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- end }}
{{- if not $knative }}
terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
