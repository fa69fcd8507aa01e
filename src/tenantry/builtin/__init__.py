"""The built-in endpoint modules. Each is an ordinary endpoint module (a package exposing
``blueprint``) with the ``{blueprint,resources,models}`` shape a team's own can follow, and
all but ``auth`` and ``openapi`` (the platform's own tokens and document) are built on
:mod:`tenantry.endpoint` alone, as a team's own module would be."""
