"""The public REST surface: routes, transcoding, OpenAPI and Envoy config from the contracts."""
