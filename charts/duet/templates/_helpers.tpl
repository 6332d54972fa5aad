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

{{/*
Labels of each InferenceService. KServe copies an InferenceService's labels onto its pod templates
(kserve_rules.KSERVE_COPIES_ISVC_LABELS_TO_PODS), so nothing that changes with the chart or app version may be
here: a version bump would otherwise restart every GPU pod.
*/}}
{{- define "duet.isvcLabels" -}}
{{ include "duet.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: duet
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "duet.componentLabels" -}}
{{ include "duet.labels" .root }}
app.kubernetes.io/component: {{ .component }}
duet/model: {{ .model }}
{{- end -}}

{{/*
InferenceService name of a model: (dict "root" $ "model" "mammography" ["suffix" "canary"]). At most 45
characters (KServe appends -transformer-... to it); a long release name is shortened, never the model name, so
two models never share a name.
*/}}
{{- define "duet.isvcName" -}}
{{- $tail := .model -}}
{{- if .suffix -}}{{- $tail = printf "%s-%s" .model .suffix -}}{{- end -}}
{{- $base := include "duet.fullname" .root | trunc (int (sub 44 (len $tail))) | trimSuffix "-" -}}
{{- printf "%s-%s" $base $tail -}}
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
{{- range $field, $flag := dict "nodeSelector" "kubernetes.podspec-nodeselector" "tolerations" "kubernetes.podspec-tolerations" "affinity" "kubernetes.podspec-affinity" "runtimeClassName" "kubernetes.podspec-runtimeclassname" "priorityClassName" "kubernetes.podspec-priorityclassname" "topologySpreadConstraints" "kubernetes.podspec-topologyspreadconstraints" -}}
{{- if and (index $c $field) (not (index $features $field)) -}}
{{- fail (printf "%s.%s is set, but Knative rejects pods with %s unless config-features has %s: \"enabled\". Enable it and set kserve.knativeFeatures.%s=true, or empty %s.%s" $component $field $field $flag $field $component $field) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if ne .Values.scheduling.spread "none" -}}
{{- if not $features.topologySpreadConstraints -}}
{{- fail (printf "scheduling.spread=%s renders topologySpreadConstraints, which Knative rejects unless config-features has kubernetes.podspec-topologyspreadconstraints: \"enabled\". Enable it and set kserve.knativeFeatures.topologySpreadConstraints=true, or set scheduling.spread=none" .Values.scheduling.spread) -}}
{{- end -}}
{{- if and (eq .Values.scheduling.spread "node") (not $features.affinity) -}}
{{- fail "scheduling.spread=node adds pod anti-affinity, which Knative rejects unless config-features has kubernetes.podspec-affinity: \"enabled\". Enable it and set kserve.knativeFeatures.affinity=true, or use scheduling.spread=zone" -}}
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
{{- $signature := .Values.transformer.artifactSignature -}}
{{- if and $signature.verify (not (or $signature.configMapName $signature.secretName)) -}}
{{- fail "transformer.artifactSignature.verify needs the public key: set transformer.artifactSignature.configMapName or .secretName" -}}
{{- end -}}
{{- if and $signature.configMapName $signature.secretName -}}
{{- fail "transformer.artifactSignature: set configMapName or secretName, not both" -}}
{{- end -}}
{{- if and .Values.triton.artifact.encryption.secretName .Values.transformer.dev.hotReload -}}
{{- fail "triton.artifact.encryption.secretName and transformer.dev.hotReload both set the transformer's command; use an unencrypted repository for development" -}}
{{- end -}}
{{- if and .Values.triton.artifact.encryption.secretName (not .Values.triton.artifact.verifyDigests) -}}
{{- fail "triton.artifact.encryption.secretName needs triton.artifact.verifyDigests=true: the decrypted repository is checked against its artifact.json before Triton serves it" -}}
{{- end -}}
{{- if and .Values.triton.tensorrt.enabled .Values.triton.modelConfigName -}}
{{- fail "triton.tensorrt.enabled and triton.modelConfigName both choose --model-config-name; set only one" -}}
{{- end -}}
{{- range $model, $m := .Values.models -}}
{{- if $m.enabled -}}
{{- if and $m.canary.storageUri (eq $m.canary.storageUri (include "duet.storageUri" (dict "root" $ "model" $model))) -}}
{{- fail (printf "models.%s.canary.storageUri is the version already served (%s): a canary needs the candidate's storageUri" $model $m.canary.storageUri) -}}
{{- end -}}
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
max(duet:triton_queue_time_seconds:avg1m{ {{- include "duet.scopeMatchers" .root }}, model="{{ $m.tritonModel }}"})
{{- else if eq .signal "tritonInflight" -}}
sum(duet:triton_inflight:sum{ {{- include "duet.scopeMatchers" .root }}, model="{{ $m.tritonModel }}"})
{{- else if eq .signal "transformerInflight" -}}
sum(duet:transformer_inflight:sum{ {{- include "duet.scopeMatchers" .root }}, model="{{ .model }}"})
{{- else -}}
{{- fail (printf "unknown autoscaling signal %s" .signal) -}}
{{- end -}}
{{- end -}}

