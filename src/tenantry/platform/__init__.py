"""The operators' side of a home: operators, the platform API and the console, served on
an address of their own (``tenantry serve --admin-bind``), never through the tenants'."""
