"""Operations on tenants as files: create, check, migrate, sweep, back up, restore, clone,
delete. The tenantry command is a thin layer over these."""
