{{/* vim: set filetype=mustache: */}}

{{/* The chart name (63 characters at most: a label value). */}}
{{- define "safetax.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The full name: <release>-<chart>, or <release> when it already contains the chart name. */}}
{{- define "safetax.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "safetax.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "safetax.labels" -}}
helm.sh/chart: {{ include "safetax.chart" . }}
{{ include "safetax.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: safetax
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select the pods of a workload (add app.kubernetes.io/component per workload). */}}
{{- define "safetax.selectorLabels" -}}
app.kubernetes.io/name: {{ include "safetax.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The registrar's ServiceAccount. */}}
{{- define "safetax.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "safetax.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The registrar image (the CPU image); the tag follows the chart's appVersion (the safetax version) unless set. */}}
{{- define "safetax.image" -}}
{{- printf "%s/safetax-cpu:%s" (.Values.image.registry | trimSuffix "/") (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "safetax.pushgateway.fullname" -}}
{{- printf "%s-pushgateway" (include "safetax.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* host:port the stages push to: the bundled Pushgateway's Service, or the external address. */}}
{{- define "safetax.pushgateway.address" -}}
{{- if .Values.pushgateway.enabled -}}
{{- printf "%s.%s:%d" (include "safetax.pushgateway.fullname" .) .Release.Namespace (int .Values.pushgateway.service.port) -}}
{{- else -}}
{{- required "pushgateway.address is required when pushgateway.enabled is false" .Values.pushgateway.address -}}
{{- end -}}
{{- end -}}

{{/*
The platform config (src/safetax/platform.py) as YAML: `defaults` from the S3, Pushgateway, image and
pod-label values, `stages` from `.Values.stages` with the chart's camelCase keys translated to the
platform file's keys. Keys a stage does not set are left out, so the compiler's built-in defaults apply.
*/}}
{{- define "safetax.platform" -}}
{{- $env := dict "SAFETAX_S3_ENDPOINT" .Values.s3.endpoint "SAFETAX_PUSHGATEWAY" (include "safetax.pushgateway.address" .) -}}
{{- with .Values.s3.region }}{{ $_ := set $env "SAFETAX_S3_REGION" . }}{{ end -}}
{{- $env = merge $env .Values.extraEnv -}}
{{- $defaults := dict "env" $env -}}
{{- with .Values.s3.existingSecret.name -}}
{{- $_ := set $defaults "s3_secret" . -}}
{{- $_ := set $defaults "s3_secret_keys" (dict "access_key" $.Values.s3.existingSecret.accessKeyKey "secret_key" $.Values.s3.existingSecret.secretKeyKey) -}}
{{- end -}}
{{- with .Values.image.pullSecrets }}{{ $_ := set $defaults "image_pull_secrets" . }}{{ end -}}
{{- with .Values.podLabels }}{{ $_ := set $defaults "pod_labels" . }}{{ end -}}
{{- $stages := dict -}}
{{- range $name, $stage := .Values.stages -}}
{{- $s := dict -}}
{{- if hasKey $stage "gpus" }}{{ $_ := set $s "accelerator_count" (int $stage.gpus) }}{{ end -}}
{{- with $stage.acceleratorType }}{{ $_ := set $s "accelerator_type" . }}{{ end -}}
{{- if hasKey $stage "nodeSelector" }}{{ $_ := set $s "node_selector" $stage.nodeSelector }}{{ end -}}
{{- if hasKey $stage "tolerations" }}{{ $_ := set $s "tolerations" $stage.tolerations }}{{ end -}}
{{- with $stage.resources -}}
{{- with .requests -}}
{{- if hasKey . "cpu" }}{{ $_ := set $s "cpu_request" (toString .cpu) }}{{ end -}}
{{- if hasKey . "memory" }}{{ $_ := set $s "memory_request" (toString .memory) }}{{ end -}}
{{- end -}}
{{- with .limits -}}
{{- if hasKey . "cpu" }}{{ $_ := set $s "cpu_limit" (toString .cpu) }}{{ end -}}
{{- if hasKey . "memory" }}{{ $_ := set $s "memory_limit" (toString .memory) }}{{ end -}}
{{- end -}}
{{- end -}}
{{- if hasKey $stage "shmSize" }}{{ $_ := set $s "shm_size" (toString $stage.shmSize) }}{{ end -}}
{{- if hasKey $stage "podLabels" -}}
{{- /* A stage's pod_labels replace the built-in ones: keep the label the code-execution NetworkPolicy selects. */ -}}
{{- $labels := $stage.podLabels -}}
{{- if eq $name "score" }}{{ $labels = merge (dict "safetax.io/code-execution" "true") $labels }}{{ end -}}
{{- $_ := set $s "pod_labels" $labels -}}
{{- end -}}
{{- if $s }}{{ $_ := set $stages $name $s }}{{ end -}}
{{- end -}}
{{- toYaml (dict "defaults" $defaults "stages" $stages) -}}
{{- end -}}
