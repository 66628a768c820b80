"""Entry point of the mailstack policy pack: builds the ``PolicyPack`` (and starts its server).

The policies live in the package ``mailstack_policies`` (one module per concern) so that tests can
import them; importing this file would start the policy server and block, which only the Pulumi CLI
should do.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mailstack_policies import DEFAULT_ENFORCEMENT, PACK_NAME, POLICIES
from pulumi_policy import PolicyPack

PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=DEFAULT_ENFORCEMENT)
