"""What KServe, Knative, KEDA, the Prometheus Operator and Kubernetes do with the objects the chart renders,
written down as data.

No Kubernetes cluster runs here, so `test_kserve_rules.py` checks every rendered variant against these rules
instead. Each rule cites where it comes from: repository, file and the release it was read at (KServe v0.15.2 and
v0.16.0, Knative Serving v1.15.0 and v1.17.0, KEDA v2.16.0 and v2.17.0). They describe behaviour the CRD schemas
cannot show (a schema accepts any string as a deployment mode; KServe does not), including what the controllers
and webhooks add to the pods (storage initializer, modelcar, queue-proxy, renamed ports) and leave behind.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import yaml
from chart_support import CHART, objects_of

# ---- KServe: deployment-mode names ------------------------------------------------------------------------------
# kserve/kserve pkg/constants/constants.go, DeploymentModeType.
#   v0.15.2: Serverless, RawDeployment, ModelMesh. GetDeploymentMode (pkg/controller/v1beta1/inferenceservice/
#            utils/utils.go) takes the annotation only when it is one of these, else the config's default
#            (Serverless on a stock install), and records the result verbatim in status.deploymentMode.
#   v0.16.0: Knative, Standard, ModelMesh, plus LegacyServerless = "Serverless" and LegacyRawDeployment =
#            "RawDeployment", which GetDeploymentMode normalises to Knative / Standard before recording them.
ACCEPTED_MODE_NAMES = {
    "0.15": {"Serverless", "RawDeployment", "ModelMesh"},
    "0.16": {"Knative", "Standard", "ModelMesh", "Serverless", "RawDeployment"},
}
# The name KServe records in status.deploymentMode for an accepted annotation.
RECORDED_MODE = {
    "0.15": {"Serverless": "Serverless", "RawDeployment": "RawDeployment"},
    "0.16": {"Knative": "Knative", "Standard": "Standard", "Serverless": "Knative", "RawDeployment": "Standard"},
}
# kserve/kserve pkg/apis/serving/v1beta1/inference_service_validation.go, validateDeploymentMode (v0.15.2 and
# v0.16.0): an update whose annotation differs, as a plain string, from status.deploymentMode is refused with
# "update rejected: deploymentMode cannot be changed". So the annotation must equal what KServe recorded.
# Seen in the field: kserve/kserve#4701 (0.15 refusing "Standard" as its default mode), kserve/kserve#4798
# (after 0.15.2 -> 0.16.0 the status reads "Knative" and objects still annotated "Serverless" are refused).
LOGICAL_MODE = {"Standard": "Standard", "RawDeployment": "Standard", "Knative": "Knative", "Serverless": "Knative"}


def kserve_line(version: str) -> str:
    """The rule set of a `kserve.version` value: 0.15, or 0.16 for 0.16 and every later release."""
    return "0.15" if version == "0.15" else "0.16"


# ---- KServe: ports ---------------------------------------------------------------------------------------------
# kserve/kserve pkg/controller/v1beta1/inferenceservice/reconcilers/raw/service_reconciler.go, createService
# (v0.15.2, v0.16.0): the component Service listens on port 80 (constants.CommonDefaultHttpPort) and targets the
# first container port, or constants.InferenceServiceDefaultHttpPort "8080" when the container declares none.
# Knative (knative/serving pkg/apis/serving/v1/revision_defaults.go) likewise gives a container without ports
# the user port 8080.
SERVICE_PORT = 80
DEFAULT_CONTAINER_PORT = 8080

# kserve/kserve config/runtimes/kserve-tritonserver.yaml: KServe's own Triton ClusterServingRuntime. It declares
# no ports and starts Triton with REST on 8080 and gRPC on 9000.
KSERVE_TRITON_RUNTIME_CONTAINER = {
    "name": "kserve-container",
    "image": "kserve-tritonserver:replace",
    "args": ["tritonserver", "--model-store=/mnt/models", "--grpc-port=9000", "--http-port=8080",
             "--allow-grpc=true", "--allow-http=true"],
}
# Triton serves metrics on 8002 unless --metrics-port says otherwise (tritonserver --help, r23.05 and later).
TRITON_DEFAULT_METRICS_PORT = 8002
# kserve/kserve config/runtimes/kustomization.yaml: the ClusterServingRuntimes a stock install creates. A
# namespaced ServingRuntime named like one of them is shadowed by it while the namespaced one does not exist yet
# (Helm applies InferenceService before ServingRuntime: it orders kinds it does not know alphabetically).
KSERVE_CLUSTER_RUNTIMES = {
    "kserve-huggingfaceserver", "kserve-lgbserver", "kserve-mlserver", "kserve-paddleserver", "kserve-pmmlserver",
    "kserve-sklearnserver", "kserve-tensorflow-serving", "kserve-torchserve", "kserve-tritonserver",
    "kserve-xgbserver",
}

# ---- KServe: autoscaler classes ----------------------------------------------------------------------------------
# kserve/kserve pkg/constants/constants.go, AutoscalerClassType (v0.15.2, v0.16.0), and what the raw-deployment
# reconcilers do with each (reconcilers/raw/raw_kube_reconciler.go, hpa/, keda/, deployment/):
AUTOSCALER_CLASSES = {
    "hpa": "KServe creates a HorizontalPodAutoscaler from the component's autoScaling (CPU/memory)",
    "keda": "KServe creates a KEDA ScaledObject from the component's autoScaling external metrics",
    "external": "KServe creates no autoscaler and leaves the Deployment's replicas to another owner",
    # "none" replaced "external" as the way to switch KServe's HPA off (kserve/website#473, 2025-05).
    "none": "KServe creates no autoscaler and sets the Deployment's replicas to minReplicas "
            "(deployment_reconciler.go: replicas = minReplicas only when the class is none)",
    "kpa": "Knative mode only: Knative's own autoscaler (the default there)",
}

# ---- KServe: modelcar (oci:// storageUri) ------------------------------------------------------------------------
# kserve/kserve pkg/utils/storage.go (v0.15.2, v0.16.0): ConfigureModelcarToContainer replaces the target
# container's whole securityContext with {runAsUser: uidModelcar} when the storage-initializer config sets
# uidModelcar, and CreateModelcarContainer adds a "modelcar" sidecar whose securityContext is at most that user;
# the pod gets shareProcessNamespace: true. KServe's storageInitializer config as its docs give it (and its
# modelcar how-to) sets uidModelcar: 1010; without it the sidecar has no securityContext at all.
UID_MODELCAR = 1010


def apply_modelcar(pod: dict, uid: int | None = UID_MODELCAR) -> dict:
    """The pod as KServe's webhook rewrites it for an oci:// storageUri."""
    pod = copy.deepcopy(pod)
    spec = pod["spec"]
    if uid is not None:
        spec["containers"][0]["securityContext"] = {"runAsUser": uid}
    sidecar = {"name": "modelcar", "image": "model-image", "args": ["sh", "-c", "sleep infinity"]}
    if uid is not None:
        sidecar["securityContext"] = {"runAsUser": uid}
    spec["containers"].append(sidecar)
    spec["shareProcessNamespace"] = True
    return pod


