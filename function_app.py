"""Azure Functions entry point (Python v2 model): builds the app and registers the blueprints.

Keep this module thin: every cold start imports it. Heavy SDKs load inside the engine when
first used.
"""

import azure.functions as func

from functions.events import bp as events_bp
from functions.http_api import bp as http_api_bp
from functions.schedules import bp as schedules_bp

# Authentication is Vault's token check inside the API itself, so the HTTP functions are
# anonymous at the Functions level (the Vault CLI cannot send a function key).
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http_api_bp)
app.register_functions(schedules_bp)
app.register_functions(events_bp)
