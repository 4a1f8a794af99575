"""Model backends, one file each; `registry.BACKEND_TYPES` lists them by config type name."""
