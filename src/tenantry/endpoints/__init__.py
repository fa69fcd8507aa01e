"""The built-in endpoint modules. Each is an ordinary endpoint module (a package exposing
``blueprint``) built on :mod:`tenantry.endpoint` alone, like a team's own would be."""
