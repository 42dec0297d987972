"""Pure encode/decode/verify of the formats that the device and the service share.

Nothing here does I/O beyond what a caller hands in, and nothing here imports
`opensphere.device` or `opensphere.service`.
"""