{{/*
Pod-level fields of one InferenceService component:
(dict "root" $ "values" .Values.triton|.Values.transformer "model" "mammography" "component" "predictor").
Knative admits only part of a PodSpec (knative/serving pkg/apis/serving/fieldmask.go, PodSpecMask): never
terminationGracePeriodSeconds (Knative derives it from the revision timeout), automountServiceAccountToken only
as false, and nodeSelector, tolerations, affinity, runtimeClassName, priorityClassName, topology spread and the
pod securityContext only behind config-features flags (kserve.knativeFeatures; duet.validate fails when a value
needs a flag that is off).
*/}}
{{- define "duet.podFields" -}}
{{- $root := .root -}}
{{- $v := .values -}}
{{- $knative := eq $root.Values.kserve.deploymentMode "Knative" -}}
{{- $features := $root.Values.kserve.knativeFeatures -}}
{{- $selector := include "duet.componentSelectorLabels" (dict "root" $root "model" .model "component" .component) | fromYaml -}}
{{- $spread := $root.Values.scheduling.spread -}}
serviceAccountName: {{ include "duet.serviceAccountName" $root }}
{{- if or (not $knative) (not $root.Values.serviceAccount.automountToken) }}
automountServiceAccountToken: {{ $root.Values.serviceAccount.automountToken }}
{{- end }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- if or (not $knative) $features.podSecurityContext }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- end }}
{{- if not $knative }}
terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
{{- end }}
{{- with $v.runtimeClassName }}
runtimeClassName: {{ . }}
{{- end }}
{{- with $v.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $affinity := deepCopy ($v.affinity | default dict) -}}
{{- if and (eq $spread "node") (not (hasKey $affinity "podAntiAffinity")) -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" $selector) -}}
{{- $_ := set $affinity "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- end }}
{{- with $affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- $constraints := list -}}
{{- if ne $spread "none" -}}
{{- $key := ternary "topology.kubernetes.io/zone" "kubernetes.io/hostname" (eq $spread "zone") -}}
{{- $constraints = append $constraints (dict "maxSkew" 1 "topologyKey" $key "whenUnsatisfiable" "ScheduleAnyway" "labelSelector" (dict "matchLabels" $selector)) -}}
{{- end -}}
{{- $constraints = concat $constraints ($v.topologySpreadConstraints | default list) -}}
{{- with $constraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Standard mode Deployment strategy of one component: (dict "values" .Values.triton "resources" requests/limits).
Empty values: a component that requests a GPU rolls with maxSurge 0 / maxUnavailable 1, since KServe's default
(RollingUpdate 25%/25%, rounded up to a surge of one pod) needs a free GPU for every rollout
(kserve_rules.KSERVE_DEFAULT_ROLLOUT); without a GPU, KServe's default applies (nothing rendered).
*/}}
{{- define "duet.deploymentStrategy" -}}
{{- $gpu := or (hasKey (.resources.limits | default dict) "nvidia.com/gpu") (hasKey (.resources.requests | default dict) "nvidia.com/gpu") -}}
{{- if .values.deploymentStrategy -}}
{{- toYaml .values.deploymentStrategy -}}
{{- else if $gpu -}}
type: RollingUpdate
rollingUpdate:
  maxSurge: 0
  maxUnavailable: 1
{{- end -}}
{{- end -}}

{{/*
Pod Security level of the release namespace: podSecurityStandard, else the namespace's
pod-security.kubernetes.io/enforce label ((dict "root" $ "namespace" <Namespace object or empty dict>)).
*/}}
{{- define "duet.podSecurityLevel" -}}
{{- .root.Values.podSecurityStandard | default (dig "metadata" "labels" "pod-security.kubernetes.io/enforce" "" .namespace) -}}
{{- end -}}

{{/*
Refuses, under the restricted level, what KServe would turn into pods the namespace rejects:
(dict "root" $ "namespace" <Namespace object or empty dict>).
*/}}
{{- define "duet.checkPodSecurity" -}}
{{- $root := .root -}}
{{- $level := include "duet.podSecurityLevel" . -}}
{{- if eq $level "restricted" -}}
{{- range $model, $m := $root.Values.models -}}
{{- if $m.enabled -}}
{{- range $uri := list (include "duet.storageUri" (dict "root" $root "model" $model)) $m.canary.storageUri -}}
{{- if hasPrefix "oci://" $uri -}}
{{- fail (printf "models.%s: storageUri %s is an OCI model image, which KServe mounts with a modelcar sidecar that replaces the Triton container's securityContext and carries at most a runAsUser (KServe pkg/utils/storage.go); the namespace enforces the restricted Pod Security level and would reject the pods. Set modelRepository.storageUri (s3://, gs://, pvc://, https://), or install into a namespace at the baseline level" $model $uri) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and (eq $root.Values.kserve.deploymentMode "Knative") (not $root.Values.kserve.knativeFeatures.podSecurityContext) (not $root.Values.kserve.storageInitializerSeccompProfile) -}}
{{- fail "the namespace enforces the restricted Pod Security level, and KServe's storage initializer has no seccompProfile of its own (ClusterStorageContainer \"default\"): in Knative mode it gets the pod-level RuntimeDefault profile only when config-features has kubernetes.podspec-securitycontext: \"enabled\". Enable it and set kserve.knativeFeatures.podSecurityContext=true, or add seccompProfile: {type: RuntimeDefault} to the ClusterStorageContainer and set kserve.storageInitializerSeccompProfile=true" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Refuses an autoscaler KServe created for an earlier autoscaling.mode and never deletes (its HPA and KEDA
reconcilers only create and update): (dict "root" $ "name" "<isvc>-<component>" "scaledObject" <object or {}>
"hpa" <object or {}>). The chart's own ScaledObjects are named <isvc>-<component>-scaler, never like KServe's.
*/}}
{{- define "duet.checkStaleAutoscalers" -}}
{{- $mode := .root.Values.autoscaling.mode -}}
{{- $kserveKeda := and (eq $mode "keda") (eq .root.Values.autoscaling.keda.scaledObject "kserve") -}}
{{- $ns := .root.Release.Namespace -}}
{{- $chartKeda := and (eq $mode "keda") (eq .root.Values.autoscaling.keda.scaledObject "chart") -}}
{{- range $kind, $obj := dict "scaledobject" .scaledObject "hpa" .hpa -}}
{{- $owners := list -}}
{{- range (dig "metadata" "ownerReferences" list $obj) -}}{{- $owners = append $owners .kind -}}{{- end -}}
{{- /* Earlier charts named their own ScaledObjects like KServe's; Helm creates the renamed one before it deletes
the old, and KEDA admits one ScaledObject per workload. */}}
{{- $oldChartOwned := and $obj (eq $kind "scaledobject") $chartKeda (eq (dig "metadata" "labels" "app.kubernetes.io/part-of" "" $obj) "duet") -}}
{{- if $oldChartOwned -}}
{{- fail (printf "scaledobject %s was rendered by an earlier version of this chart under KServe's name; KEDA admits one ScaledObject per Deployment, so the renamed %s-scaler cannot be created next to it. Delete it first: kubectl -n %s delete scaledobject %s" $obj.metadata.name $obj.metadata.name $ns $obj.metadata.name) -}}
{{- end -}}
{{- if has "InferenceService" $owners -}}
{{- $expected := ternary $kserveKeda (eq $mode "hpa") (eq $kind "scaledobject") -}}
{{- if not $expected -}}
{{- fail (printf "%s %s was created by KServe for an earlier autoscaling mode and KServe never deletes it; with autoscaling.mode=%s it would fight the new owner of the replica count. Delete it first: kubectl -n %s delete %s %s" $kind $obj.metadata.name $mode $ns $kind $obj.metadata.name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Labels every scraped series gets: duet_release scopes the rules and autoscaling queries to this release (two
releases on one Prometheus neither alert twice nor satisfy each other's absent()); revision and
inferenceservice tell a canary from the version it may replace (`duet cluster traffic`).
*/}}
{{- define "duet.scrapeLabels" -}}
- action: replace
  targetLabel: duet_release
  replacement: {{ .Release.Name }}
- action: replace
  sourceLabels: [__meta_kubernetes_pod_label_serving_knative_dev_revision]
  targetLabel: revision
- action: replace
  sourceLabels: [__meta_kubernetes_pod_label_serving_kserve_io_inferenceservice]
  targetLabel: inferenceservice
{{- end -}}

{{/* PromQL label matchers that scope a query to this release. */}}
{{- define "duet.scopeMatchers" -}}
namespace="{{ .Release.Namespace }}",duet_release="{{ .Release.Name }}"
{{- end -}}

{{/*
One rule expression scoped to this release: (dict "root" $ "expr" "..."). Every selector of a scraped series
(duet_*, nv_*, up) and of a recording rule (duet:*) gets the release's matchers; kube-state-metrics' series
(kube_*) carry no release label and get the namespace only.
*/}}
{{- define "duet.scopeExpr" -}}
{{- $m := include "duet.scopeMatchers" .root -}}
{{- $ns := printf "namespace=%q" .root.Release.Namespace -}}
{{- $e := .expr -}}
{{- $e = regexReplaceAll `\b((?:duet|nv)_[a-z0-9_]+|duet:[a-z0-9_:]+|up)\{` $e (printf "${1}{%s," $m) -}}
{{- $e = regexReplaceAll `\b((?:duet|nv)_[a-z0-9_]+|duet:[a-z0-9_:]+|up)([^a-z0-9_:{(=!~"]|$)` $e (printf "${1}{%s}${2}" $m) -}}
{{- $e = regexReplaceAll `\b(kube_[a-z0-9_]+)\{` $e (printf "${1}{%s," $ns) -}}
{{- $e = regexReplaceAll `\b(kube_[a-z0-9_]+)([^a-z0-9_:{(=!~"]|$)` $e (printf "${1}{%s}${2}" $ns) -}}
{{- $e -}}
{{- end -}}