# ---- Knative: the PodSpec it admits --------------------------------------------------------------------------------
# knative/serving pkg/apis/serving/fieldmask.go, PodSpecMask (read at the release that added the init-container
# flag; unchanged in this respect through v1.17): fields always allowed, fields behind a config-features flag
# (all "disabled" by default), and everything else rejected ("must not set the field(s)"), among them
# terminationGracePeriodSeconds. automountServiceAccountToken is accepted only as false.
KNATIVE_POD_FIELDS = {"serviceAccountName", "containers", "volumes", "imagePullSecrets", "enableServiceLinks",
                      "automountServiceAccountToken"}
KNATIVE_POD_FIELD_FLAGS = {
    "affinity": "kubernetes.podspec-affinity",
    "hostAliases": "kubernetes.podspec-hostaliases",
    "nodeSelector": "kubernetes.podspec-nodeselector",
    "runtimeClassName": "kubernetes.podspec-runtimeclassname",
    "tolerations": "kubernetes.podspec-tolerations",
    "securityContext": "kubernetes.podspec-securitycontext",
    "priorityClassName": "kubernetes.podspec-priorityclassname",
    "schedulerName": "kubernetes.podspec-schedulername",
    "initContainers": "kubernetes.podspec-init-containers",
    "topologySpreadConstraints": "kubernetes.podspec-topologyspreadconstraints",
    "shareProcessNamespace": "kubernetes.podspec-shareprocessnamespace",
}
# The chart's kserve.knativeFeatures keys, by config-features flag.
CHART_FEATURE_KEYS = {
    "kubernetes.podspec-nodeselector": "nodeSelector",
    "kubernetes.podspec-tolerations": "tolerations",
    "kubernetes.podspec-affinity": "affinity",
    "kubernetes.podspec-securitycontext": "podSecurityContext",
    "kubernetes.podspec-runtimeclassname": "runtimeClassName",
    "kubernetes.podspec-priorityclassname": "priorityClassName",
    "kubernetes.podspec-topologyspreadconstraints": "topologySpreadConstraints",
}
# knative/serving config/core/configmaps/features.yaml: emptyDir volumes are an extension enabled by default
# (kubernetes.podspec-emptydir); the other volume sources Knative admits (VolumeSourceMask) are secret,
# configMap and projected.
KNATIVE_VOLUME_SOURCES = {"emptyDir", "secret", "configMap", "projected"}
# fieldmask.go ContainerMask: the container fields Knative admits (lifecycle, stdin, volumeDevices... are not).
# startupProbe joined them in knative/serving v1.15.0 (knative/serving#15309; ContainerMask there and in v1.17.0
# copies StartupProbe), so the chart's Knative mode needs Knative 1.15 or later (docs/operations.md).
KNATIVE_CONTAINER_FIELDS = {"name", "args", "command", "env", "workingDir", "envFrom", "image", "imagePullPolicy",
                            "livenessProbe", "ports", "readinessProbe", "resources", "securityContext",
                            "startupProbe", "terminationMessagePath", "terminationMessagePolicy", "volumeMounts"}
