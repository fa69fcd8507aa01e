"""The yardstick: a bare Flask app answering one small JSON document, nothing else.

Every ratio ``make bench`` prints is tenantry's requests per second over this app's,
measured in the same run with the same gunicorn settings.
"""

from flask import Flask, jsonify

application = Flask(__name__)


@application.get("/")
def landing():
    return jsonify(tenant="bare", name="Bare Flask", blueprints=["landing"])
