"""Operations on tenants: create, enable, disable, maintenance and secrets (:mod:`.lifecycle`),
check, stats, migrate, sweep (:mod:`.gc`), back up, restore, clone and delete. The
``tenantry`` command is a thin layer over these; tests call them directly."""