KNATIVE_MIN_VERSION_FOR_STARTUP_PROBE = "1.15"
# fieldmask.go SecurityContextMask: capabilities, readOnlyRootFilesystem, runAsUser, runAsGroup, runAsNonRoot;
# allowPrivilegeEscalation and seccompProfile joined them for the restricted Pod Security level (the fields
# Knative's own secure-pod-defaults sets: knative.dev docs, serving/configuration/secure-pod-defaults).
KNATIVE_CONTAINER_SECURITY_FIELDS = {"capabilities", "readOnlyRootFilesystem", "runAsUser", "runAsGroup",
                                     "runAsNonRoot", "allowPrivilegeEscalation", "seccompProfile"}
# knative/serving pkg/apis/serving/k8s_validation.go, validateContainerPorts: at most one port per container;
# validateProbe: a probe's port, when given, must be that container port.
KNATIVE_MAX_PORTS = 1
# knative/serving pkg/reconciler/revision/resources/deploy.go (v1.17.0), makeServingContainer: the serving
# container's one port is renamed v1.UserPortName = "user-port" (pkg/apis/serving/v1/revision_helpers.go) in the
# Deployment Knative creates. The Prometheus Operator keeps a PodMonitor target only when the pod has a container
# port of the endpoint's `port` name (prometheus-operator pkg/prometheus/promcfg.go, generatePodMonitorConfig:
# keep on __meta_kubernetes_pod_container_port_name), so a monitor naming the declared port scrapes nothing.
KNATIVE_USER_PORT_NAME = "user-port"
# knative/serving pkg/reconciler/revision/resources/queue.go (v1.17.0), queueSecurityContext: the queue-proxy
# sidecar carries the whole restricted set itself (no privilege escalation, drop ALL, non-root, RuntimeDefault).
KNATIVE_QUEUE_PROXY_SECURITY_CONTEXT = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                        "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                                        "seccompProfile": {"type": "RuntimeDefault"}}


def knative_port_names(ports: list[dict]) -> list[dict]:
    """The serving container's ports as Knative's Deployment declares them."""
    return [{**port, "name": KNATIVE_USER_PORT_NAME} for port in ports[:KNATIVE_MAX_PORTS]]

