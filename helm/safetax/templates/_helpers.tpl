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
The platform config (src/safetax/platform.py) as YAML: `defaults` from the S3, Pushgateway, data dir, Hugging Face
token Secret, generation backend, scratch, image and pod-label values, `stages` from `.Values.stages` with the
chart's camelCase keys translated to the platform file's keys. Keys a stage does not set are left out, so the
compiler's built-in defaults apply. The stages corpus, fisher and merge of earlier releases are accepted empty.
*/}}
{{- define "safetax.platform" -}}
{{- $env := dict "SAFETAX_S3_ENDPOINT" .Values.s3.endpoint "SAFETAX_PUSHGATEWAY" (include "safetax.pushgateway.address" .) -}}
{{- with .Values.s3.region }}{{ $_ := set $env "SAFETAX_S3_REGION" . }}{{ end -}}
{{- with .Values.dataDir -}}
{{- if not (or (hasPrefix "s3://" .) (hasPrefix "/" .)) -}}
{{- fail (printf "dataDir %q must be an s3://bucket/prefix or an absolute path" .) -}}
{{- end -}}
{{- $_ := set $env "SAFETAX_DATA_DIR" . -}}
{{- end -}}
{{- $env = merge $env .Values.extraEnv -}}
{{- $defaults := dict "env" $env "generation_backend" .Values.generationBackend -}}
{{- with .Values.s3.existingSecret.name -}}
{{- $_ := set $defaults "s3_secret" . -}}
{{- $_ := set $defaults "s3_secret_keys" (dict "access_key" $.Values.s3.existingSecret.accessKeyKey "secret_key" $.Values.s3.existingSecret.secretKeyKey) -}}
{{- end -}}
{{- /* Only the Secret's name and key: the token itself never reaches a ConfigMap. */ -}}
{{- with .Values.huggingface.tokenSecret -}}
{{- if .name -}}
{{- $_ := set $defaults "hf_token_secret" .name -}}
{{- $_ := set $defaults "hf_token_secret_key" (.key | default "token") -}}
{{- end -}}
{{- end -}}
{{- with .Values.image.pullSecrets }}{{ $_ := set $defaults "image_pull_secrets" . }}{{ end -}}
{{- with .Values.podLabels }}{{ $_ := set $defaults "pod_labels" . }}{{ end -}}
{{- with .Values.scratchStorageClass }}{{ $_ := set $defaults "scratch_storage_class" . }}{{ end -}}
{{- with .Values.maxParallelMethods }}{{ $_ := set $defaults "max_parallel_methods" (int .) }}{{ end -}}
{{- with .Values.maxParallelEvaluations }}{{ $_ := set $defaults "max_parallel_evaluations" (int .) }}{{ end -}}
{{- with .Values.trainJobs }}
{{- with .runtime }}{{ $_ := set $defaults "trainjob_runtime" . }}{{ end -}}
{{- with .volumeClaim }}{{ $_ := set $defaults "trainjob_volume_claim" . }}{{ end -}}
{{- with .volumePath }}{{ $_ := set $defaults "trainjob_volume_path" . }}{{ end -}}
{{- end -}}
{{- $stages := dict -}}
{{- $folded := dict "corpus" "train (an RPSA method's train pod writes its corpus and Fisher first)" "fisher" "train (an RPSA method's train pod writes its corpus and Fisher first)" "merge" "analyze (one pod per method merges and analyses the weight updates)" -}}
{{- range $name, $stage := .Values.stages -}}
{{- if hasKey $folded $name -}}
{{- if $stage }}{{ fail (printf "stages.%s: that stage of earlier releases is gone, its work now runs in %s: move its settings there" $name (get $folded $name)) }}{{ end -}}
{{- else -}}
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
{{- if hasKey $stage "scratchSize" }}{{ $_ := set $s "scratch_size" (toString $stage.scratchSize) }}{{ end -}}
{{- if hasKey $stage "retries" }}{{ $_ := set $s "retries" (int $stage.retries) }}{{ end -}}
{{- if hasKey $stage "retryBackoff" }}{{ $_ := set $s "retry_backoff" (toString $stage.retryBackoff) }}{{ end -}}
{{- if hasKey $stage "timeoutSeconds" }}{{ $_ := set $s "timeout" (int $stage.timeoutSeconds) }}{{ end -}}
{{- if hasKey $stage "podLabels" -}}
{{- /* A stage's pod_labels replace the built-in ones: keep the label the code-execution NetworkPolicy selects. */ -}}
{{- $labels := $stage.podLabels -}}
{{- if eq $name "code" }}{{ $labels = merge (dict "safetax.io/code-execution" "true") $labels }}{{ end -}}
{{- $_ := set $s "pod_labels" $labels -}}
{{- end -}}
{{- if $s }}{{ $_ := set $stages $name $s }}{{ end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "defaults" $defaults "stages" $stages) -}}
{{- end -}}

{{/*
The projected service-account token that `kfp.Client` callers send to the KFP API (multi-user KFP checks it; a
standalone KFP ignores it): audience pipelines.kubeflow.org, at kfp's own default path, which the jobs also name
in KF_PIPELINES_SA_TOKEN_PATH. The kubelet rotates it; safetax re-reads it before every request.
*/}}
{{- define "safetax.kfpToken.env" -}}
- name: KF_PIPELINES_SA_TOKEN_PATH  # read by safetax.runner.schedules.kfp_client (kfp's own variable)
  value: /var/run/secrets/kubeflow/pipelines/token
{{- end -}}

{{- define "safetax.kfpToken.volumeMount" -}}
- name: kfp-token
  mountPath: /var/run/secrets/kubeflow/pipelines
  readOnly: true
{{- end -}}

{{- define "safetax.kfpToken.volume" -}}
- name: kfp-token
  projected:
    sources:
      - serviceAccountToken:
          path: token
          audience: pipelines.kubeflow.org
          expirationSeconds: 3600
{{- end -}}
