"""The home: the folder that holds config/ and tenants/, how a tenant's config class
is loaded and checked, its secrets, and the index of its host names."""
