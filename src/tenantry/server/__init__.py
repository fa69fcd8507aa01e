"""The request path and what runs it: dispatch to a tenant (:mod:`.dispatch`), its app
built (:mod:`.factory`), cached (:mod:`.registry`) and limited (:mod:`.limits`); request ids,
access lines and metrics (:mod:`.log`, :mod:`.metrics`); and gunicorn with its hooks, its
gevent worker and the server's own settings (:mod:`.serving`, :mod:`.hooks`,
:mod:`.worker`, :mod:`.settings`)."""
