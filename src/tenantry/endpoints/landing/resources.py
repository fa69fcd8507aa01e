from flask_restful import Resource

from tenantry.endpoints.landing.models import tenant_summary


class Landing(Resource):
    def __init__(self, config):
        self.summary = tenant_summary(config)

    def get(self):
        return self.summary
