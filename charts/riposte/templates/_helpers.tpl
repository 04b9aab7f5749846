{{- define "riposte.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "riposte.serviceAccountName" -}}
{{- default (include "riposte.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "riposte.selectorLabels" -}}
app.kubernetes.io/name: riposte
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "riposte.labels" -}}
{{ include "riposte.selectorLabels" . }}
app.kubernetes.io/part-of: riposte
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
