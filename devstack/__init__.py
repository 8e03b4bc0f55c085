"""The local stack: every part of the system as local processes, and the demo that drives it.

`stt-router demo` and `stt-router stack up` start moto's server (S3, SQS, EventBridge), a Redis,
the API server, a worker, beat, Flower and the local EventBridge loop, each a subprocess in its
own process group, and stop everything they started on Ctrl-C. No AWS, no Docker.
"""