# ---- KServe: the storage initializer ---------------------------------------------------------------------------
# kserve/kserve pkg/webhook/admission/pod/storage_initializer_injector.go (v0.15.2, v0.16.0) builds the
# storage-initializer init container from the ClusterStorageContainer "default" (config/storagecontainers/
# default.yaml: no securityContext at all), and KServe's Helm chart (charts/kserve-resources/values.yaml,
# kserve.storage.containerSecurityContext) fills it with the set below: no seccompProfile. Under the restricted
# level it therefore needs the pod-level RuntimeDefault profile, which Knative admits only behind
# kubernetes.podspec-securitycontext (KNATIVE_POD_FIELD_FLAGS).
KSERVE_STORAGE_INITIALIZER_SECURITY_CONTEXT = {"allowPrivilegeEscalation": False, "privileged": False,
                                               "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}}
# The same injector appends the storage initializer after the pod's own init containers, so an init container of
# the chart runs before the download: the artifact check wraps Triton's command instead.
KSERVE_STORAGE_INITIALIZER_RUNS_LAST = True


def apply_storage_initializer(pod: dict) -> dict:
    """The pod as KServe's webhook rewrites it for an s3://, gs://, https:// storageUri."""
    pod = copy.deepcopy(pod)
    init = {"name": "storage-initializer", "image": "kserve/storage-initializer",
            "securityContext": copy.deepcopy(KSERVE_STORAGE_INITIALIZER_SECURITY_CONTEXT)}
    pod["spec"]["initContainers"] = [*pod["spec"].get("initContainers", []), init]
    return pod


def apply_knative(pod: dict) -> dict:
    """The pod of the Deployment Knative makes of a Knative Service: its one port renamed, queue-proxy added."""
    pod = copy.deepcopy(pod)
    serving = pod["spec"]["containers"][0]
    serving["ports"] = knative_port_names(serving.get("ports") or [{"containerPort": DEFAULT_CONTAINER_PORT}])
    pod["spec"]["containers"].append({"name": "queue-proxy", "image": "queue",
                                      "securityContext": copy.deepcopy(KNATIVE_QUEUE_PROXY_SECURITY_CONTEXT)})
    return pod


# ---- KServe: labels, rollouts, canaries, predictor host --------------------------------------------------------
# kserve/kserve pkg/controller/v1beta1/inferenceservice/components/predictor.go and transformer.go (v0.15.2,
# v0.16.0): the component's ObjectMeta labels are utils.Union(isvc.Labels, component labels), and the raw
# Deployment's pod template takes that ObjectMeta (reconcilers/deployment/deployment_reconciler.go); Knative's
# revision template likewise. Any InferenceService label that changes with a release restarts every pod.
KSERVE_COPIES_ISVC_LABELS_TO_PODS = True
VERSIONED_LABELS = {"helm.sh/chart", "app.kubernetes.io/version"}
# deployment_reconciler.go setDefaultDeploymentSpec (v0.15.2, v0.16.0): without componentExt.DeploymentStrategy a
# Deployment rolls with RollingUpdate maxUnavailable 25% / maxSurge 25%. Kubernetes rounds the surge up (one pod
# even at one replica) and the unavailability down (zero): each rollout needs room for one more GPU pod.
KSERVE_DEFAULT_ROLLOUT = {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
# The strategy a GPU predictor needs on a node without a spare GPU.
GPU_ROLLOUT = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}
# reconcilers/knative/ksvc_reconciler.go (v0.15.2, v0.16.0) is the only reader of canaryTrafficPercent: it splits
# the Knative Service's traffic between the latest revision (that percent) and the last rolled-out one. The raw
# (Standard) reconcilers ignore it, so a canary there is a second InferenceService.
CANARY_MODES = {"Knative"}
# pkg/apis/serving/v1beta1/transformer_custom.go GetContainer (v0.15.2, v0.16.0): KServe passes
# --predictor_host <predictor service>.<namespace>, no cluster domain (which is not always cluster.local).
PREDICTOR_HOST_SUFFIX_FORBIDDEN = ".svc.cluster.local"
# ServingRuntime spec.supportedModelFormats[].autoSelect (pkg/apis/serving/v1alpha1/servingruntime_types.go):
# KServe picks an autoSelect runtime for any InferenceService of that format that names no runtime, so a
# namespaced Triton runtime with autoSelect captures other teams' Triton InferenceServices in the namespace.
AUTOSELECT_CAPTURES_OTHERS = True

# ---- KServe and KEDA: ScaledObjects ------------------------------------------------------------------------------
# kserve/kserve pkg/controller/v1beta1/inferenceservice/reconcilers/keda/keda_reconciler.go: getKedaMetrics (v0.15.2;
# v0.16.0 the same for External metrics) sets no MetricType on a prometheus trigger and takes target.value as the
# threshold; KEDA's default metricType is KEDA_DEFAULT_METRIC_TYPE (below), whose
# desired count is ceil(metric / threshold) whatever the current count. Only a sum over replicas fits it.
KSERVE_KEDA_METRIC_TYPE = "AverageValue"
# createKedaScaledObject names the ScaledObject componentMeta.Name, i.e. <isvc>-<component>, the name of the
# Deployment; neither the HPA reconciler (reconcilers/hpa/hpa_reconciler.go) nor the KEDA one deletes its object
# when the autoscaler class changes (they only create and update), so a leftover one keeps scaling.
KSERVE_AUTOSCALER_NAME = "{isvc}-{component}"
KSERVE_DELETES_AUTOSCALER_ON_CLASS_CHANGE = False
# kedacore/keda apis/keda/v1alpha1/scaledobject_types.go: Fallback.Behavior and its values (FallbackBehaviorStatic,
# ...CurrentReplicas, ...CurrentReplicasIfHigher) are in v2.17.0 and absent from v2.16.0, whose CRD rejects the
# field under strict validation. KEDA's default metric type: pkg/scalers/scaler.go GetMetricTargetType (v2.17.0)
# returns AverageValue when a trigger names none.
KEDA_FIELD_MIN_VERSION = {"fallback.behavior": "2.17"}
KEDA_DEFAULT_METRIC_TYPE = "AverageValue"

# ---- Kubernetes: PodDisruptionBudget ----------------------------------------------------------------------------
# kubernetes.io/docs/tasks/run-application/configure-pdb: with maxUnavailable 1 a budget allows one eviction even
# when one pod runs; only minAvailable (or maxUnavailable 0) blocks a drain.
PDB_MAX_UNAVAILABLE_NEVER_BLOCKS = 1

# ---- Kubernetes Pod Security Standards, level "restricted" (kubernetes.io/docs/concepts/security/
# pod-security-standards, v1.29+): what every container must carry, besides a pod- or container-level
# runAsNonRoot and a RuntimeDefault/Localhost seccomp profile.


def restricted_violations(pod: dict) -> list[str]:
    """Reasons the Pod Security admission controller at level `restricted` would reject this pod."""
    spec = pod["spec"]
    pod_ctx = spec.get("securityContext") or {}
    problems = []
    for container in spec["containers"] + spec.get("initContainers", []):
        ctx = container.get("securityContext") or {}
        name = container["name"]
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{name}: allowPrivilegeEscalation != false")
        if "ALL" not in ((ctx.get("capabilities") or {}).get("drop") or []):
            problems.append(f"{name}: capabilities.drop lacks ALL")
        if not (ctx.get("runAsNonRoot") or (pod_ctx.get("runAsNonRoot") and "runAsNonRoot" not in ctx)):
            problems.append(f"{name}: runAsNonRoot not true")
        seccomp = (ctx.get("seccompProfile") or pod_ctx.get("seccompProfile") or {}).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{name}: no RuntimeDefault seccomp profile")
    return problems


# ---- Reading the chart's values and the pods KServe builds -----------------------------------------------------

def merged_values(values_files: list) -> dict:
    """values.yaml overlaid with the given files as Helm coalesces them (maps merge, null deletes)."""
    def merge(base: dict, override: dict) -> dict:
        out = dict(base)
        for key, value in override.items():
            if value is None:
                out.pop(key, None)
            elif isinstance(value, dict) and isinstance(out.get(key), dict):
                out[key] = merge(out[key], value)
            else:
                out[key] = value
        return out

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in values_files:
        values = merge(values, yaml.safe_load(Path(path).read_text()) or {})
    return values


ISVC_ONLY_FIELDS = {"minReplicas", "maxReplicas", "autoScaling", "scaleMetric", "scaleMetricType", "scaleTarget",
                    "containerConcurrency", "timeout", "canaryTrafficPercent", "logger", "batcher", "labels",
                    "annotations", "deploymentStrategy", "model", "containers", "workerSpec", "storageUris"}
MODEL_ONLY_FIELDS = {"modelFormat", "runtime", "protocolVersion", "storageUri", "storage", "runtimeVersion"}


def runtime_container(objs: list[dict], name: str) -> dict:
    """The container of the ServingRuntime an InferenceService names: the chart's, else KServe's own."""
    for runtime in objects_of(objs, "ServingRuntime"):
        if runtime["metadata"]["name"] == name:
            return copy.deepcopy(runtime["spec"]["containers"][0])
    assert name == "kserve-tritonserver", f"runtime {name} is neither rendered nor KServe's"
    return copy.deepcopy(KSERVE_TRITON_RUNTIME_CONTAINER)


def kserve_pods(objs: list[dict]) -> Iterator[tuple[dict, str, dict]]:
    """(InferenceService, component, pod) for each component, with the pod KServe builds: the component's pod
    fields and, for the predictor, the runtime container with the InferenceService's model fields merged in
    (KServe's MergeRuntimeContainers: the InferenceService's fields win, its args are appended)."""
    for isvc in objects_of(objs, "InferenceService"):
        for component in ("predictor", "transformer"):
            spec = isvc["spec"].get(component)
            if not spec:
                continue
            pod_spec = {k: copy.deepcopy(v) for k, v in spec.items() if k not in ISVC_ONLY_FIELDS}
            if component == "predictor":
                model = spec["model"]
                base = runtime_container(objs, model["runtime"])
                merged = {**base, **{k: copy.deepcopy(v) for k, v in model.items() if k not in MODEL_ONLY_FIELDS}}
                merged["args"] = base.get("args", []) + model.get("args", [])
                pod_spec["containers"] = [merged]
            else:
                pod_spec["containers"] = copy.deepcopy(spec["containers"])
                if spec.get("initContainers"):
                    pod_spec["initContainers"] = copy.deepcopy(spec["initContainers"])
            yield isvc, component, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": isvc["metadata"]["name"]},
                                    "spec": pod_spec}


