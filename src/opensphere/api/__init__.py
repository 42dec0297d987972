"""The management API's wire models, shared by the service and its HTTP client.

Neither `opensphere.service` nor the client owns them, so the CLI, the device
agent and the simulator can speak the protocol without importing the service.
"""
