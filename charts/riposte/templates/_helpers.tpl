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

{{- /* The audit webhook's Service. */ -}}
{{- define "riposte.auditServiceName" -}}
{{- printf "%s-audit" (include "riposte.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- /* The Secret the webhook serves TLS with. */ -}}
{{- define "riposte.auditTLSSecretName" -}}
{{- default (printf "%s-audit-tls" (include "riposte.fullname" .)) .Values.detection.auditWebhook.tls.existingSecret -}}
{{- end -}}

{{- /* The Secret holding the webhook's bearer token. */ -}}
{{- define "riposte.auditTokenSecretName" -}}
{{- default (printf "%s-audit-token" (include "riposte.fullname" .)) .Values.detection.auditWebhook.auth.token.existingSecret -}}
{{- end -}}

{{- /* The DNS names of the webhook's Service, most qualified last. */ -}}
{{- define "riposte.auditDNSNames" -}}
{{- $svc := include "riposte.auditServiceName" . -}}
{{- $ns := .Release.Namespace -}}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.detection.auditWebhook.service.clusterDomain) -}}
{{- concat $names .Values.detection.auditWebhook.tls.extraDNSNames | toJson -}}
{{- end -}}

{{- /* The IP addresses in the generated certificate: the fixed ClusterIP, if any, first. */ -}}
{{- define "riposte.auditIPs" -}}
{{- $ips := .Values.detection.auditWebhook.tls.extraIPs -}}
{{- with .Values.detection.auditWebhook.service.clusterIP -}}
{{- $ips = prepend $ips . -}}
{{- end -}}
{{- $ips | toJson -}}
{{- end -}}

{{- /* Where kube-apiserver sends audit batches: the fixed ClusterIP if set (the apiserver
usually cannot resolve cluster DNS names), else the Service's DNS name. */ -}}
{{- define "riposte.auditWebhookURL" -}}
{{- $host := default (printf "%s.%s.svc" (include "riposte.auditServiceName" .) .Release.Namespace) .Values.detection.auditWebhook.service.clusterIP -}}
{{- if contains ":" $host -}}
{{- $host = printf "[%s]" $host -}}
{{- end -}}
{{- printf "https://%s:%v/audit" $host .Values.detection.auditWebhook.port -}}
{{- end -}}

{{- /* The flags of the hunting bucket (context: .Values.hunting), for the operator and the
node sensor alike. */ -}}
{{- define "riposte.huntingBucketArgs" -}}
{{- with .objectStorage }}
{{- if .bucket }}
{{- if not (hasPrefix "s3://" .bucket) }}
{{- fail "hunting.objectStorage.bucket is an s3://<bucket>/<prefix> address" }}
{{- end }}
- --hunting-bucket={{ .bucket }}
{{- with .endpoint }}
- --hunting-bucket-endpoint={{ . }}
{{- end }}
{{- with .region }}
- --hunting-bucket-region={{ . }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- /* The bucket's credentials as the AWS_* variables, from the Secret named (context:
.Values.hunting). */ -}}
{{- define "riposte.huntingBucketCredentials" -}}
{{- with .objectStorage }}
{{- if and .bucket .credentialsSecret }}
envFrom:
  - secretRef:
      name: {{ .credentialsSecret }}
{{- end }}
{{- end }}
{{- end -}}