def flag_args(args: list[str]) -> dict[str, str]:
    """--name=value arguments as a dict."""
    return dict(a.split("=", 1) for a in args if a.startswith("--") and "=" in a)


def knative_rejections(pod: dict, enabled_flags: set[str]) -> list[str]:
    """Why Knative's webhook would refuse a Knative Service built from this pod (empty: it admits it), with
    the given config-features flags enabled."""
    spec = pod["spec"]
    problems = []
    for field in spec:
        flag = KNATIVE_POD_FIELD_FLAGS.get(field)
        if field not in KNATIVE_POD_FIELDS and flag not in enabled_flags:
            problems.append(f"{field}" + (f" (needs {flag})" if flag else " (never allowed)"))
    if spec.get("automountServiceAccountToken", False) is not False:
        problems.append("automountServiceAccountToken other than false")
    for volume in spec.get("volumes", []):
        if set(volume) - {"name"} - KNATIVE_VOLUME_SOURCES:
            problems.append(f"volume {volume['name']}: source not admitted")
    for container in spec["containers"]:
        name = container["name"]
        for field in sorted(set(container) - KNATIVE_CONTAINER_FIELDS):
            problems.append(f"{name}.{field}")
        for field in sorted(set(container.get("securityContext") or {}) - KNATIVE_CONTAINER_SECURITY_FIELDS):
            problems.append(f"{name}.securityContext.{field}")
        ports = [p["containerPort"] for p in container.get("ports", [])] or [DEFAULT_CONTAINER_PORT]
        if len(ports) > KNATIVE_MAX_PORTS:
            problems.append(f"{name}: {len(ports)} ports")
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            handler = container.get(probe) or {}
            port = (handler.get("httpGet") or handler.get("tcpSocket") or {}).get("port")
            if port not in (None, ports[0]):
                problems.append(f"{name}.{probe} on port {port}, not the container port {ports[0]}")
    return problems
