{{/*
Names, labels and images of the fedcare chart.
*/}}

{{/* The chart's name (always "fedcare"). */}}
{{- define "fedcare.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the release name, with "-fedcare" unless it already says so. */}}
{{- define "fedcare.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* name-version, for the helm.sh/chart label. */}}
{{- define "fedcare.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Pods of the operator: a selector that never matches the coordinator and trainer pods the
operator creates (those are component=coordinator / trainer, instance=<job>).
*/}}
{{- define "fedcare.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fedcare.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "fedcare.labels" -}}
{{ include "fedcare.selectorLabels" . }}
app.kubernetes.io/part-of: fedcare
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "fedcare.chart" . }}
{{- end -}}

{{- define "fedcare.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "fedcare.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "fedcare.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "fedcare.runtimeImage" -}}
{{- printf "%s:%s" .Values.runtimeImage.repository (default .Chart.AppVersion .Values.runtimeImage.tag) -}}
{{- end -}}

{{/* The namespaces a namespaced operator watches (a list; the release's own by default). */}}
{{- define "fedcare.watchNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{- toJson (uniq .Values.watchNamespaces) -}}
{{- else -}}
{{- toJson (list .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/*
RBAC rules for the resources in the namespaces the operator works in. Only what the code
does (operator/src/fedcare_operator/kube.py is its one API module; kopf adds watches,
annotation and finalizer patches, and Events). tests/deploy checks them against kube.RESOURCES.
*/}}
{{- define "fedcare.namespacedRules" -}}
# fedcare's resources: kopf lists and watches them and patches their annotations and
# finalizers; the status daemon reads jobs and lists a job's Participants; the operator
# creates one Participant per inline site.
- apiGroups: [fedcare.io]
  resources: [federatedjobs]
  verbs: [get, list, watch, patch]
- apiGroups: [fedcare.io]
  resources: [participants]
  verbs: [get, list, watch, patch, create]
# .status of both, written through the status subresource.
- apiGroups: [fedcare.io]
  resources: [federatedjobs/status, participants/status]
  verbs: [get, patch]
# Children carry owner references with blockOwnerDeletion (kopf.adopt): clusters that enforce
# OwnerReferencesPermissionEnforcement require update on the owner's finalizers.
- apiGroups: [fedcare.io]
  resources: [federatedjobs/finalizers, participants/finalizers]
  verbs: [update]
# A job's children: CA and certificate Secrets, coordinator/trainer ConfigMaps, the
# coordinator's Service and Deployment, trainer Jobs. Created when missing; ConfigMaps and the
# Deployment are patched when the spec changes, the rest is never changed. Nothing is listed,
# watched or deleted (owner references make the garbage collector delete them with the job).
- apiGroups: [""]
  resources: [secrets, services]
  verbs: [get, create]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, create, patch]
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, create, patch]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, create]
# Read-only: the pods of coordinators and trainers.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# kopf: Events about handler progress and errors (kopf posts core v1 Events; its docs name
# events.k8s.io).
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* Cluster-scoped rules of a cluster-wide operator (kopf's resource and namespace scans). */}}
{{- define "fedcare.clusterRules" -}}
# kopf: notices CRDs (re)installed while it runs.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
# kopf: the namespace observer (namespace patterns).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [list, watch]
{{- if .Values.operator.peering }}
# kopf peering (operator.peering), cluster-wide operators.
- apiGroups: [kopf.dev, zalando.org]
  resources: [clusterkopfpeerings]
  verbs: [get, list, watch, patch]
{{- end }}
{{- end -}}
