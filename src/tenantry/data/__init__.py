"""A tenant's database: engines and sessions, migrations, users and the audit log."""
