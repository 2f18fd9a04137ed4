"""The test harness: real parts to test against, shared by every suite.

- :mod:`.gateway`: a gateway in a child process on a free port, the service probes (PostgreSQL, CI);
- :mod:`.cluster`: several gateways over one PostgreSQL schema and a ``redis-server`` of their own;
- :mod:`.faultproxy`, :mod:`.balancer`, :mod:`.stalled`: TCP proxies that cut, balance or stall (on :mod:`.tcp`);
- :mod:`.terminal`: the CLI's interactive commands driven in a pseudo-terminal;
- :mod:`.wire`: a raw WebSocket client speaking envelopes; :mod:`.tokens`: human agents' tokens.
"""
