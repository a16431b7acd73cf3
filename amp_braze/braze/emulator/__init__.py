"""A local HTTP server that behaves like Braze's REST API: /users/track, /users/export/ids,
/users/merge, /users/external_ids/rename, /v2/subscription/status/set and
/subscription/status/get.

It is how the demo, the tests and users' own CI exercise a sync without a Braze account. It imports
nothing from Dagster or the pipeline. Run it with ``amp-braze emulator`` or::

    from amp_braze.braze.emulator import EmulatorServer, Settings
    with EmulatorServer(settings=Settings(api_key="k")) as server:
        print(server.url)

Admin routes (no key needed): GET /_emulator/users (a JSON body {"offset": k, "limit": m} asks
for one page), GET /_emulator/stats, POST /_emulator/reset, GET|POST /_emulator/faults,
GET|POST /_emulator/config.
"""

from amp_braze.braze.emulator.core import Emulator, Faults, Settings
from amp_braze.braze.emulator.server import EmulatorServer

__all__ = ["Emulator", "EmulatorServer", "Faults", "Settings"]
