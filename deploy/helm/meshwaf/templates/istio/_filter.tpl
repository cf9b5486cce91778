{{/*
meshwaf.wafFilter is the HTTP filter meshwaf's EnvoyFilters insert (the
patch's value), the same for gateways and sidecars: meshwaf.waf, configured
over ECDS from the control plane through the bootstrap cluster meshwaf_xds.
*/}}
{{- define "meshwaf.wafFilter" -}}
# The control plane's ECDS answer must carry a TypedExtensionConfig
# with exactly this name.
name: meshwaf.waf
config_discovery:
  config_source:
    # Without warming (below) the listener never waits for ECDS, so
    # this timeout only bounds how long Envoy reports the resource
    # as pending.
    initial_fetch_timeout: 10s
    api_config_source:
      api_type: GRPC
      transport_api_version: V3
      grpc_services:
      - envoy_grpc:
          cluster_name: meshwaf_xds
          # Reconnect quickly after a control plane restart: Envoy's
          # default backoff grows to 30 s, which would keep a
          # gateway on its last configuration that long after the
          # control plane is back.
          retry_policy:
            retry_back_off:
              base_interval: 0.25s
              max_interval: 3s
  default_config:
    "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
    rules:
      action: DENY
      policies:
        meshwaf-no-config-yet:
          permissions:
          - any: true
          principals:
          - any: true
  # Serve with default_config at once instead of holding the listener
  # (and the whole gateway) back until the control plane answers.
  apply_default_config_without_warming: true
  # ext_authz or ext_proc is what the control plane sends for a
  # protected gateway (RBAC without rules for one without policies);
  # RBAC must be listed anyway because default_config has that type.
  type_urls:
  - type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
  - type.googleapis.com/envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor
  - type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
{{- end }}

{{/*
meshwaf.unavailableReply is the HTTP connection manager patch meshwaf's
EnvoyFilters merge into the listener that carries meshwaf.waf: when the WAF
filter fails closed because no agent answered (ext_authz_error,
ext_proc_error_*), Envoy's reply (the 503 of status_on_error) says so in a
JSON body like the agent's own, instead of being empty. A block (403) and
the agent's "overloaded" 503 are the agent's answers and keep their bodies.
Envoy matches on the reply's code details with a CEL filter; another
ext_authz or ext_proc filter on the same listener that fails closed gets
this body too.
*/}}
{{- define "meshwaf.unavailableReply" -}}
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
  local_reply_config:
    mappers:
    - filter:
        extension_filter:
          name: envoy.access_loggers.extension_filters.cel
          typed_config:
            "@type": type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter
            expression: response.code_details == 'ext_authz_error' || response.code_details.startsWith('ext_proc_error')
      body_format_override:
        json_format:
          error: web application firewall unavailable
          request_id: "%REQ(X-REQUEST-ID)%"
{{- end }}
