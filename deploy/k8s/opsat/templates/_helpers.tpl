{{/* Kubernetes names allow no "_": sla_monitor -> sla-monitor. Labels, topics and databases keep "_". */}}
{{- define "opsat.dns" -}}{{ . | replace "_" "-" }}{{- end -}}

{{/* The service entry merged over serviceDefaults. Call with (list $ $name). Returns YAML. */}}
{{- define "opsat.service" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}
{{- $entry := index $root.Values.services $name | default dict -}}
{{- toYaml (mergeOverwrite (deepCopy $root.Values.serviceDefaults) (deepCopy $entry)) -}}
{{- end -}}

{{/* Labels. Call with (dict "name" $name "component" "api"); component may be empty. */}}
{{- define "opsat.selector" -}}
app.kubernetes.io/name: {{ .name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{- define "opsat.labels" -}}
{{ include "opsat.selector" . }}
app.kubernetes.io/part-of: opsat
{{- end -}}

{{- define "opsat.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .Values.uid }}
runAsGroup: {{ .Values.uid }}
seccompProfile: {type: RuntimeDefault}
{{- end -}}

{{- define "opsat.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end -}}

{{- define "opsat.image" -}}
image: {{ printf "%s:%s" .Values.image.repository (toString .Values.image.tag) | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- end -}}

{{/* The ConfigMap's data; its checksum restarts the pods when it changes. Call with (list $ $name). */}}
{{- define "opsat.config" -}}
{{- $root := index . 0 -}}{{- $name := index . 1 -}}
{{- $svc := include "opsat.service" . | fromYaml -}}
{{- $data := merge (dict
      "OPSAT_SERVICE_NAME" $name
      "OPSAT_HTTP_HOST" "0.0.0.0"
      "OPSAT_HTTP_PORT" (toString $root.Values.ports.api)
      "OPSAT_WORKER_PORT" (toString $root.Values.ports.worker)
      "OPSAT_KAFKA_BOOTSTRAP" (printf "%s-kafka-bootstrap:9092" $root.Values.kafka.name))
    (deepCopy ($svc.config | default dict)) (deepCopy $root.Values.config) -}}
{{- range $k, $v := $data }}
{{ $k }}: {{ toString $v | quote }}
{{- end }}
{{- end -}}

{{/* Secrets live in <service>-secrets, created outside the chart (see deploy/k8s/README.md). */}}
{{- define "opsat.secretEnv" -}}
{{- $name := index . 0 -}}{{- $keys := index . 1 -}}
{{- range $keys }}
- name: {{ . }}
  valueFrom: {secretKeyRef: {name: {{ include "opsat.dns" $name }}-secrets, key: {{ . }}}}
{{- end }}
{{- end -}}

{{- define "opsat.tmp" -}}
volumes:
  - name: tmp
    emptyDir: {sizeLimit: 64Mi}
{{- end -}}
