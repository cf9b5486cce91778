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
